"""The CiaoSR upsampler and generator, computing the official function with less work.

Per query, the official code samples the 3x3-unfolded feature of the query's LR pixel
and of four neighbours, gates keys and values with MLPs of [feature, relative offset,
cell], mixes the gated values by a softmax over the neighbours and decodes the result.
What this implementation changes (the function stays the same):
- the unfolded map, the non-local branch and the features' share of the gates' first
  layer are computed once per LR pixel, not once per query and neighbour;
- the four neighbours of a chunk of queries run through the MLPs as one batch, in one
  autograd function that keeps its temporaries cache-sized (``neighbour_attention.py``);
- the non-local branch aggregates patches already passed through its ``down`` conv
  (``nonlocal_attention.py``);
- neighbour lookups are index gathers whose indices come from ``grid_sample`` itself,
  so the nearest-pixel decisions are bit-identical to the official ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from realciao.archs.mlp import MLP
from realciao.archs.neighbour_attention import compute_dtype, decode_queries
from realciao.archs.nonlocal_attention import ScaleAwareNonLocal
from realciao.coords import pixel_centres

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean the generator's input and output are centred on
NEIGHBOUR_SIGNS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
EPS_SHIFT = 1e-6


@dataclass
class PixelMaps:
    """What the upsampler precomputes once per image. Row ``h*w`` of each map is the
    zero-feature row that queries outside [-1, 1] read (the official zero padding)."""

    values: torch.Tensor  # (B, h*w+1, 9C + C): unfolded feature, then the non-local feature
    key_hidden: torch.Tensor  # (B, h*w+1, hidden): key features through imnet_k's first layer
    value_hidden: torch.Tensor  # (B, h*w+1, hidden): value features through imnet_v's first layer
    height: int
    width: int


class CiaoSRUpsampler(nn.Module):
    def __init__(
        self,
        channels: int = 64,
        mlp_hidden: Sequence[int] = (256, 256, 256, 256),
        non_local: bool = True,
        query_chunk: int = 512,
    ):
        super().__init__()
        self.channels = channels
        self.key_dim = 9 * channels
        self.value_dim = self.key_dim + (channels if non_local else 0)
        self.imnet_q = MLP(self.value_dim, 3, mlp_hidden)
        self.imnet_k = MLP(self.key_dim + 4, self.key_dim, mlp_hidden)
        self.imnet_v = MLP(self.value_dim + 4, self.value_dim, mlp_hidden)
        self.cs_attn = ScaleAwareNonLocal(channels) if non_local else None
        # queries (summed over the batch) decoded per pass; bounds memory at inference
        self.query_chunk = query_chunk

    def pixel_maps(self, feature: torch.Tensor) -> PixelMaps:
        b, c, h, w = feature.shape
        values = F.unfold(feature, 3, padding=1)  # (B, 9C, h*w), channel order c*9 + ky*3 + kx
        if self.cs_attn is not None:
            values = torch.cat([values, self.cs_attn(feature).flatten(2)], dim=1)
        # zero row for out-of-range queries; one contiguous copy, already in the autocast dtype,
        # that the maps and the gathers share (no per-use casts of this largest map)
        values = F.pad(values, (0, 1)).transpose(1, 2).to(compute_dtype(values), memory_format=torch.contiguous_format)
        key_first = self.imnet_k.linears[0]
        value_first = self.imnet_v.linears[0]
        key_hidden = F.linear(values[..., : self.key_dim], key_first.weight[:, : self.key_dim], key_first.bias)
        value_hidden = F.linear(values, value_first.weight[:, : self.value_dim], value_first.bias)
        return PixelMaps(values, key_hidden, value_hidden, h, w)

    def forward(
        self,
        feature: torch.Tensor,
        lr: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor,
        neighbour_step: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B,C,h,w) feature, (B,3,h,w) normalised LR, (B,Q,2) coord, (B,Q,2) cell -> (B,Q,3).

        ``neighbour_step`` (B,2), in this feature's normalised units, overrides the official
        shift to the four neighbours, which depends on the frame: a tile of a larger image
        passes the whole image's step (see ``official_neighbour_step``) to stay exact."""
        maps = self.pixel_maps(feature)
        if neighbour_step is None:
            neighbour_step = official_neighbour_step(cell[:, 0, :], maps.height, maps.width)
        # chunks bound memory only without autograd (which keeps every chunk's activations); a traced
        # graph (ONNX export) decodes every query in one pass, as a loop count would be frozen in it
        whole = torch.is_grad_enabled() or torch.jit.is_tracing()
        per_pass = coord.shape[1] if whole else max(1, self.query_chunk // coord.shape[0])
        preds = [
            self.query(maps, coord[:, q0 : q0 + per_pass], cell[:, q0 : q0 + per_pass], neighbour_step)
            for q0 in range(0, coord.shape[1], per_pass)
        ]
        pred = preds[0] if len(preds) == 1 else torch.cat(preds, dim=1)
        return pred + bilinear_residual(lr, coord).to(pred.dtype)

    def query(
        self, maps: PixelMaps, coord: torch.Tensor, cell: torch.Tensor, neighbour_step: torch.Tensor
    ) -> torch.Tensor:
        b, q, _ = coord.shape
        h, w = maps.height, maps.width
        size = torch.stack([torch.as_tensor(h), torch.as_tensor(w)]).to(coord)  # not new_tensor: h, w may be traced
        coord_sets = [coord, *neighbour_coords(coord, neighbour_step)]
        index = pixel_index(torch.stack(coord_sets), h, w)  # (5, B, q) in [0, h*w]
        query_index, neighbour_index = index[0], index[1:]

        centres = torch.stack(
            [pixel_centres(h, coord.device)[neighbour_index // w], pixel_centres(w, coord.device)[neighbour_index % w]],
            dim=-1,
        )  # (4, B, q, 2); neighbour indices never point at the zero row: their coords are clamped inside
        relative = (coord - centres) * size
        cell_term = (cell * size).expand_as(relative)
        position = torch.cat([relative, cell_term], dim=-1)  # (4, B, q, 4)

        flat_offset = (torch.arange(b, device=coord.device) * (h * w + 1)).view(1, b, 1)
        neighbour_rows = (neighbour_index + flat_offset).reshape(4, -1)
        query_rows = (query_index + flat_offset[0]).reshape(-1)
        decoded = decode_queries(
            maps.values.reshape(b * (h * w + 1), -1),
            maps.key_hidden.reshape(b * (h * w + 1), -1),
            maps.value_hidden.reshape(b * (h * w + 1), -1),
            neighbour_rows,
            query_rows,
            position.reshape(4, b * q, 4),
            self.imnet_k,
            self.imnet_v,
            self.imnet_q,
        )
        return decoded.view(b, q, 3)


def official_neighbour_step(first_cell: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B,2) shift to the neighbours, (1 - cell) / (n - 1) per axis, from each sample's first cell."""
    # float32 steps in the official order, so that the nearest-pixel decisions match bit for bit
    row_step = 1 / ((h - 1) / (1 - first_cell[:, 0]))
    col_step = 1 / ((w - 1) / (1 - first_cell[:, 1]))
    # a 1-pixel axis gives 1/0 or 0/0: any shift stays in the only pixel, so use none
    return torch.nan_to_num(torch.stack([row_step, col_step], dim=1), nan=0.0)


def neighbour_coords(coord: torch.Tensor, neighbour_step: torch.Tensor) -> list[torch.Tensor]:
    """The four shifted query coordinates, each clamped inside the image as the official code does."""
    row_step = neighbour_step[:, 0:1]
    col_step = neighbour_step[:, 1:2]
    shifted = []
    for row_sign, col_sign in NEIGHBOUR_SIGNS:
        c = coord.clone()
        c[:, :, 0] += row_sign * row_step + EPS_SHIFT
        c[:, :, 1] += col_sign * col_step + EPS_SHIFT
        shifted.append(c.clamp_(-1 + 1e-6, 1 - 1e-6))
    return shifted


def pixel_index(coord: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Flat index of the LR pixel nearest to each coord (..., 2), as grid_sample's nearest mode
    picks it; h*w for coordinates outside the image (the official zero padding)."""
    lead = coord.shape[:-1]
    grid = coord.reshape(1, 1, -1, 2).flip(-1).float()
    rows = torch.arange(1, h + 1, device=coord.device, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(1, w + 1, device=coord.device, dtype=torch.float32).view(1, w).expand(h, w)
    index_map = torch.stack([rows, cols]).unsqueeze(0)
    with torch.autocast(device_type=coord.device.type, enabled=False):
        picked = F.grid_sample(index_map, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    picked = picked.view(2, -1).round().long() - 1
    inside = (picked >= 0).all(0)
    flat = torch.where(inside, picked[0] * w + picked[1], torch.as_tensor(h * w).to(picked))
    return flat.view(lead)


def bilinear_residual(lr: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of the normalised LR at each query, (B, Q, 3)."""
    with torch.autocast(device_type=lr.device.type, enabled=False):
        sampled = F.grid_sample(
            lr.float(), coord.flip(-1).unsqueeze(1).float(), mode="bilinear", padding_mode="border", align_corners=False
        )
    return sampled[:, :, 0, :].transpose(1, 2)


class CiaoSR(nn.Module):
    """Encoder + CiaoSR upsampler. ``forward(lr_normalised, coord, cell)`` has the official
    signature and meaning: (B,3,h,w) LR minus ``RGB_MEAN``, (B,Q,2) coords, (B,Q,2) cells ->
    (B,Q,3) RGB in the same normalised space."""

    def __init__(self, encoder: nn.Module, upsampler: CiaoSRUpsampler, name: str = "", config: dict | None = None):
        super().__init__()
        self.encoder = encoder
        self.upsampler = upsampler
        self.name = name
        self.config = dict(config or {})

    def forward(self, lr_normalised: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        check_inputs(lr_normalised, coord, cell)
        return self.upsampler(self.encoder(lr_normalised), lr_normalised, coord, cell)


def normalise(image: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> the generator's input space (minus ``RGB_MEAN``), channels in dim -3."""
    return image - image.new_tensor(RGB_MEAN).view(3, 1, 1)


def denormalise(image: torch.Tensor) -> torch.Tensor:
    """The generator's output space -> RGB (not clamped), channels in dim -3."""
    return image + image.new_tensor(RGB_MEAN).view(3, 1, 1)


def check_inputs(lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> None:
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"lr must be (B, 3, h, w) RGB, got shape {tuple(lr.shape)}")
    if lr.shape[-2] < 1 or lr.shape[-1] < 1:
        raise ValueError(f"lr must have a positive size, got {tuple(lr.shape)}")
    for label, t in (("coord", coord), ("cell", cell)):
        if t.dim() != 3 or t.shape[-1] != 2 or t.shape[0] != lr.shape[0]:
            raise ValueError(f"{label} must be (B, Q, 2) with B = {lr.shape[0]}, got shape {tuple(t.shape)}")
    if coord.shape[1] != cell.shape[1]:
        raise ValueError(f"coord and cell must have the same number of queries, got {coord.shape[1]} and {cell.shape[1]}")
