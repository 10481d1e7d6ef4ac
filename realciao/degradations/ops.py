"""Each recipe op as one record (``OpKind``): draw its parameters for the batch, apply them,
describe one sample's draw.

``draw_*`` returns a dict of (B, ...) tensors, one entry per sample, drawn up front so the
outcome does not depend on how the pipeline groups samples. ``apply_*`` runs on a group of
samples that share one image size, with the parameters of those samples, and returns the
result as (positions in the group, images) parts: one part, except when a resize sends
samples of the group to different sizes or modes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from realciao.degradations import kernels as kernel_lib
from realciao.degradations.filters import filter2d
from realciao.degradations.jpeg import jpeg_compress
from realciao.degradations.noise import COLOR, GRAY, add_gaussian_noise, add_poisson_noise
from realciao.degradations.quantize import quantize
from realciao.degradations.resize import resize, scaled_size
from realciao.degradations.sampling import bernoulli, categorical, draw, draw_odd
from realciao.degradations.sharpen import usm_sharpen
from realciao.degradations.specs import (
    BlurOp,
    JpegOp,
    KernelSpec,
    NoiseOp,
    Op,
    OpSpec,
    QuantizeOp,
    ResizeOp,
    SharpenOp,
)

Params = dict[str, torch.Tensor]
Parts = list[tuple[list[int], torch.Tensor]]


def _whole(images: torch.Tensor) -> Parts:
    return [(list(range(images.shape[0])), images)]


# ---------------------------------------------------------------------------- blur
def draw_kernel_parameters(
    op: BlurOp, n: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, kernel_lib.KernelParameters]:
    """Which mixture entry each sample uses, and its kernel parameters."""
    entry = categorical(n, [k.p for k in op.kernels], generator, device)
    fields = {name: torch.zeros(n, device=device) for name in ("sigma_x", "sigma_y", "rotation", "beta", "cutoff")}
    family = torch.zeros(n, dtype=torch.long, device=device)
    size = torch.zeros(n, dtype=torch.long, device=device)
    for index, spec in enumerate(op.kernels):
        chosen = entry == index
        family = torch.where(chosen, kernel_lib.KERNEL_FAMILIES.index(spec.family), family)
        size = torch.where(chosen, draw_odd(spec.size or op.size, n, generator, device), size)
        for name, values in _draw_kernel_fields(spec, n, generator, device).items():
            fields[name] = torch.where(chosen, values, fields[name])
    return entry, kernel_lib.KernelParameters(family=family, size=size, **fields)


def _draw_kernel_fields(spec: KernelSpec, n: int, generator: torch.Generator, device: torch.device) -> Params:
    if spec.family == "sinc":
        return {"cutoff": draw(spec.cutoff, n, generator, device)}
    spread = spec.sigma if spec.sigma is not None else spec.variance

    def one_axis() -> torch.Tensor:
        values = draw(spread, n, generator, device)
        return values if spec.sigma is not None else values.clamp(min=0).sqrt()

    sigma_x = one_axis()
    if spec.isotropic:
        sigma_y, rotation = sigma_x, torch.zeros(n, device=device)
    else:
        sigma_y = one_axis()
        rotation = draw(spec.rotation, n, generator, device)
    fields = {"sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation}
    if spec.family != "gaussian":
        fields["beta"] = draw(spec.beta, n, generator, device)
    return fields


def draw_blur(op: BlurOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    entry, params = draw_kernel_parameters(op, n, generator, device)
    return {**params.__dict__, "entry": entry, "kernel": kernel_lib.build_kernels(params, op.canvas)}


def apply_blur(op: BlurOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    # Convolve only over the largest kernel actually drawn in this group.
    kernels = kernel_lib.crop_canvas(params["kernel"], int(params["size"].max()))
    return _whole(filter2d(images, kernels))


# ---------------------------------------------------------------------------- resize
def draw_resize(op: ResizeOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    probs = op.mode_probs or [1.0 / len(op.modes)] * len(op.modes)
    return {"scale": draw(op.scale, n, generator, device), "mode": categorical(n, probs, generator, device)}


def apply_resize(op: ResizeOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    base = target if op.relative_to == "target" else tuple(images.shape[-2:])
    groups: dict[tuple[tuple[int, int], str], list[int]] = defaultdict(list)
    for position, (scale, mode) in enumerate(zip(params["scale"].tolist(), params["mode"].tolist())):
        groups[(scaled_size(base, scale), op.modes[mode])].append(position)
    parts = []
    for (size, mode), positions in groups.items():
        selected = images if len(positions) == images.shape[0] else images[positions]
        parts.append((positions, resize(selected, size, mode, antialias=op.antialias)))
    return parts


# ---------------------------------------------------------------------------- noise
def draw_noise(op: NoiseOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    """``type`` indexes ``op.types``; ``sigma`` is in 8-bit levels; ``color_mode`` COLOR/GRAY/CORRELATED."""
    kind = categorical(n, [t.p for t in op.types], generator, device)
    sigma = torch.zeros(n, device=device)
    scale = torch.zeros(n, device=device)
    color_mode = torch.full((n,), COLOR, dtype=torch.long, device=device)
    for index, spec in enumerate(op.types):
        chosen = kind == index
        if spec.type == "gaussian":
            sigma = torch.where(chosen, draw(spec.sigma, n, generator, device), sigma)
            other = 1.0 - spec.gray_p - spec.correlated_p
            mode = categorical(n, [max(other, 0.0), spec.gray_p, spec.correlated_p], generator, device)
        else:
            scale = torch.where(chosen, draw(spec.scale, n, generator, device), scale)
            mode = torch.where(bernoulli(n, spec.gray_p, generator, device), GRAY, COLOR)
        color_mode = torch.where(chosen, mode, color_mode)
    return {"type": kind, "sigma": sigma, "scale": scale, "color_mode": color_mode}


def apply_noise(op: NoiseOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    out = images
    for index, spec in enumerate(op.types):
        positions = (params["type"] == index).nonzero().flatten()
        if positions.numel() == 0:
            continue
        selected = images.index_select(0, positions)
        mode = params["color_mode"][positions]
        if spec.type == "gaussian":
            noisy = add_gaussian_noise(selected, params["sigma"][positions] / 255, mode, generator)
        else:
            noisy = add_poisson_noise(selected, params["scale"][positions], mode == GRAY, generator)
        out = noisy if positions.numel() == images.shape[0] else out.index_copy(0, positions, noisy)
    return _whole(out)


# ---------------------------------------------------------------------------- the rest
def draw_jpeg(op: JpegOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    return {"quality": draw(op.quality, n, generator, device)}


def apply_jpeg(op: JpegOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    return _whole(jpeg_compress(images, params["quality"], padding=op.padding, table_layout=op.table_layout))


def draw_sharpen(op: SharpenOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    return {"weight": draw(op.weight, n, generator, device)}


def apply_sharpen(op: SharpenOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    return _whole(usm_sharpen(images, params["weight"], op.threshold, op.radius, op.sigma))


def draw_quantize(op: QuantizeOp, n: int, generator: torch.Generator, device: torch.device) -> Params:
    return {}


def apply_quantize(op: QuantizeOp, images: torch.Tensor, params: Params, generator: torch.Generator, target: tuple[int, int]) -> Parts:
    return _whole(quantize(images, op.bits))


def describe_blur(op: BlurOp, params: dict[str, float]) -> dict[str, object]:
    spec = op.kernels[int(params["entry"])]
    record: dict[str, object] = {
        "family": spec.family if spec.family == "sinc" else f"{spec.family}{'' if spec.isotropic else '_aniso'}",
        "size": int(params["size"]),
    }
    if spec.family == "sinc":
        record["cutoff"] = params["cutoff"]
        return record
    record["sigma"] = (params["sigma_x"], params["sigma_y"]) if not spec.isotropic else params["sigma_x"]
    if not spec.isotropic:
        record["rotation"] = params["rotation"]
    if spec.family != "gaussian":
        record["beta"] = params["beta"]
    return record


def describe_resize(op: ResizeOp, params: dict[str, float]) -> dict[str, object]:
    return {"scale": params["scale"], "mode": op.modes[int(params["mode"])], "relative_to": op.relative_to}


def describe_noise(op: NoiseOp, params: dict[str, float]) -> dict[str, object]:
    spec = op.types[int(params["type"])]
    record: dict[str, object] = {"type": spec.type, "color": ("color", "gray", "correlated")[int(params["color_mode"])]}
    if spec.type == "gaussian":
        record["sigma"] = params["sigma"]
    else:
        record["scale"] = params["scale"]
    return record


def describe_jpeg(op: JpegOp, params: dict[str, float]) -> dict[str, object]:
    return {"quality": params["quality"]}


def describe_sharpen(op: SharpenOp, params: dict[str, float]) -> dict[str, object]:
    return {"weight": params["weight"]}


def describe_quantize(op: QuantizeOp, params: dict[str, float]) -> dict[str, object]:
    return {"bits": op.bits}


Drawer = Callable[[Op, int, torch.Generator, torch.device], Params]
Applier = Callable[[Op, torch.Tensor, Params, torch.Generator, tuple[int, int]], Parts]
Describer = Callable[[Op, dict[str, float]], dict[str, object]]


@dataclass(frozen=True)
class OpKind:
    """Everything about one op: its typed spec (whose ``op`` field is the name it is written
    under in recipe files), how it draws its per-sample parameters, applies them to a group of
    samples, and describes one sample's draw. Adding an op is one spec and one record."""

    spec: type[OpSpec]
    draw: Drawer
    apply: Applier
    describe: Describer

    @property
    def name(self) -> str:
        return self.spec.model_fields["op"].default


OP_KINDS = (
    OpKind(BlurOp, draw_blur, apply_blur, describe_blur),
    OpKind(ResizeOp, draw_resize, apply_resize, describe_resize),
    OpKind(NoiseOp, draw_noise, apply_noise, describe_noise),
    OpKind(JpegOp, draw_jpeg, apply_jpeg, describe_jpeg),
    OpKind(SharpenOp, draw_sharpen, apply_sharpen, describe_sharpen),
    OpKind(QuantizeOp, draw_quantize, apply_quantize, describe_quantize),
)
_BY_SPEC = {kind.spec: kind for kind in OP_KINDS}


def kind_of(op: Op) -> OpKind:
    return _BY_SPEC[type(op)]


def describe(op: Op, params: dict[str, float]) -> dict[str, object]:
    """The parameters one sample drew for ``op``, readable (names, not codes)."""
    kind = kind_of(op)
    return {"op": op.name, "kind": kind.name, **kind.describe(op, params)}
