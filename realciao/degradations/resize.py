"""Resizing to an explicit output size, with antialiasing as an option."""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESIZE_MODES = ("area", "bilinear", "bicubic", "nearest")


def resize(images: torch.Tensor, size: tuple[int, int], mode: str, antialias: bool = False) -> torch.Tensor:
    """Resize (B, C, H, W) to ``size`` = (height, width).

    ``area`` averages over each output pixel's footprint (already antialiased);
    ``bilinear``/``bicubic`` use half-pixel centres, as Real-ESRGAN's ``F.interpolate``;
    ``antialias`` widens their kernels when shrinking (torch's PIL-style filters), which the
    reference omits; it is ignored when neither axis shrinks, so enlarging stays the
    reference's interpolation (torch's antialiased bicubic would switch to PIL's a = -0.5).
    ``nearest`` picks the pixel under each output centre.
    """
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"resize to {size}: sizes must be positive")
    if tuple(images.shape[-2:]) == (height, width):
        return images
    if mode == "area":
        return F.interpolate(images, size=(height, width), mode="area")
    if mode == "nearest":
        return F.interpolate(images, size=(height, width), mode="nearest-exact")
    if mode in ("bilinear", "bicubic"):
        shrinks = height < images.shape[-2] or width < images.shape[-1]
        return F.interpolate(
            images, size=(height, width), mode=mode, align_corners=False, antialias=antialias and shrinks
        )
    raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """floor(size * scale) per axis, at least 1 (``F.interpolate(scale_factor=...)``'s sizes)."""
    return max(1, int(size[0] * scale)), max(1, int(size[1] * scale))
