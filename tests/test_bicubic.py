"""MATLAB bicubic: equal to basicsr's imresize where that works, any per-axis size where it cannot."""

from __future__ import annotations

import torch

from realciao.bicubic import matlab_resize
from realciao.compat import import_basicsr


def test_matlab_resize_equals_basicsr_imresize():
    imresize = import_basicsr("utils.matlab_functions").imresize
    image = torch.rand(3, 24, 36, generator=torch.Generator().manual_seed(0))
    for scale in (0.5, 1 / 3, 2, 4):
        expected = imresize(image, scale)
        ours = matlab_resize(image, tuple(expected.shape[-2:]))
        assert torch.allclose(ours, expected, atol=1e-5), scale
    assert matlab_resize(image, (17, 50)).shape == (3, 17, 50)  # per-axis, any size
