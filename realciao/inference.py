"""Whole-image inference: ``upscale(model, lr, size)`` in [0, 1] image space."""

from __future__ import annotations

import torch

from realciao.archs.ciaosr import CiaoSR, check_inputs, denormalise, normalise
from realciao.autoprecision import PrecisionProbe, model_digest
from realciao.coords import make_query_grid
from realciao.devices import autocast, check_precision, without_autocast

__all__ = ["denormalise_queries", "inference_probe", "normalise", "upscale"]

PROBE_QUERIES = 4096  # output pixels of auto precision's probe: 8 of the upsampler's 512-query chunks


def denormalise_queries(pred: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, 3) normalised predictions of a row-major grid -> (B, 3, H, W) in [0, 1]."""
    image = pred.float().view(pred.shape[0], height, width, 3).permute(0, 3, 1, 2)
    return denormalise(image).clamp_(0, 1)


def check_size(size, lr: torch.Tensor) -> tuple[int, int]:
    if not isinstance(lr, torch.Tensor) or lr.dim() != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise ValueError(f"lr must be a (B, 3, h, w) RGB tensor in [0, 1], got {shape}")
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError) as error:
        raise ValueError(f"size must be (H, W) output pixels, got {size!r}") from error
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


@torch.no_grad()
def upscale(model: CiaoSR, lr: torch.Tensor, size, precision: str = "fp32") -> torch.Tensor:
    """(B, 3, h, w) LR in [0, 1] -> (B, 3, H, W) in [0, 1] for any H, W (non-integer and
    asymmetric scales too).

    ``precision="bf16"`` (or fp16 on GPUs) runs the upsampler under autocast and keeps the encoder in
    fp32: a bf16 encoder costs about 3 dB of agreement with fp32 (50 vs 53 dB measured on
    EDSR-baseline at 64 -> x2) for little speed, as the upsampler does most of the work."""
    height, width = check_size(size, lr)
    device = next(model.parameters()).device
    check_precision(precision, device)
    lr = lr.to(device=device, dtype=torch.float32)
    coord, cell = make_query_grid(height, width, lr.shape[0], device=device)
    with without_autocast(device):  # a caller's autocast would hand the encoder mixed dtypes
        lr_normalised = normalise(lr)
        check_inputs(lr_normalised, coord, cell)
        feature = model.encoder(lr_normalised)
        with autocast(device, precision):
            pred = model.upsampler(feature, lr_normalised, coord, cell)
    return denormalise_queries(pred, height, width)


def inference_probe(model: CiaoSR, scale: float | tuple[float, float]) -> PrecisionProbe:
    """``auto`` precision's probe for upscaling at ``scale``: ``upscale`` of a small random LR
    whose output has about ``PROBE_QUERIES`` pixels, so the upsampler's chunks have the shapes
    and the per-pixel maps the share of the work they have at that scale. The scale is rounded
    to halves: nearby scales share one measurement."""
    scale_h, scale_w = (scale, scale) if isinstance(scale, (int, float)) else scale
    scale_h, scale_w = (max(1.0, round(s * 2) / 2) for s in (scale_h, scale_w))
    side = int(min(64, max(8, round((PROBE_QUERIES / (scale_h * scale_w)) ** 0.5))))
    size = (round(side * scale_h), round(side * scale_w))
    device = next(model.parameters()).device
    lr = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    return PrecisionProbe(f"upscale, model {model_digest(model)}, {side}x{side} -> {size[0]}x{size[1]}",
                          lambda precision: upscale(model, lr, size, precision=precision))
