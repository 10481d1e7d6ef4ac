"""Rounding to the levels an 8-bit (or n-bit) image file can hold."""

from __future__ import annotations

import torch


def quantize(images: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Clip to [0, 1] and round to 2**bits - 1 levels."""
    levels = float(2**bits - 1)
    return (images * levels).round().clamp(0, levels) / levels
