"""MATLAB bicubic: equal to basicsr's imresize where that works, any per-axis size where it cannot."""

from __future__ import annotations

import torch

from realciao.bicubic import matlab_rescale, matlab_resize
from realciao.compat import import_basicsr


def test_matlab_resize_equals_basicsr_imresize():
    imresize = import_basicsr("utils.matlab_functions").imresize
    image = torch.rand(3, 24, 36, generator=torch.Generator().manual_seed(0))
    for scale in (0.5, 1 / 3, 2, 4):
        expected = imresize(image, scale)
        ours = matlab_resize(image, tuple(expected.shape[-2:]))
        assert torch.allclose(ours, expected, atol=1e-5), scale
    assert matlab_resize(image, (17, 50)).shape == (3, 17, 50)  # per-axis, any size


def test_matlab_rescale_uses_the_scale_itself_as_imresize_does():
    """imresize(image, 0.5) on an odd side: ceil(side / 2) outputs, with the weights of 0.5,
    not of the rounded size's ratio (which matlab_resize would use)."""
    imresize = import_basicsr("utils.matlab_functions").imresize
    image = torch.rand(1, 25, 31, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = matlab_rescale(image, 0.5)
    assert ours.shape == (1, 13, 16) and ours.dtype == torch.float64
    assert torch.allclose(ours, imresize(image, 0.5).double(), atol=1e-6)
    by_size = matlab_resize(image, (13, 16)).double()
    assert (ours - by_size).abs().max() > 1e-3  # the rounded size's ratio gives other weights
