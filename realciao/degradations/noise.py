"""Sensor noise, each sample with its own strength, colour mode and noise field."""

from __future__ import annotations

import torch
from torchvision.transforms.functional import rgb_to_grayscale

from realciao.degradations.sampling import randn

# Colour modes per sample.
COLOR, GRAY, CORRELATED = 0, 1, 2


def add_gaussian_noise(
    images: torch.Tensor, sigma: torch.Tensor, mode: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add N(0, sigma^2) noise and clip to [0, 1].

    ``sigma`` (B,) is in [0, 1] units. ``mode`` (B,) long: COLOR draws a field per channel,
    GRAY one field shared by the channels of that sample (its own field, unlike the
    reference's batch-wide one), CORRELATED a field with a random 3 x 3 channel covariance
    (BSRGAN's third kind).
    """
    batch, channels, height, width = images.shape
    device = images.device
    noise = torch.zeros_like(images)
    modes = set(mode.tolist())
    if COLOR in modes:
        noise = torch.where((mode == COLOR).view(-1, 1, 1, 1), randn(images.shape, generator, device), noise)
    if GRAY in modes:
        gray = randn((batch, 1, height, width), generator, device).expand_as(images)
        noise = torch.where((mode == GRAY).view(-1, 1, 1, 1), gray, noise)
    if CORRELATED in modes:
        mixing = random_channel_mixing(batch, channels, generator, device)
        correlated = torch.einsum("bij,bjhw->bihw", mixing, randn(images.shape, generator, device))
        noise = torch.where((mode == CORRELATED).view(-1, 1, 1, 1), correlated, noise)
    return (images + noise * sigma.to(images).view(-1, 1, 1, 1)).clamp(0, 1)


def random_channel_mixing(
    batch: int, channels: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A (B, C, C) matrix A with A A^T = U^T D U: random orthonormal U, D ~ U(0, 1) diagonal."""
    basis, _ = torch.linalg.qr(randn((batch, channels, channels), generator, torch.device("cpu")))
    scales = torch.rand(batch, channels, generator=generator, device=generator.device).cpu().sqrt()
    return (basis.transpose(1, 2) * scales[:, None, :]).to(device)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) by the reference's own conversion: torchvision's, whose
    weight for red is rounded to four digits (``realciao.color`` has the BT.601 weights)."""
    return rgb_to_grayscale(images)


def distinct_levels(images: torch.Tensor) -> torch.Tensor:
    """How many of the 256 8-bit levels each sample uses, without a host sync: (B,)."""
    batch = images.shape[0]
    levels = images.reshape(batch, -1).long()
    used = torch.zeros(batch, 256, device=images.device)
    used.scatter_(1, levels, 1.0)
    return used.sum(dim=1)


def _poisson_residual(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shot noise as the reference models it: photon counts scaled by 2^ceil(log2(#levels))."""
    levels = (images * 255).round().clamp(0, 255)
    rounded = levels / 255
    photons = torch.exp2(torch.ceil(torch.log2(distinct_levels(levels)))).view(-1, 1, 1, 1)
    rate = (rounded * photons).to(generator.device)
    counts = torch.poisson(rate, generator=generator).to(images.device)
    return counts / photons - rounded


def add_poisson_noise(
    images: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add shot noise times ``scale`` (B,), from the luma where ``gray`` (B,) bool, clip to [0, 1]."""
    noise = torch.zeros_like(images)
    if bool((~gray).any()):
        noise = torch.where(gray.view(-1, 1, 1, 1), noise, _poisson_residual(images, generator))
    if bool(gray.any()):
        gray_noise = _poisson_residual(to_gray(images), generator).expand_as(images)
        noise = torch.where(gray.view(-1, 1, 1, 1), gray_noise, noise)
    return (images + noise * scale.to(images).view(-1, 1, 1, 1)).clamp(0, 1)
