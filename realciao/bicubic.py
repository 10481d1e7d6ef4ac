"""MATLAB's ``imresize(image, [h w], 'bicubic')`` to any output size, per axis.

The SR literature makes its LR images and bicubic baselines this way, so validation and
evaluation share this one function (and the one basicsr import it needs, for MATLAB's
weights). Each axis has its own scale out/in, so non-integer and asymmetric sizes work
and never round to another size; shrinking is antialiased as MATLAB does.
"""

from __future__ import annotations

import torch

from realciao.compat import import_basicsr


def _resize_axis(image: torch.Tensor, axis: int, out_length: int, antialias: bool) -> torch.Tensor:
    weights_of = import_basicsr("utils.matlab_functions").calculate_weights_indices
    in_length = image.shape[axis]
    scale = out_length / in_length
    weights, indices, sym_start, sym_end = weights_of(in_length, out_length, scale, "cubic", 4, antialias)
    moved = image.movedim(axis, 0)
    pieces = [moved[:sym_start].flip(0), moved, moved[moved.shape[0] - sym_end :].flip(0)]
    padded = torch.cat(pieces, 0)
    taps = indices[:, :1].long() + torch.arange(weights.shape[1])  # (out, taps)
    matrix = torch.zeros(out_length, padded.shape[0], dtype=padded.dtype)
    matrix.scatter_add_(1, taps, weights.to(padded.dtype))  # one dense matmul instead of a loop
    out = torch.tensordot(matrix, padded, dims=1)
    return out.movedim(0, axis)


def matlab_resize(image: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> (C, *size) float32, not quantised (float64 inside)."""
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"resize to {size}: sizes must be positive")
    out = image.double()
    if out.shape[-2] != height:
        out = _resize_axis(out, out.dim() - 2, height, antialias)
    if out.shape[-1] != width:
        out = _resize_axis(out, out.dim() - 1, width, antialias)
    return out.float()
