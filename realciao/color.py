"""Luma: the ITU-R BT.601 weights, written once, and the grey images made with them.

realciao finds detail, aligns pairs and measures degradations on luma, Y' = 0.299 R' +
0.587 G' + 0.114 B' (as Pillow's RGB -> L and OpenCV's RGB2GRAY); the SR literature's
PSNR/SSIM use the studio-range form of the same weights, 16 + 219 Y' on 8-bit levels
(MATLAB's ``rgb2ycbcr``). Two references round the weights their own way, and realciao
matches them where it reproduces them: MATLAB's ``rgb2gray`` (BRISQUE, below) and
torchvision's ``rgb_to_grayscale`` (Real-ESRGAN's grey noise, called as it is).
"""

from __future__ import annotations

import numpy as np
import torch

BT601_LUMA = (0.299, 0.587, 0.114)
# (65.481, 128.553, 24.966), exactly those numbers in float64: MATLAB's rgb2ycbcr on [0, 1] RGB
STUDIO_Y = tuple(219 * weight for weight in BT601_LUMA)
# MATLAB's rgb2gray: the first row of the inverse of the NTSC (YIQ) matrix, BT.601 to 15 digits
MATLAB_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
# full-range BT.601 (JFIF) Y'CbCr: the rows give Y', Cb and Cr from R'G'B' (chroma centred on 0)
RGB_TO_YCBCR = (
    BT601_LUMA,
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
YCBCR_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136, -0.714136),
    (1.0, 1.772, 0.0),
)


def luma(rgb: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(..., 3) RGB -> (...) luma times ``scale``, by a float32 matrix product (float32 for
    8-bit and float32 input; float64 input stays float64)."""
    return np.asarray(rgb) @ (np.asarray(BT601_LUMA, dtype=np.float32) * np.float32(scale))


def luma_tensor(rgb: torch.Tensor, dim: int = 1, weights: tuple[float, ...] = BT601_LUMA) -> torch.Tensor:
    """RGB with its channels along ``dim`` -> luma (or another weighting), ``dim`` kept with size 1."""
    shape = [1] * rgb.dim()
    shape[dim] = len(weights)
    return (rgb * rgb.new_tensor(weights).view(shape)).sum(dim, keepdim=True)
