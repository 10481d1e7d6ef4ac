"""The CiaoSR upsampler as the official code computes it, written straightforwardly.

A same-run baseline for the benchmarks: it takes the weights of a realciao ``CiaoSR``
model but none of realciao's upsampler code, and does the work the official code does
(``docs/ciaosr_architecture.md`` in ../shared describes each step):
- per query and per neighbour, nearest ``grid_sample`` of the 3x3-unfolded feature map,
  the full key and value MLPs on [feature, relative offset, cell], element-wise gates,
  a softmax over the four neighbours and the decoder;
- the non-local branch with the whole (keys x positions) attention map of each image at
  once (memory quadratic in LR area), the transposed-convolution overlap-add of 6x6
  patches at 2x resolution, then ``down``;
- in test mode, chunks of 30,000 queries, each recomputing the unfold and the whole
  non-local branch.

    official_upscale(model, lr, size)                  # inference, like realciao.upscale
    official_forward(model, lr_normalised, coord, cell)  # training forward, like model(...)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean
TEST_CHUNK = 30_000  # queries per pass in the official test mode
NEIGHBOURS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
EPS_SHIFT = 1e-6
NON_LOCAL_SCALE = 2
ESCAPE_NAN = 1e-4  # floor of a key patch's norm
SOFTMAX_SCALE = 10.0


def make_coord(n: int, device=None) -> torch.Tensor:
    """Pixel centres of n pixels spanning [-1, 1] (LIIF's make_coord)."""
    r = 1.0 / n
    return -1 + r + 2 * r * torch.arange(n, device=device, dtype=torch.float32)


def query_grid(height: int, width: int, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """coord (B, H*W, 2) in (row, col) order, row-major; cell (B, H*W, 2) = (2/H, 2/W)."""
    rows, cols = make_coord(height, device), make_coord(width, device)
    coord = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).view(1, -1, 2).expand(batch, -1, -1)
    cell = torch.ones_like(coord)
    cell[..., 0] *= 2 / height
    cell[..., 1] *= 2 / width
    return coord, cell


def run_mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Linear layers of ``mlp.layers`` (even indices) with ReLU between."""
    linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
    for i, linear in enumerate(linears):
        x = F.linear(x, linear.weight, linear.bias)
        if i < len(linears) - 1:
            x = F.relu(x)
    return x


def conv1x1_prelu(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    conv, prelu = block[0], block[1]
    return F.prelu(F.conv2d(x, conv.weight, conv.bias), prelu.weight)


def non_local(cs_attn: nn.Module, feature: torch.Tensor) -> torch.Tensor:
    """Scale-aware non-local branch, (B, C, h, w) -> (B, C, h, w), one image at a time."""
    b, c, h, w = feature.shape
    s = NON_LOCAL_SCALE
    x = F.pad(feature, (0, (-w) % s, 0, (-h) % s), mode="reflect")
    embed = conv1x1_prelu(cs_attn.conv_assembly, x)
    match = conv1x1_prelu(cs_attn.conv_match_1, x)
    reference = conv1x1_prelu(cs_attn.conv_match_2, F.interpolate(x, scale_factor=1 / s, mode="bilinear"))
    kernel = 3 * s
    outs = []
    for i in range(b):
        # reconstruction patches: 6x6 of embed, stride 2, "same" padding -> (L, C, 6, 6)
        raw = F.unfold(embed[i : i + 1], kernel, stride=s, padding=(kernel - s) // 2)
        raw = raw[0].transpose(0, 1).reshape(-1, c, kernel, kernel)
        # keys: 3x3 patches of the reference, stride 1, same padding, L2-normalised -> (L, C/2, 3, 3)
        keys = F.unfold(reference[i : i + 1], 3, padding=1)[0].transpose(0, 1)
        keys = keys / torch.clamp(keys.norm(dim=1, keepdim=True), min=ESCAPE_NAN)
        keys = keys.reshape(-1, match.shape[1], 3, 3)
        # the whole attention map (1, L, h', w') at once
        logits = F.conv2d(F.pad(match[i : i + 1], (1, 1, 1, 1)), keys)
        attention = F.softmax(logits * SOFTMAX_SCALE, dim=1)
        canvas = F.conv_transpose2d(attention, raw, stride=s, padding=(kernel - s) // 2)  # (1, C, 2h', 2w')
        down = F.conv2d(canvas, cs_attn.down.weight, cs_attn.down.bias, stride=s, padding=1)
        outs.append(down / 6)
    return torch.cat(outs, dim=0)[:, :, :h, :w]


def sample_nearest(feature_map: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) map, (B, q, 2) coords -> (B, q, D), nearest pixel, zeros outside."""
    sampled = F.grid_sample(feature_map, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    return sampled[:, :, 0, :].permute(0, 2, 1)


def query_rgb(
    upsampler: nn.Module, feature: torch.Tensor, lr_normalised: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor
) -> torch.Tensor:
    """The official query step on one chunk: unfold, non-local branch, four neighbours."""
    b, c, h, w = feature.shape
    unfolded = F.unfold(feature, 3, padding=1).view(b, 9 * c, h, w)
    if upsampler.cs_attn is not None:
        value_map = torch.cat([unfolded, non_local(upsampler.cs_attn, feature)], dim=1)
    else:
        value_map = unfolded
    query = sample_nearest(unfolded, coord)  # (B, q, 9C)

    # the official shift to the neighbours, from the cell of each sample's first query
    row_shift = ((1 - cell[:, 0, 0]) / (h - 1)).view(b, 1)
    col_shift = ((1 - cell[:, 0, 1]) / (w - 1)).view(b, 1)
    centre_map = torch.stack(torch.meshgrid(make_coord(h, feature.device), make_coord(w, feature.device), indexing="ij"))
    centre_map = centre_map.unsqueeze(0).expand(b, 2, h, w)
    cell_term = cell.clone()
    cell_term[:, :, 0] *= h
    cell_term[:, :, 1] *= w

    logits, values = [], []
    for row_sign, col_sign in NEIGHBOURS:
        shifted = coord.clone()
        shifted[:, :, 0] += row_sign * row_shift + EPS_SHIFT
        shifted[:, :, 1] += col_sign * col_shift + EPS_SHIFT
        shifted.clamp_(-1 + 1e-6, 1 - 1e-6)
        key = sample_nearest(unfolded, shifted)
        value = sample_nearest(value_map, shifted)
        centre = sample_nearest(centre_map, shifted)
        rel = coord - centre
        rel[:, :, 0] *= h
        rel[:, :, 1] *= w
        key = key * run_mlp(upsampler.imnet_k, torch.cat([key, rel, cell_term], dim=-1))
        value = value * run_mlp(upsampler.imnet_v, torch.cat([value, rel, cell_term], dim=-1))
        logits.append((query * key).sum(-1))
        values.append(value)
    weights = F.softmax(torch.stack(logits, dim=-1), dim=-1)  # (B, q, 4)
    mixed = (torch.stack(values, dim=-1) * weights.unsqueeze(-2)).sum(-1)  # (B, q, 10C)
    pred = run_mlp(upsampler.imnet_q, mixed)
    residual = F.grid_sample(
        lr_normalised, coord.flip(-1).unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=False
    )[:, :, 0, :].permute(0, 2, 1)
    return pred + residual


def official_forward(model: nn.Module, lr_normalised: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """Training mode: (B,3,h,w) normalised LR, (B,Q,2) coord and cell -> (B,Q,3), one pass
    over all queries, differentiable with plain autograd."""
    feature = model.encoder(lr_normalised)
    return query_rgb(model.upsampler, feature, lr_normalised, coord, cell)


@torch.no_grad()
def official_predict(
    model: nn.Module, lr_normalised: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, chunk: int = TEST_CHUNK
) -> torch.Tensor:
    """Test mode: the encoder once, then chunks of queries, each redoing unfold and non-local."""
    feature = model.encoder(lr_normalised)
    preds = [
        query_rgb(model.upsampler, feature, lr_normalised, coord[:, q0 : q0 + chunk], cell[:, q0 : q0 + chunk])
        for q0 in range(0, coord.shape[1], chunk)
    ]
    return torch.cat(preds, dim=1)


@torch.no_grad()
def official_upscale(model: nn.Module, lr: torch.Tensor, size, chunk: int = TEST_CHUNK) -> torch.Tensor:
    """(B,3,h,w) LR in [0,1] -> (B,3,H,W) in [0,1], as the official test mode computes it."""
    height, width = (int(v) for v in size)
    lr = lr.float()
    mean = torch.tensor(RGB_MEAN, device=lr.device).view(1, 3, 1, 1)
    coord, cell = query_grid(height, width, lr.shape[0], lr.device)
    pred = official_predict(model, lr - mean, coord, cell, chunk)
    image = pred.view(lr.shape[0], height, width, 3).permute(0, 3, 1, 2)
    return (image + mean).clamp(0, 1)
