"""Keeping freed memory: glibc takes the settings, and a freed large buffer's pages are reused
rather than faulted in again. Each case runs in a fresh interpreter, so that the test process's
own allocations neither disturb the count nor inherit the settings."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SETTLE, ROUNDS = 15, 5  # rounds before counting, rounds counted
PAGES = (64 << 20) // 4096  # one 64 MiB buffer: glibc's default mmaps it and unmaps it on free

COUNT_FAULTS = f"""
import resource, sys, torch
from realciao.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.set_num_threads(1)
for _ in range({SETTLE}):  # kept: the heap grows (a few rounds) until a freed block fits the next one
    torch.ones(16 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    buffer = torch.ones(16 << 20)  # every page written
    del buffer
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", COUNT_FAULTS, mode], capture_output=True, text=True, check=True)
    kept, count = out.stdout.split()
    return kept, int(count)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="only glibc has these malloc settings")
def test_glibc_takes_the_settings_and_a_freed_buffer_is_reused_without_page_faults():
    kept, with_settings = faults("keep")
    _, default = faults("default")
    assert kept == "True"
    assert default > ROUNDS * PAGES * 0.9  # every round faults its pages in again
    assert with_settings < PAGES  # then reused: no page faulted in again
