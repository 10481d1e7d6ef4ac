"""Blur kernels, built for a whole batch at once on the batch's device.

Each sample has its own family, size, sigmas, rotation, shape parameter and cutoff. Kernels
live on a shared odd canvas; a kernel of size k is zero outside the central k x k square,
which is what Real-ESRGAN's zero-padding of every kernel to 21 x 21 gives.

Coordinates follow basicsr: ``x`` runs along columns, ``y`` along rows, and the rotation
turns the (x, y) covariance counter-clockwise by ``theta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Family codes, the index of each family in ``KERNEL_FAMILIES``.
KERNEL_FAMILIES = ("gaussian", "generalized_gaussian", "plateau", "sinc")
GAUSSIAN, GENERALIZED_GAUSSIAN, PLATEAU, SINC = range(4)

# Sigmas of 0 (BSRGAN draws U(0, .)) mean "no blur"; a tiny sigma gives exactly that.
_MIN_SIGMA = 1e-4


@dataclass(frozen=True)
class KernelParameters:
    """Per-sample kernel parameters, each a tensor of shape (B,)."""

    family: torch.Tensor  # long, index into KERNEL_FAMILIES
    size: torch.Tensor  # long, odd
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    rotation: torch.Tensor  # radians
    beta: torch.Tensor  # shape of generalized Gaussian and plateau kernels
    cutoff: torch.Tensor  # radians per pixel, sinc kernels only


def centered_grid(canvas: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pixel offsets from the centre of an odd canvas, each (canvas, canvas)."""
    if canvas % 2 != 1:
        raise ValueError(f"kernel canvas must be odd, got {canvas}")
    axis = torch.arange(canvas, device=device, dtype=torch.float32) - canvas // 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def quadratic_form(
    sigma_x: torch.Tensor, sigma_y: torch.Tensor, rotation: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """(x, y) Sigma^-1 (x, y)^T with Sigma = R diag(sx^2, sy^2) R^T, per sample: (B, K, K)."""
    inv_x = 1.0 / sigma_x.clamp(min=_MIN_SIGMA) ** 2
    inv_y = 1.0 / sigma_y.clamp(min=_MIN_SIGMA) ** 2
    cos, sin = torch.cos(rotation), torch.sin(rotation)
    a = (cos * cos * inv_x + sin * sin * inv_y)[:, None, None]
    b = (cos * sin * (inv_x - inv_y))[:, None, None]
    c = (sin * sin * inv_x + cos * cos * inv_y)[:, None, None]
    return a * x * x + 2 * b * x * y + c * y * y


def circular_lowpass(cutoff: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unnormalised 2-D ideal low-pass (jinc) response, cutoff in radians per pixel: (B, K, K)."""
    radius = torch.sqrt(x * x + y * y)
    omega = cutoff[:, None, None]
    safe_radius = torch.where(radius > 0, radius, torch.ones_like(radius))
    response = omega * torch.special.bessel_j1(omega * safe_radius) / (2 * math.pi * safe_radius)
    # The limit at r = 0 is omega^2 / (4 pi).
    return torch.where(radius > 0, response, omega * omega / (4 * math.pi))


def build_kernels(params: KernelParameters, canvas: int) -> torch.Tensor:
    """Normalised kernels (B, canvas, canvas), every family evaluated and the drawn one kept."""
    x, y = centered_grid(canvas, params.sigma_x.device)
    form = quadratic_form(params.sigma_x, params.sigma_y, params.rotation, x, y)
    beta = params.beta[:, None, None]
    family = params.family[:, None, None]
    kernel = torch.exp(-0.5 * form)
    kernel = torch.where(family == GENERALIZED_GAUSSIAN, torch.exp(-0.5 * form.pow(beta)), kernel)
    kernel = torch.where(family == PLATEAU, 1.0 / (form.pow(beta) + 1.0), kernel)
    kernel = torch.where(family == SINC, circular_lowpass(params.cutoff, x, y), kernel)
    half = (params.size // 2)[:, None, None]
    inside = (x.abs() <= half) & (y.abs() <= half)
    kernel = torch.where(inside, kernel, torch.zeros_like(kernel))
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def crop_canvas(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size part of kernels (B, K, K); cheaper to convolve when K > size."""
    margin = (kernels.shape[-1] - size) // 2
    if margin <= 0:
        return kernels
    return kernels[:, margin:-margin, margin:-margin]
