"""realciao.metrics.fullref: PSNR in the SR protocol, one image or a batch."""

from __future__ import annotations

import math

import pytest
import torch

from realciao.metrics import psnr, psnr_per_image


def test_a_batch_gives_each_pairs_psnr():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 16, 20, generator=g)
    noisy = (clean + 0.05 * torch.randn(3, 3, 16, 20, generator=g)).clamp(0, 1)
    noisy[2] = clean[2]
    each = psnr_per_image(noisy, clean, shave=2, y_channel=False)
    assert each[:2] == [psnr(noisy[i : i + 1], clean[i : i + 1], shave=2, y_channel=False) for i in range(2)]
    assert math.isinf(each[2])
    mse = ((noisy[0] - clean[0]).double() ** 2)[:, 2:-2, 2:-2].mean().item()
    assert each[0] == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)  # [0, 1] images: peak 1
