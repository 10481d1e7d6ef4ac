"""Query coordinates and cells in the official CiaoSR (LIIF) convention."""

from __future__ import annotations

import torch


def pixel_centres(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centres of n pixels spanning [-1, 1]: -1 + (2i + 1)/n, computed as the official code does."""
    radius = 2.0 / (2 * n)
    return -1.0 + radius + (2 * radius) * torch.arange(n, device=device, dtype=dtype)


def cell_size(height: int, width: int) -> tuple[float, float]:
    """The cell of every query of an H x W output: one output pixel in normalised units."""
    return 2.0 / height, 2.0 / width


def make_query_grid(height: int, width: int, batch: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """coord (B, H*W, 2) in (row, col) order, row-major, and cell (B, H*W, 2) = (2/H, 2/W)."""
    rows = pixel_centres(height, device)
    cols = pixel_centres(width, device)
    coord = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).view(1, -1, 2)
    cell = torch.tensor(cell_size(height, width), device=device).expand_as(coord)
    return coord.expand(batch, -1, -1), cell.expand(batch, -1, -1)
