"""realciao.color: the BT.601 luma weights and the grey images made with them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from realciao.color import BT601_LUMA, MATLAB_RGB2GRAY, STUDIO_Y, luma, luma_tensor


def test_studio_range_weights_are_matlabs_rgb2ycbcr_numbers():
    assert STUDIO_Y == (65.481, 128.553, 24.966)  # 219 x BT.601, exactly these floats
    assert np.allclose(MATLAB_RGB2GRAY, BT601_LUMA, atol=1.1e-4) and MATLAB_RGB2GRAY != BT601_LUMA


def test_luma_of_an_image_is_pillows_grey_to_a_level():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
    ours = luma(rgb)
    assert ours.shape == (16, 20) and ours.dtype == np.float32
    assert np.abs(ours - pillow).max() <= 1  # Pillow rounds fixed-point weights
    assert np.allclose(luma(rgb.astype(np.float32) / 255, 255), ours, atol=1e-3)


def test_the_tensor_form_agrees_for_either_channel_axis():
    rgb = np.random.default_rng(1).random((5, 6, 3), dtype=np.float32)
    expected = luma(rgb)
    last = luma_tensor(torch.from_numpy(rgb), -1)
    first = luma_tensor(torch.from_numpy(rgb).permute(2, 0, 1)[None], 1)
    assert last.shape == (5, 6, 1) and first.shape == (1, 1, 5, 6)
    assert np.allclose(last[..., 0].numpy(), expected, atol=1e-6)
    assert np.allclose(first[0, 0].numpy(), expected, atol=1e-6)
    white = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    assert luma_tensor(white, 1, STUDIO_Y).item() + 16 == 235.0  # studio-range white
