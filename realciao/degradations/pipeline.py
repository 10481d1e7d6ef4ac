"""Running a recipe on a batch: per-sample programs, executed in groups of equal image size.

Every random choice is per sample: which branch of a ``one_of``, the order of a
``shuffle``, each op's gate and parameters. So samples of one batch can be at different
sizes after a resize, and run different ops. The executor advances all samples one step
at a time and, at each step, batches together the samples that run the same op on
images of the same size (the whole batch, until sizes diverge).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from realciao.degradations.ops import describe, kind_of
from realciao.degradations.quantize import quantize
from realciao.degradations.recipe import load_recipe
from realciao.degradations.resize import resize
from realciao.degradations.sampling import bernoulli, categorical, draw, make_generator, permutations
from realciao.degradations.sharpen import usm_sharpen
from realciao.degradations.specs import OneOf, Op, Recipe, Shuffle, Stage

RecipeLike = Union[Recipe, str, Path]

# If a recipe leaves a sample at another size than requested, this resize finishes the job.
_FIT_MODE = "bicubic"


@dataclass
class DegradationResult:
    """What a trainer needs from one degraded batch.

    ``lq``: (B, 3, h, w) in [0, 1] on 8-bit levels. ``gt_sharpened``: the USM-sharpened GT
    (when asked), the target Real-ESRGAN uses for pixel and perceptual losses. ``scale``:
    (B, 2) GT size / LR size per axis (height, width), the effective scale for coordinates
    and cells. ``parameters``: per sample, the ops that ran, in order, with what they drew.
    """

    lq: torch.Tensor
    scale: torch.Tensor
    parameters: list[list[dict[str, object]]]
    gt_sharpened: torch.Tensor | None = None


# ------------------------------------------------------------------------------ plan
@dataclass
class _Leaf:
    index: int  # into the plan's list of ops: draws and groups are per position, not per op object


@dataclass
class _Choice:
    probs: list[float]
    branches: list[list[_Node]]


@dataclass
class _Permutation:
    children: list[list[_Node]]  # each child is a sequence (a leaf or a composite)
    chains: list[list[int]]  # child indices that keep their written order


_Node = Union[_Leaf, _Choice, _Permutation]


def _plan(stages: tuple[Stage, ...], leaves: list[Op], composites: list) -> list[_Node]:
    """Sequence nodes in depth-first order; ``leaves``/``composites`` collect them in that order."""
    nodes: list[_Node] = []
    for stage in stages:
        if isinstance(stage, OneOf):
            node = _Choice([b.p for b in stage.choices], [])
            composites.append(node)
            node.branches = [_plan(b.stages, leaves, composites) for b in stage.choices]
        elif isinstance(stage, Shuffle):
            names = [s.name for s in stage.stages]
            node = _Permutation([], [[names.index(n) for n in chain] for chain in stage.keep_order])
            composites.append(node)
            node.children = [_plan((s,), leaves, composites) for s in stage.stages]
        else:
            node = _Leaf(len(leaves))
            leaves.append(stage)
        nodes.append(node)
    return nodes


def _draw_structure(composites: list, n: int, generator: torch.Generator) -> dict[int, list]:
    """Per composite (by id), per sample: the branch index or the child order."""
    drawn: dict[int, list] = {}
    for node in composites:
        if isinstance(node, _Choice):
            drawn[id(node)] = categorical(n, node.probs, generator, torch.device("cpu")).tolist()
        else:
            orders = permutations(n, len(node.children), generator).tolist()
            for order in orders:
                for chain in node.chains:
                    slots = sorted(order.index(child) for child in chain)
                    for slot, child in zip(slots, chain):
                        order[slot] = child
            drawn[id(node)] = orders
    return drawn


def _program(nodes: list[_Node], sample: int, drawn: dict[int, list]) -> list[int]:
    """The op positions one sample runs, in order."""
    program: list[int] = []
    for node in nodes:
        if isinstance(node, _Leaf):
            program.append(node.index)
        elif isinstance(node, _Choice):
            program += _program(node.branches[drawn[id(node)][sample]], sample, drawn)
        else:
            for child in drawn[id(node)][sample]:
                program += _program(node.children[child], sample, drawn)
    return program


# ------------------------------------------------------------------------------ public API
@torch.no_grad()  # degradations make training inputs; nothing differentiates through them
def degrade(
    gt: torch.Tensor,
    recipe: RecipeLike,
    lq_size: tuple[int, int] | int,
    generator: torch.Generator | None = None,
    *,
    return_sharpened_gt: bool = False,
) -> DegradationResult:
    """Degrade GT patches (B, 3, H, W) in [0, 1] to LR images of ``lq_size`` = (h, w).

    Any sizes work: the effective scale is H / h and W / w (asymmetric allowed, and below 1).
    Runs on ``gt``'s device. ``generator`` drives every draw (same seed, same device ->
    same output); without one, a generator is seeded from the OS.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if gt.dim() != 4 or gt.shape[1] != 3 or not gt.is_floating_point():
        raise ValueError(f"gt must be a float (B, 3, H, W) batch, got {tuple(gt.shape)} {gt.dtype}")
    target = (lq_size, lq_size) if isinstance(lq_size, int) else (int(lq_size[0]), int(lq_size[1]))
    if min(target) < 1:
        raise ValueError(f"lq_size must be positive, got {lq_size}")
    if return_sharpened_gt and recipe.gt_sharpening is None:
        raise ValueError(f"recipe {recipe.name!r} has no gt_sharpening, so there is no sharpened GT to return")
    device = gt.device
    generator = generator if generator is not None else make_generator(device)
    batch = gt.shape[0]
    images = gt.float()

    gt_sharpened = None
    if recipe.gt_sharpening is not None and (return_sharpened_gt or recipe.degrade_sharpened_gt):
        gt_sharpened = sharpen_gt(images, recipe, generator)
        if recipe.degrade_sharpened_gt:
            images = gt_sharpened

    leaves: list[Op] = []
    composites: list = []
    root = _plan(recipe.stages, leaves, composites)
    drawn = _draw_structure(composites, batch, generator)
    programs = [_program(root, sample, drawn) for sample in range(batch)]
    gates = [_draw_gate(op.p, batch, generator, device) for op in leaves]
    params = [kind_of(op).draw(op, batch, generator, device) for op in leaves]

    lq, out_sizes, fitted = _execute(images, leaves, programs, gates, params, target, generator)
    lq = quantize(lq)
    gt_size = torch.tensor(gt.shape[-2:], dtype=torch.float32, device=device)
    scale = (gt_size / torch.tensor(target, dtype=torch.float32, device=device)).expand(batch, 2).clone()
    records = _records(leaves, programs, gates, params, out_sizes, fitted, target)
    return DegradationResult(
        lq=lq,
        scale=scale,
        parameters=records,
        gt_sharpened=gt_sharpened if return_sharpened_gt else None,
    )


