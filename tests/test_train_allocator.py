"""Keeping freed memory: glibc takes the settings, and allocation keeps working after."""

from __future__ import annotations

import platform

import pytest
import torch

from realciao.train.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc has these malloc settings")
def test_glibc_takes_the_settings_and_large_buffers_still_work():
    assert keep_freed_memory() is True
    for _ in range(3):  # large blocks, now from the heap: freed and reused
        buffer = torch.ones(64 << 20, dtype=torch.uint8)
        assert int(buffer.sum()) == 64 << 20
        del buffer
