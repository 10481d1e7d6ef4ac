"""MATLAB's ``imresize(image, [h w], 'bicubic')`` to any output size, per axis, and
``imresize(image, scale)``: the one MATLAB bicubic.

The SR literature makes its LR images and bicubic baselines this way, so validation,
evaluation and BRISQUE's half-size image share this module (and the one basicsr import it
needs, for MATLAB's weights). Each axis has its own scale out/in, so non-integer and asymmetric sizes work
and never round to another size; shrinking is antialiased as MATLAB does.
"""

from __future__ import annotations

import math

import torch

from realciao.compat import import_basicsr


def _resize_axis(
    image: torch.Tensor, axis: int, out_length: int, scale: float, antialias: bool
) -> torch.Tensor:
    weights_of = import_basicsr("utils.matlab_functions").calculate_weights_indices
    in_length = image.shape[axis]
    weights, indices, sym_start, sym_end = weights_of(in_length, out_length, scale, "cubic", 4, antialias)
    moved = image.movedim(axis, 0)
    pieces = [moved[:sym_start].flip(0), moved, moved[moved.shape[0] - sym_end :].flip(0)]
    padded = torch.cat(pieces, 0)  # mirrored edges, as MATLAB pads
    first = indices[:, 0].long()  # each output's taps are consecutive rows of ``padded``
    weights = weights.to(padded.dtype).view(*weights.shape, *[1] * (padded.dim() - 1))
    # taps added in order, one gathered slice each: work linear in the image (a dense out x in
    # matrix costs out x in per line: seconds for BRISQUE's half size of a photo)
    out = weights[:, 0] * padded.index_select(0, first)
    for tap in range(1, weights.shape[1]):
        out += weights[:, tap] * padded.index_select(0, first + tap)
    return out.movedim(0, axis)


def _resize(
    image: torch.Tensor, size: tuple[int, int], scales: tuple[float, float], antialias: bool
) -> torch.Tensor:
    """(..., H, W) -> (..., *size) float64; each axis with the weights of its scale."""
    out = image.double()
    for axis, length, scale in zip((out.dim() - 2, out.dim() - 1), size, scales):
        if out.shape[axis] != length:
            out = _resize_axis(out, axis, length, scale, antialias)
    return out


def matlab_resize(image: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """(C, H, W) in [0, 1] -> (C, *size) float32, not quantised (float64 inside):
    ``imresize(image, [h w])``, each axis scaled by its output over its input length."""
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"resize to {size}: sizes must be positive")
    in_height, in_width = image.shape[-2:]
    return _resize(image, (height, width), (height / in_height, width / in_width), antialias).float()


def matlab_rescale(image: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """(..., H, W) -> (..., ceil(H * scale), ceil(W * scale)) float64: ``imresize(image, scale)``,
    whose weights are those of ``scale`` itself, not of the rounded size (they differ for odd
    sides at 0.5: BRISQUE's half-size image is made this way)."""
    if not scale > 0:
        raise ValueError(f"rescale by {scale}: the scale must be positive")
    size = tuple(math.ceil(length * scale) for length in image.shape[-2:])
    return _resize(image, size, (scale, scale), antialias)