def synthesize(
    gt: torch.Tensor,
    recipe: RecipeLike,
    lq_size: tuple[int, int] | int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The LR batch (B, 3, h, w) in [0, 1], on 8-bit levels, on ``gt``'s device."""
    return degrade(gt, recipe, lq_size, generator).lq


def degrade_image(image: torch.Tensor, recipe: RecipeLike, lq_size: tuple[int, int], seed: int) -> torch.Tensor:
    """One (3, H, W) image degraded to (3, h, w) with a fixed seed: the reproducible LR of a
    degraded benchmark (validation and evaluation both make theirs this way)."""
    generator = make_generator(image.device, seed)
    return degrade(image[None].float(), recipe, lq_size, generator).lq[0]


# ------------------------------------------------------------------------------ execution
@torch.no_grad()
def sharpen_gt(gt: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """The recipe's sharpened GT (its ``gt_sharpening``), or ``gt`` itself when it has none: the
    target of the pixel and perceptual losses, for synthetic and real pairs alike."""
    spec = recipe.gt_sharpening
    if spec is None:
        return gt
    weight = draw(spec.weight, gt.shape[0], generator, gt.device)
    return usm_sharpen(gt.float(), weight, spec.threshold, spec.radius, spec.sigma)


def _draw_gate(p: float, n: int, generator: torch.Generator, device: torch.device) -> list[bool]:
    if p >= 1.0:
        return [True] * n
    return bernoulli(n, p, generator, device).tolist()


def _execute(
    images: torch.Tensor,
    leaves: list[Op],
    programs: list[list[int]],
    gates: list[list[bool]],
    params: list[dict[str, torch.Tensor]],
    target: tuple[int, int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[tuple[int, int], tuple[int, int]], set[int]]:
    """Run every sample's program.

    Returns the stacked result, each (leaf, sample)'s output size, and the samples that
    needed the final fit to the LR size.
    """
    batch = images.shape[0]
    chunks: list[tuple[list[int], torch.Tensor]] = [(list(range(batch)), images)]
    out_sizes: dict[tuple[int, int], tuple[int, int]] = {}
    for step in range(max(len(p) for p in programs)):
        groups: dict[tuple, list[tuple[int, list[int]]]] = defaultdict(list)
        for chunk_index, (samples, chunk) in enumerate(chunks):
            by_key: dict[tuple, list[int]] = defaultdict(list)
            for position, sample in enumerate(samples):
                program = programs[sample]
                leaf = program[step] if step < len(program) and gates[program[step]][sample] else -1
                by_key[(leaf, *chunk.shape[-2:])].append(position)
            for key, positions in by_key.items():
                groups[key].append((chunk_index, positions))
        next_chunks = []
        for (leaf, *_), members in groups.items():
            samples, group = _gather(chunks, members)
            if leaf < 0:
                next_chunks.append((samples, group))
                continue
            op = leaves[leaf]
            index = torch.tensor(samples, device=images.device)
            group_params = {name: value.index_select(0, index) for name, value in params[leaf].items()}
            for positions, result in kind_of(op).apply(op, group, group_params, generator, target):
                part_samples = [samples[p] for p in positions]
                for sample in part_samples:
                    out_sizes[(leaf, sample)] = tuple(result.shape[-2:])
                next_chunks.append((part_samples, result))
        chunks = next_chunks

    out = images.new_empty(batch, images.shape[1], *target)
    fitted: set[int] = set()
    for samples, chunk in chunks:
        if tuple(chunk.shape[-2:]) != target:
            chunk = resize(chunk, target, _FIT_MODE, antialias=True)
            fitted.update(samples)
        out[samples] = chunk
    return out, out_sizes, fitted


def _gather(chunks: list[tuple[list[int], torch.Tensor]], members: list[tuple[int, list[int]]]):
    """Samples and their images for one group; no copy when the group is one whole chunk."""
    samples: list[int] = []
    pieces = []
    for chunk_index, positions in members:
        chunk_samples, chunk = chunks[chunk_index]
        samples += [chunk_samples[p] for p in positions]
        pieces.append(chunk if len(positions) == len(chunk_samples) else chunk[positions])
    return samples, pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _records(leaves, programs, gates, params, out_sizes, fitted, target) -> list[list[dict[str, object]]]:
    host = [{name: value.tolist() for name, value in p.items() if name != "kernel"} for p in params]
    records = []
    for sample, program in enumerate(programs):
        sample_records = []
        for leaf in program:
            if not gates[leaf][sample]:
                continue
            record = describe(leaves[leaf], {name: values[sample] for name, values in host[leaf].items()})
            record["out_size"] = out_sizes[(leaf, sample)]
            sample_records.append(record)
        if sample in fitted:
            sample_records.append({"op": "fit_to_lq_size", "kind": "resize", "mode": _FIT_MODE, "out_size": target})
        records.append(sample_records)
    return records
