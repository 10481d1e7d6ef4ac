"""Unsharp masking (USM) as Real-ESRGAN sharpens its GT and as cameras sharpen in the ISP."""

from __future__ import annotations

import torch

from realciao.degradations.filters import gaussian_kernel_1d, separable_filter


def usm_sharpen(
    images: torch.Tensor,
    weight: float | torch.Tensor = 0.5,
    threshold: float = 10.0,
    radius: int = 51,
    sigma: float = 0.0,
) -> torch.Tensor:
    """Sharpen (B, C, H, W) in [0, 1] where the detail exceeds ``threshold``.

    ``threshold`` is in 8-bit levels (Real-ESRGAN: 10). ``weight`` may be a (B,) tensor.
    ``radius`` is the Gaussian's odd size (even sizes grow by one, as in basicsr); sigma <= 0
    takes OpenCV's default for that size (8.0 for 51). The hard mask is blurred by the same
    Gaussian so the sharpening fades in instead of switching on at edges.
    """
    if radius % 2 == 0:
        radius += 1
    kernel = gaussian_kernel_1d(radius, sigma)
    residual = images - separable_filter(images, kernel)
    hard_mask = residual.abs().mul_(255).gt_(threshold)  # 1.0 / 0.0, still float
    soft_mask = separable_filter(hard_mask, kernel)
    if isinstance(weight, torch.Tensor):
        weight = weight.to(images).view(-1, 1, 1, 1)
    # soft * sharp + (1 - soft) * image, as image + soft * (sharp - image), mostly in place:
    # fresh full-size buffers cost more than the arithmetic here.
    sharp = residual.mul_(weight).add_(images).clamp_(0, 1)
    return sharp.sub_(images).mul_(soft_mask).add_(images)
