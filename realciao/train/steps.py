"""One optimiser step of each stage, as plain functions of what they work on.

``net_step`` (L1 and the other pixel terms on sampled HR pixels, the official recipe) and
``gan_step`` (whole rendered patches, then the discriminator) take the prepared models and
optimisers (``StepParts``), the step's micro-batches and the count of them, and return the
loss figures. The trainer calls them, and so do ``scripts/bench_train.py`` and
``scripts/gpu_check.py``: a benchmark times the code that trains.

A step whose loss is not finite on some process is skipped on every process (gradients
dropped, nothing stepped) and reported, so the caller can count bad steps; the GAN stage's
discriminator half is skipped on its own in the same way.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn

from realciao.archs.ciaosr import denormalise, normalise
from realciao.autoprecision import PrecisionProbe, model_digest
from realciao.coords import cell_size, make_query_grid, pixel_centres
from realciao.devices import autocast
from realciao.train.ema import ModelEMA
from realciao.train.losses import LossInputs, LossSet, discriminator_view, gan_loss


@dataclass
class MicroBatch:
    """One micro-batch of training pairs on the device: ``gt``, ``target`` (the GT, or the
    sharpened GT) and ``lq``, (B, 3, H, W) in [0, 1]; ``random`` draws the Net stage's queries."""

    pairs: dict[str, torch.Tensor]
    random: torch.Generator


@dataclass
class StepParts:
    """What a step works on: the models and optimisers as ``accelerator.prepare`` gave them, a
    gradient scaler per optimiser, the EMA of the generator, the loss set and the precision."""

    accelerator: Accelerator
    generator: nn.Module
    optimizer_g: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    ema: ModelEMA
    losses: LossSet
    precision: str = "fp32"
    grad_clip: float = 0.0
    """Largest gradient norm; 0: no clipping."""
    queries_per_patch: int = 2304
    """Sampled HR pixels per patch in the Net stage."""
    discriminator: nn.Module | None = None
    optimizer_d: torch.optim.Optimizer | None = None
    scaler_d: torch.amp.GradScaler | None = None

    def autocast(self):
        return autocast(self.accelerator.device, self.precision)


@dataclass
class StepResult:
    """The loss terms, averaged over the micro-batches; ``skipped``: why the whole step was
    skipped ('rank R: term, ...'), ``discriminator_skipped``: why only the discriminator's was."""

    losses: dict[str, float] = field(default_factory=dict)
    skipped: str = ""
    discriminator_skipped: str = ""


# ----------------------------------------------------------------------------- the steps
def net_step(parts: StepParts, micro_batches: Iterable[MicroBatch], accumulation: int) -> StepResult:
    """One Net-stage step: for each micro-batch, the loss set on sampled HR pixels and its
    backward pass; then the generator's optimiser step and the EMA update."""
    logs, bad, _ = _generator_half(parts, micro_batches, accumulation, net_losses)
    if bad:
        return _skip(parts, bad)
    parts.ema.update(parts.accelerator.unwrap_model(parts.generator))
    return StepResult(logs)


def gan_step(parts: StepParts, micro_batches: Iterable[MicroBatch], accumulation: int) -> StepResult:
    """One GAN-stage step: the generator on whole rendered patches (its loss set, the GAN term
    included), then the discriminator on the same pairs and renders, then the EMA update."""
    logs, bad, rendered = _generator_half(parts, micro_batches, accumulation, gan_generator_losses)
    if bad:
        return _skip(parts, bad)
    skipped = _discriminator_half(parts, rendered, accumulation, logs)
    parts.ema.update(parts.accelerator.unwrap_model(parts.generator))
    return StepResult(logs, discriminator_skipped=skipped)


Losses = tuple[torch.Tensor, dict[str, torch.Tensor], object]


def _generator_half(
    parts: StepParts,
    micro_batches: Iterable[MicroBatch],
    accumulation: int,
    losses_of: Callable[[StepParts, MicroBatch], Losses],
) -> tuple[dict[str, float], str, list]:
    """Forward and backward over the micro-batches (gradients synchronised on the last one
    only), then the generator's optimiser step when the loss was finite on every process.
    Returns the averaged terms, the report of non-finite terms ('' when none), and what each
    micro-batch kept for the discriminator."""
    accelerator, logs, bad, kept = parts.accelerator, {}, set(), []
    for micro, batch in enumerate(micro_batches):
        sync = accelerator.no_sync(parts.generator) if micro < accumulation - 1 else contextlib.nullcontext()
        with sync:
            loss, terms, keep = losses_of(parts, batch)
            floats, non_finite = read_terms(loss, terms)
            bad |= non_finite
            accelerator.backward(parts.scaler_g.scale(loss / accumulation))
        kept.append(keep)
        for name, value in floats.items():
            logs[name] = logs.get(name, 0.0) + value / accumulation
    if not everyone_finite(accelerator, not bad):
        return logs, non_finite_report(accelerator, bad), kept
    apply_gradients(parts, parts.optimizer_g, parts.scaler_g, parts.generator)
    return logs, "", kept


