"""Whole-image inference and every other inference entry point, inside a caller's autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import realciao
from realciao.tiling import TiledUpscaler

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=2, mlp_hidden=[16]).eval()


def test_every_entry_point_works_inside_a_callers_autocast(model):
    """A user's ``torch.autocast`` block must not hand the encoder bf16 inputs and fp32 biases."""
    lr = torch.rand(1, 3, 10, 12)
    pixels = lr[0].permute(1, 2, 0).numpy()
    expected = realciao.upscale(model, lr, size=(23, 29))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = realciao.upscale(model, lr, size=(23, 29))
        image = realciao.upscale_image(model, pixels, size=(23, 29), tile=6)
        tiled, _ = TiledUpscaler(model, tile=6)(pixels, (23, 29))
        bf16 = realciao.upscale(model, lr, size=(23, 29), precision="bf16")
    assert torch.equal(inside, expected)  # fp32 asked for: the caller's autocast is left
    assert image.dtype == np.float32 and image.shape == (23, 29, 3)
    assert np.abs(tiled - expected[0].permute(1, 2, 0).numpy()).max() < 0.05
    assert (bf16 - expected).abs().max() < 0.05


def test_precision_names_are_one_vocabulary(model):
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        realciao.upscale(model, torch.rand(1, 3, 8, 8), size=(16, 16), precision="no")
    with pytest.raises(ValueError, match="fp16 runs only on CUDA"):
        realciao.upscale(model, torch.rand(1, 3, 8, 8), size=(16, 16), precision="fp16")
