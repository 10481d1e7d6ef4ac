"""Query coordinates and cells in the official CiaoSR (LIIF) convention.

Sizes are ints, or 0-dim integer tensors while a graph is traced for ONNX export (the
sizes of an exported graph are only known when it runs); the scalars are then computed in
float64 as Python computes them, so the coordinates are the same to the bit.
"""

from __future__ import annotations

import torch


def as_float64(n):
    """A traced size as a float64 tensor (``2.0 / n`` would be float32); an int unchanged."""
    return n.to(torch.float64) if isinstance(n, torch.Tensor) else n


def pixel_centres(n, device=None, dtype=torch.float32) -> torch.Tensor:
    """Centres of n pixels spanning [-1, 1]: -1 + (2i + 1)/n, computed as the official code does."""
    radius = 2.0 / (2 * as_float64(n))
    start, step = -1.0 + radius, 2 * radius
    if isinstance(n, torch.Tensor):  # rounded to dtype once, as a Python float scalar would be
        start, step = start.to(dtype), step.to(dtype)
    return start + step * torch.arange(n, device=device, dtype=dtype)


def cell_size(height, width) -> tuple[float, float]:
    """The cell of every query of an H x W output: one output pixel in normalised units."""
    return 2.0 / as_float64(height), 2.0 / as_float64(width)


def make_query_grid(height, width, batch=1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """coord (B, H*W, 2) in (row, col) order, row-major, and cell (B, H*W, 2) = (2/H, 2/W)."""
    rows = pixel_centres(height, device)
    cols = pixel_centres(width, device)
    coord = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).view(1, -1, 2)
    cells = cell_size(height, width)
    if isinstance(cells[0], torch.Tensor):
        cell = torch.stack(cells).to(torch.float32)
    else:
        cell = torch.tensor(cells, device=device)
    cell = cell.expand_as(coord)
    return coord.expand(batch, -1, -1), cell.expand(batch, -1, -1)