def _discriminator_half(parts: StepParts, rendered: list, accumulation: int, logs: dict[str, float]) -> str:
    """The discriminator's micro-batches and optimiser step; '' or the report of why it was skipped."""
    accelerator, bad = parts.accelerator, set()
    for micro, (pairs, sr) in enumerate(rendered):
        sync = (
            accelerator.no_sync(parts.discriminator) if micro < accumulation - 1 else contextlib.nullcontext()
        )
        with sync:
            loss, terms = discriminator_losses(parts, pairs, sr)
            floats, non_finite = read_terms(loss, terms)
            bad |= non_finite
            accelerator.backward(parts.scaler_d.scale(loss / accumulation))
        for name, value in floats.items():
            logs[name] = logs.get(name, 0.0) + value / accumulation
    if everyone_finite(accelerator, not bad):
        apply_gradients(parts, parts.optimizer_d, parts.scaler_d, parts.discriminator)
        return ""
    parts.optimizer_d.zero_grad(set_to_none=True)
    return non_finite_report(accelerator, bad)


def _skip(parts: StepParts, report: str) -> StepResult:
    for optimizer in (parts.optimizer_g, parts.optimizer_d):
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
    return StepResult(skipped=report)


def apply_gradients(parts: StepParts, optimizer, scaler, model: nn.Module) -> None:
    scaler.unscale_(optimizer)
    if parts.grad_clip > 0:
        parts.accelerator.clip_grad_norm_(model.parameters(), parts.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- the losses of a micro-batch
def net_losses(parts: StepParts, batch: MicroBatch) -> Losses:
    """The loss set on sampled HR pixels of the target, predicted from the LR patch."""
    target, lq = batch.pairs["target"], batch.pairs["lq"]
    b, _, h, w = target.shape
    device = target.device
    picks, window = sample_queries(b, h, w, parts.queries_per_patch, parts.losses.needs_images, batch.random)
    count = picks.shape[1]
    rows, cols = picks // w, picks % w
    coord = torch.stack([pixel_centres(h, device)[rows], pixel_centres(w, device)[cols]], dim=-1)
    cell = coord.new_tensor(cell_size(h, w)).expand(b, count, 2)
    values = target.flatten(2).gather(2, picks.unsqueeze(1).expand(b, 3, count)).transpose(1, 2)
    with parts.autocast():
        pred = parts.generator(normalise(lq), coord, cell)
    truth = normalise(values.transpose(1, 2)[..., None])[..., 0].transpose(1, 2)  # (B, Q, 3) in model space

    def as_image(x: torch.Tensor) -> torch.Tensor:  # a window's pixels; model space is image space shifted
        return x.float().view(b, *window, 3).permute(0, 3, 1, 2)

    def ema_prediction() -> torch.Tensor:
        with torch.no_grad(), parts.autocast():
            return parts.ema.module(normalise(lq), coord, cell)

    terms = parts.losses(LossInputs(pred.float(), truth, as_image, ema_prediction, parts.autocast))
    return sum(terms.values()), {k: v.detach() for k, v in terms.items()}, None


def sample_queries(
    b: int, h: int, w: int, queries: int, window: bool, generator: torch.Generator
) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """Flat indices (B, Q) of the HR pixels the Net stage predicts: scattered at random (the
    official recipe), or, with ``window`` (a loss compares neighbourhoods), one random square
    window per patch, returned with its (height, width)."""
    device = generator.device
    count = min(queries, h * w)
    if not window:
        return torch.rand(b, h * w, generator=generator, device=device).argsort(dim=1)[:, :count], None
    side = math.isqrt(queries)
    win_h, win_w = min(h, side), min(w, side)
    tops = torch.randint(0, h - win_h + 1, (b, 1, 1), generator=generator, device=device)
    lefts = torch.randint(0, w - win_w + 1, (b, 1, 1), generator=generator, device=device)
    rows = tops + torch.arange(win_h, device=device).view(1, -1, 1)
    cols = lefts + torch.arange(win_w, device=device).view(1, 1, -1)
    return (rows * w + cols).flatten(1), (win_h, win_w)


def render(model: nn.Module, lq: torch.Tensor, size: tuple[int, int], precision: str) -> torch.Tensor:
    """The whole coherent HR patch (not scattered pixels), for perceptual and GAN losses."""
    coord, cell = make_query_grid(*size, batch=lq.shape[0], device=lq.device)
    with autocast(lq.device, precision):
        pred = model(normalise(lq), coord, cell)
    return denormalise(pred.float().view(lq.shape[0], *size, 3).permute(0, 3, 1, 2))


def gan_generator_losses(parts: StepParts, batch: MicroBatch) -> Losses:
    """The loss set on the whole rendered patch; keeps the pairs and the render for the discriminator."""
    pairs = batch.pairs
    size = tuple(pairs["gt"].shape[-2:])
    sr = render(parts.generator, pairs["lq"], size, parts.precision)

    def ema_prediction() -> torch.Tensor:
        with torch.no_grad():
            return render(parts.ema.module, pairs["lq"], size, parts.precision)

    inputs = LossInputs(sr, pairs["target"], lambda x: x, ema_prediction, parts.autocast, parts.discriminator)
    terms = parts.losses(inputs)
    return sum(terms.values()), {k: v.detach() for k, v in terms.items()}, (pairs, sr.detach())


def discriminator_losses(parts: StepParts, pairs: dict, sr: torch.Tensor) -> tuple[torch.Tensor, dict]:
    with parts.autocast():  # plain GT (not sharpened) is the real example
        real = gan_loss(parts.discriminator(discriminator_view(pairs["gt"])), real=True)
        fake = gan_loss(parts.discriminator(discriminator_view(sr)), real=False)
    return real + fake, {"d_real": real.detach(), "d_fake": fake.detach()}


# ----------------------------------------------------------------------------- finite losses on every process
def read_terms(loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> tuple[dict[str, float], set[str]]:
    """The loss terms as floats, in one transfer from the device, and the names of the
    non-finite ones ('total' when only their sum is)."""
    values = torch.stack([loss.detach().float(), *(v.float() for v in terms.values())]).tolist()
    floats = dict(zip(terms, values[1:]))
    bad = {name for name, value in floats.items() if not math.isfinite(value)}
    return floats, bad or ({"total"} if not math.isfinite(values[0]) else set())


def everyone_finite(accelerator: Accelerator, local_ok: bool) -> bool:
    """True when the loss was finite on every process: all skip a bad step together."""
    ok = torch.tensor([float(local_ok)], device=accelerator.device)
    return bool(accelerator.reduce(ok, reduction="sum").item() == accelerator.num_processes)


def non_finite_report(accelerator: Accelerator, terms: set[str]) -> str:
    """'rank R: term, term; ...' for every process that had a non-finite loss term (a
    collective call: every process makes it, after the same ``everyone_finite``)."""
    reports = [(accelerator.process_index, sorted(terms))]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        reports = gather_object(reports)
    return "; ".join(f"rank {rank}: {', '.join(names)}" for rank, names in sorted(reports) if names)


# ----------------------------------------------------------------------------- auto precision's probe
def training_probe(generator: nn.Module, data, device: torch.device) -> PrecisionProbe:
    """``auto`` precision's probe for training: a forward and backward pass of a copy of the
    generator on two LR patches of the run's size (``data``: its DataOptions), with the run's
    queries per patch at its largest scale (the work of a Net step; the GAN stage's
    discriminator is not timed)."""
    batch, side = min(2, data.batch_size), data.lr_patch
    out_side = max(1, round(side * data.scale_max))
    queries = min(data.queries_per_patch, out_side**2)
    copies = []  # the copy is made at the first run: a decision read from the cache needs none

    def run(precision: str) -> None:
        if not copies:
            random = torch.Generator().manual_seed(0)
            lq = torch.rand(batch, 3, side, side, generator=random).to(device) - 0.5
            coord, cell = make_query_grid(out_side, out_side, batch=batch, device=device)
            picks = torch.randperm(coord.shape[1], generator=random)[:queries].to(device)
            copies.append((copy.deepcopy(generator).to(device).train(), lq, coord[:, picks], cell[:, picks]))
        model, lq, coord, cell = copies[0]
        model.zero_grad(set_to_none=True)
        with autocast(device, precision):
            pred = model(lq, coord, cell)
        pred.float().abs().mean().backward()

    return PrecisionProbe(
        f"train, model {model_digest(generator)}, {batch}x{side}x{side}, {queries} queries "
        f"at x{data.scale_max:g}",
        run,
    )
