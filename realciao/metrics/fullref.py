"""Full-reference metrics in the SR literature's protocol: Y channel (ITU-R BT.601, as
MATLAB's rgb2ycbcr), border shave = scale, images on 8-bit levels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from realciao.color import STUDIO_Y, luma_tensor


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Y in [16, 235] on the 0..255 scale."""
    return luma_tensor(image, 1, STUDIO_Y) + 16.0


def _prepare(
    sr: torch.Tensor, hr: torch.Tensor, shave: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if sr.shape != hr.shape:
        raise ValueError(f"images differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    sr, hr = sr.double(), hr.double()
    if y_channel:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    else:
        sr, hr = sr * 255.0, hr * 255.0
    if shave:
        sr, hr = sr[..., shave:-shave, shave:-shave], hr[..., shave:-shave, shave:-shave]
    return sr, hr


def _decibels(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def psnr(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of one image pair (1, 3, H, W) in [0, 1] (inf where they are equal)."""
    sr, hr = _prepare(sr, hr, shave, y_channel)
    return _decibels((sr - hr).pow(2).mean().item())


def psnr_per_image(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, y_channel: bool = True) -> list[float]:
    """``psnr`` of each pair of a batch (B, C, H, W)."""
    sr, hr = _prepare(sr, hr, shave, y_channel)
    return [_decibels(mse) for mse in (sr - hr).pow(2).flatten(1).mean(1).tolist()]


def ssim(sr: torch.Tensor, hr: torch.Tensor, shave: int = 0, y_channel: bool = True) -> float:
    """SSIM (Gaussian window 11, sigma 1.5, valid region), averaged over channels."""
    sr, hr = _prepare(sr, hr, shave, y_channel)
    coords = torch.arange(11, dtype=torch.float64) - 5
    gauss = torch.exp(-(coords**2) / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    window = (gauss[:, None] * gauss[None, :]).expand(sr.shape[1], 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return F.conv2d(x, window, groups=sr.shape[1])

    mu1, mu2 = blur(sr), blur(hr)
    sigma1 = blur(sr * sr) - mu1**2
    sigma2 = blur(hr * hr) - mu2**2
    sigma12 = blur(sr * hr) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1 + sigma2 + c2))
    return ssim_map.mean().item()


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """What saving to an 8-bit file does: the protocol measures saved images."""
    return (image.clamp(0, 1) * 255).round() / 255
