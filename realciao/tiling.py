"""Tiled CiaoSR inference in bounded memory, exact wherever the model allows.

The LR image stays on the CPU; each tile's LR window goes to the device, and the tile's
output pixels come back into a CPU buffer. Why tiles can be exact: an output pixel reads
the encoder feature of its nearest LR pixel's 3x3 unfold and of neighbours one pixel away,
so it depends on features at most 2 LR pixels from its own, and each feature on LR pixels
within the encoder's receptive radius r (34 for EDSR-baseline: 34 3x3 convs). With a
margin of r + 2 LR pixels a convolutional encoder without the non-local branch gives the
whole-image result. The non-local branch (global attention) and SwinIR's windows see one
tile only: those are the approximations.

Staying exact also needs the tile to make the same nearest-pixel decisions as the whole
image. The official neighbour shift depends on the frame, so tiles get the whole image's
shift converted into their units; and the whole image's float32 coordinates decide ties
(x2.5 puts queries exactly between two LR pixels), so each tile coordinate is mapped in
float64 and, where its own float32 decision differs, nudged by a few ulps until it agrees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from realciao.archs.ciaosr import (
    NEIGHBOUR_SIGNS,
    CiaoSR,
    neighbour_coords,
    normalise,
    official_neighbour_step,
    pixel_index,
)
from realciao.coords import cell_size, pixel_centres
from realciao.devices import autocast, available_memory, check_precision, without_autocast
from realciao.inference import denormalise_queries

UPSAMPLER_REACH = 2  # LR pixels between an output pixel's own LR pixel and the farthest feature it reads
# the non-local branch sees the upsampler's window; a wider one keeps its own edge effects (zero
# padding of its patches) out of the core: 4 px measured 1.7 dB closer to the whole image than 2 px
# (8 px: 4.4 dB, but its cost grows with the window's area squared)
NON_LOCAL_REACH = 4
# margin when the non-local branch makes tiles approximate anyway: the fixture EDSR's output moved
# by under 2e-6 between margins 16 and 36, and the encoder then runs on 1.8x instead of 3x a tile's area
NON_LOCAL_MARGIN = 16
# candidate nudges, in units of 2**-24 (half an ulp of 1.0): dense near zero, then geometric
_NUDGES = np.unique(np.concatenate([np.arange(1, 17), np.round(16 * 1.15 ** np.arange(1, 120))]))
_NUDGES = np.concatenate([[0.0], np.stack([_NUDGES, -_NUDGES], 1).ravel()]) * 2.0**-24


def receptive_radius(encoder: torch.nn.Module) -> int | None:
    """LR pixels an encoder feature can see in each direction; None when tiles are approximate."""
    return encoder.receptive_radius()


def default_margin(model: CiaoSR) -> int:
    """Without the non-local branch: the margin that makes tiles exact for convolutional encoders
    (capped: RDN's 131 px radius costs far more than its effective reach is worth). With it, or
    with SwinIR, tiles are approximate anyway and a smaller margin costs nothing measurable."""
    radius = receptive_radius(model.encoder)
    if radius is None or model.upsampler.cs_attn is not None:
        return NON_LOCAL_MARGIN
    return min(radius + UPSAMPLER_REACH, 48)


def default_tile(model: CiaoSR, scale: float = 4.0, device: torch.device | None = None) -> int:
    """LR tile side for the device: bounded by a quarter of the free memory, and for models
    with the non-local branch also by compute (its cost grows with the tile's area squared;
    at 96 LR px it is under a tenth of the x2 query cost on a CPU, 192 is the official test tile)."""
    device = device or next(model.parameters()).device
    upsampler = model.upsampler
    hidden = upsampler.imnet_k.linears[0].out_features
    channels = upsampler.channels
    # fp32 bytes held per LR pixel of a tile: pixel maps and their unfold, encoder activations, queries
    per_pixel = 4 * (2 * upsampler.value_dim + 2 * hidden + 6 * channels + 12 * max(1.0, scale) ** 2)
    budget = min(available_memory(device) // 4, (16 << 30) if device.type == "cuda" else (4 << 30))
    by_memory = int((budget / per_pixel) ** 0.5) - 2 * default_margin(model)
    non_local = upsampler.cs_attn is not None
    cap = (192 if non_local else 512) if device.type == "cuda" else (96 if non_local else 256)
    return max(32, min(cap, by_memory))


# ---------------------------------------------------------------------------------------
# Geometry: pure functions of sizes and coordinates
# ---------------------------------------------------------------------------------------


def split_cores(length: int, tile: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of near-equal length <= tile covering 0..length."""
    count = max(1, -(-length // max(1, tile)))
    bounds = [round(i * length / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


@dataclass(frozen=True)
class AxisSpan:
    """One tile along one axis: the pixels whose output it writes, and those the model reads."""

    core: tuple[int, int]  # [start, stop)
    window: tuple[int, int]  # [start, stop): the core and its context, inside the axis


def with_context(core: tuple[int, int], margin: int, length: int, align: int = 1) -> tuple[int, int]:
    """``core`` widened by ``margin`` on each side, inside 0..length; the start rounded down to
    a multiple of ``align``."""
    start, stop = core
    return max(0, start - margin) // align * align, min(length, stop + margin)


def plan_axis(length: int, tile: int | None, margin: int, align: int = 1) -> list[AxisSpan]:
    """The tile planner of every tiled model run (CiaoSR and peers): near-equal cores of at
    most ``tile`` covering 0..length (one core, the whole axis, when ``tile`` is 0, None or not
    smaller than ``length``), each read with ``margin`` pixels of context per side; window
    starts are rounded down to multiples of ``align`` (a model's multiple_of), so pixel-unshuffle
    and window-attention grids line up with the whole image's."""
    if not tile or tile <= 0 or tile >= length:
        return [AxisSpan((0, length), (0, length))]
    return [AxisSpan(core, with_context(core, margin, length, align)) for core in split_cores(length, tile)]


def axis_decisions(coords: torch.Tensor, step: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """(3, N) LR pixels the upsampler picks along one axis for 1-D coords: the query's own,
    and its neighbours at -step and +step; computed by the upsampler's own functions, so
    float32 rounding is the same as in a model call on this device."""
    n = coords.shape[0]
    coord = coords.new_zeros(1, n, 2)
    coord[0, :, axis] = coords
    step2 = coords.new_zeros(1, 2)
    step2[0, axis] = step
    shifted = neighbour_coords(coord, step2)
    minus = next(i for i, s in enumerate(NEIGHBOUR_SIGNS) if s[axis] < 0)
    plus = next(i for i, s in enumerate(NEIGHBOUR_SIGNS) if s[axis] > 0)
    hw = (size, 1) if axis == 0 else (1, size)
    return pixel_index(torch.stack([coord, shifted[minus], shifted[plus]]), *hw)[:, 0]


@dataclass(frozen=True)
class AxisFrame:
    """One axis of the whole image as the whole-image model call sees it."""

    lr_size: int
    out_size: int
    coords: np.ndarray  # (out_size,) float32 query centres, as make_query_grid makes them
    cell: np.float32
    step: np.float32  # the official neighbour shift for the whole image
    decisions: np.ndarray  # (3, out_size) int64: own, minus and plus LR pixel per output index


def axis_frames(lr_size: tuple[int, int], out_size: tuple[int, int], device) -> tuple[AxisFrame, AxisFrame]:
    """Row and column frames of the whole image (decisions computed on the model's device)."""
    cell = torch.tensor([cell_size(*out_size)], device=device)
    step = official_neighbour_step(cell, *lr_size)[0]
    frames = []
    for axis in (0, 1):
        coords = pixel_centres(out_size[axis], device)
        decisions = axis_decisions(coords, step[axis], lr_size[axis], axis)
        frames.append(
            AxisFrame(
                lr_size[axis],
                out_size[axis],
                coords.cpu().numpy(),
                np.float32(cell[0, axis].item()),
                np.float32(step[axis].item()),
                decisions.cpu().numpy(),
            )
        )
    return frames[0], frames[1]


@dataclass(frozen=True)
class AxisTile:
    """One axis of one tile: which LR the encoder and upsampler see, which outputs it writes."""

    encoder: tuple[int, int]  # LR window through the encoder (core + margin)
    upsampler: tuple[int, int]  # LR window through the upsampler (core + reach), inside encoder
    out: tuple[int, int]  # output indices whose own LR pixel lies in the core


def plan_frame_axis(frame: AxisFrame, tile: int, margin: int, reach: int = UPSAMPLER_REACH) -> list[AxisTile]:
    """``plan_axis``'s tiles along one axis of a CiaoSR call; output index i belongs to the
    core holding its own LR pixel (as the whole image decides it), so every output is written
    exactly once."""
    tiles = []
    own = frame.decisions[0]
    for span in plan_axis(frame.lr_size, tile, margin):
        out0, out1 = (int(v) for v in np.searchsorted(own, span.core, side="left"))
        if out1 <= out0:
            continue  # downscaling can leave a core without outputs
        upsampler = with_context(span.core, min(margin, reach), frame.lr_size)
        tiles.append(AxisTile(span.window, upsampler, (out0, out1)))
    return tiles


def tile_axis_query(
    frame: AxisFrame, tile: AxisTile, axis: int, device
) -> tuple[torch.Tensor, float, float, int]:
    """Coords (n,), cell, step in the tile's upsampler frame that reproduce the whole image's
    decisions; also how many coords could not be made to agree (0 in practice)."""
    u0, u1 = tile.upsampler
    size = u1 - u0
    ratio = frame.lr_size / size
    out0, out1 = tile.out
    target = ((frame.coords[out0:out1].astype(np.float64) + 1) * frame.lr_size - 2 * u0) / size - 1
    step = torch.tensor(float(frame.step) * ratio, dtype=torch.float32, device=device)
    cell = float(np.float32(float(frame.cell) * ratio))
    want = torch.from_numpy(frame.decisions[:, out0:out1] - u0).to(device)

    coords = torch.from_numpy(target.astype(np.float32)).to(device)
    wrong = (axis_decisions(coords, step, size, axis) != want).any(0)
    unresolved = 0
    if bool(wrong.any()):
        index = wrong.nonzero()[:, 0]
        candidates = torch.from_numpy(
            (target[index.cpu().numpy(), None] + _NUDGES[None, :]).astype(np.float32)
        )
        candidates = candidates.to(device)
        picked = axis_decisions(candidates.reshape(-1), step, size, axis).view(3, *candidates.shape)
        agree = (picked == want[:, index, None]).all(0)
        found = agree.any(1)
        first = agree.float().argmax(1)  # nudges are ordered by size: the smallest that agrees
        coords[index[found]] = candidates[found, first[found]]
        unresolved = int((~found).sum())
    return coords, cell, float(step), unresolved


# ---------------------------------------------------------------------------------------
# Running the model tile by tile
# ---------------------------------------------------------------------------------------


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16/float array -> float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535
    return np.clip(pixels, 0, 1).astype(np.float32, copy=False)


def from_unit_float(image: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """(H, W, C) tensor in [0, 1] -> numpy of dtype (quantised on the device: less to copy back)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return image.mul(255).round_().to(torch.uint8).cpu().numpy()
    if dtype == np.uint16:
        return image.mul(65535).round_().to(torch.int32).cpu().numpy().astype(np.uint16)
    return image.float().cpu().numpy().astype(dtype, copy=False)


@dataclass
class TileReport:
    tiles: int = 0
    fp32_fallbacks: int = 0  # tiles recomputed in fp32 because reduced precision gave inf/NaN
    unresolved_coords: int = 0  # coords whose whole-image decision could not be reproduced


class TiledUpscaler:
    """Upscale (h, w, 3) RGB arrays to any (H, W) tile by tile.

    ``tile`` is the LR core of a tile (pixels per side), ``margin`` the LR context around it
    (default: exact for EDSR-baseline, see ``default_margin``)."""

    def __init__(self, model: CiaoSR, tile: int, margin: int | None = None, precision: str = "fp32"):
        if tile < 1:
            raise ValueError(f"tile must be at least 1 LR pixel, got {tile}")
        self.model = model
        self.device = next(model.parameters()).device
        check_precision(precision, self.device)
        self.tile = int(tile)
        self.margin = default_margin(model) if margin is None else int(margin)
        if self.margin < 0:
            raise ValueError(f"tile margin must be >= 0, got {margin}")
        self.precision = precision
        self.reach = UPSAMPLER_REACH if model.upsampler.cs_attn is None else NON_LOCAL_REACH

    def plan(self, lr_size: tuple[int, int], out_size: tuple[int, int]):
        rows, cols = axis_frames(lr_size, out_size, self.device)
        row_tiles = plan_frame_axis(rows, self.tile, self.margin, self.reach)
        return rows, cols, row_tiles, plan_frame_axis(cols, self.tile, self.margin, self.reach)

    @torch.no_grad()
    def __call__(
        self,
        lr: np.ndarray,
        out_size: tuple[int, int],
        out: np.ndarray | None = None,
        on_tile: Callable[[int, int], None] | None = None,
        tile_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[np.ndarray, TileReport]:
        """(h, w, 3) RGB or (h, w) grey LR (uint8, uint16 or float in [0, 1]) -> (H, W, C)
        output written into ``out`` (allocated as RGB of lr's dtype when None).
        ``tile_transform`` maps each (h, w, 3) tile in [0, 1] to the C channels of ``out``
        (e.g. RGB to grey) before it is quantised; ``on_tile(done, total)`` reports progress."""
        if not (lr.ndim == 2 or (lr.ndim == 3 and lr.shape[2] == 3)):
            raise ValueError(f"lr must be an (h, w, 3) RGB or (h, w) grey array, got shape {lr.shape}")
        height, width = (int(v) for v in out_size)
        if height < 1 or width < 1:
            raise ValueError(f"output size must be positive, got {out_size}")
        if out is None:
            out = np.empty((height, width, 3), dtype=lr.dtype if lr.dtype.kind == "u" else np.float32)
        if out.shape[:2] != (height, width):
            raise ValueError(f"out has shape {out.shape}, expected ({height}, {width}, C)")
        with without_autocast(self.device):
            return self._run(lr, out, (height, width), on_tile, tile_transform)

    def _run(self, lr, out, out_size, on_tile, tile_transform) -> tuple[np.ndarray, TileReport]:
        height, width = out_size
        rows, cols, row_tiles, col_tiles = self.plan(lr.shape[:2], (height, width))
        report = TileReport()
        col_queries = [tile_axis_query(cols, t, 1, self.device) for t in col_tiles]
        report.unresolved_coords += sum(q[3] for q in col_queries)
        total = len(row_tiles) * len(col_tiles)
        for row_tile in row_tiles:
            row_query = tile_axis_query(rows, row_tile, 0, self.device)
            report.unresolved_coords += row_query[3]
            for col_tile, col_query in zip(col_tiles, col_queries):
                image = self._tile(lr, row_tile, col_tile, row_query, col_query, report)
                if tile_transform is not None:
                    image = tile_transform(image)
                (o0, o1), (p0, p1) = row_tile.out, col_tile.out
                out[o0:o1, p0:p1] = from_unit_float(image, out.dtype)
                report.tiles += 1
                if on_tile is not None:
                    on_tile(report.tiles, total)
        return out, report

    def _tile(self, lr, row_tile: AxisTile, col_tile: AxisTile, row_query, col_query, report) -> torch.Tensor:
        (e0, e1), (f0, f1) = row_tile.encoder, col_tile.encoder
        window = torch.from_numpy(to_unit_float(lr[e0:e1, f0:f1]))
        window = window.expand(3, -1, -1) if window.ndim == 2 else window.permute(2, 0, 1)  # grey: replicate
        window = window[None]
        lr_normalised = normalise(window.to(self.device))
        feature = self.model.encoder(lr_normalised)  # fp32: see realciao.inference.upscale
        (u0, u1), (v0, v1) = row_tile.upsampler, col_tile.upsampler
        crop = (slice(None), slice(None), slice(u0 - e0, u1 - e0), slice(v0 - f0, v1 - f0))
        feature, lr_normalised = feature[crop].contiguous(), lr_normalised[crop].contiguous()

        row_coords, row_cell, row_step, _ = row_query
        col_coords, col_cell, col_step, _ = col_query
        coord = torch.stack(torch.meshgrid(row_coords, col_coords, indexing="ij"), -1).view(1, -1, 2)
        cell = coord.new_tensor([row_cell, col_cell]).expand_as(coord)
        step = coord.new_tensor([[row_step, col_step]])
        pred = self._upsample(feature, lr_normalised, coord, cell, step, self.precision)
        if not bool(torch.isfinite(pred).all()):
            if self.precision == "fp32":
                raise FloatingPointError(
                    "the model produced inf/NaN in fp32: the checkpoint is probably broken"
                )
            report.fp32_fallbacks += 1  # never a silently black tile: redo it in fp32
            pred = self._upsample(feature, lr_normalised, coord, cell, step, "fp32")
        return denormalise_queries(pred, len(row_coords), len(col_coords))[0].permute(1, 2, 0)

    def _upsample(self, feature, lr_normalised, coord, cell, step, precision: str) -> torch.Tensor:
        with autocast(self.device, precision):
            return self.model.upsampler(feature, lr_normalised, coord, cell, neighbour_step=step)
