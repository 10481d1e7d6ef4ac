"""CiaoSR's scale-aware non-local branch (``cs_attn``), exact, in memory linear in LR area.

Every LR position attends over all 3x3 patches of a 2x-downscaled copy of the feature
and gathers the matching 6x6 patches at 2x resolution. The official code builds the
full (positions x keys) attention map at once, quadratic in memory; here the softmax
rows are computed for bounded chunks of positions and overlap-added into the 2x canvas
chunk by chunk, which gives the same result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NON_LOCAL_SCALE = 2  # the released configs use one scale, 2; `down` is the stride-2 conv for it
PATCH = 3  # matching patch size
SOFTMAX_GAIN = 10.0
NORM_FLOOR = 1e-4
AGGREGATE_DIVISOR = 6.0
# kernel taps of `down` that stay inside a key's patch, per output offset -1, 0, 1, 2 from its position
TAP_MASKS = ([1, 2], [0, 1, 2], [0])
OFFSET_MASK = (0, 1, 1, 2)


def overlap_add(blocks: torch.Tensor, grid, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """``F.fold`` of (B, C*kh*kw, gh*gw) blocks laid on a gh x gw grid: (B, C, (gh-1)*sh+kh, (gw-1)*sw+kw).

    A traced graph gets the same sum as a grouped transposed convolution with a one-hot
    kernel: ONNX's Col2Im needs its output size as a constant, which a dynamic graph lacks."""
    gh, gw = grid
    kh, kw = kernel
    if not torch.jit.is_tracing():
        return F.fold(blocks, ((gh - 1) * stride[0] + kh, (gw - 1) * stride[1] + kw), kernel, stride=stride)
    taps = kh * kw
    channels = blocks.shape[1] // taps
    one_hot = torch.eye(taps, dtype=blocks.dtype, device=blocks.device).view(taps, 1, kh, kw)
    weight = one_hot.repeat(int(channels), 1, 1, 1)  # (C*taps, 1, kh, kw): tap t of channel c -> its place
    grid_blocks = blocks.reshape(blocks.shape[0], blocks.shape[1], gh, gw)
    return F.conv_transpose2d(grid_blocks, weight, stride=stride, groups=int(channels))


def conv1x1_prelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.PReLU())


class ScaleAwareNonLocal(nn.Module):
    def __init__(self, channels: int, reduction: int = 2, chunk_elements: int = 1 << 24):
        super().__init__()
        self.conv_match_1 = conv1x1_prelu(channels, channels // reduction)
        self.conv_match_2 = conv1x1_prelu(channels, channels // reduction)
        self.conv_assembly = conv1x1_prelu(channels, channels)
        self.down = nn.Conv2d(channels, channels, 3, stride=NON_LOCAL_SCALE, padding=1)
        # upper bound on elements of one chunk's attention rows (positions x keys x batch)
        self.chunk_elements = chunk_elements

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feature.shape
        s = NON_LOCAL_SCALE
        pad_h, pad_w = (-h) % s, (-w) % s
        x = feature
        tracing = torch.jit.is_tracing()  # a traced (ONNX) graph serves every size: it always pads, by reflection
        if pad_h or pad_w or tracing:
            mode = "reflect" if tracing or (pad_h < h and pad_w < w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        hp, wp = x.shape[-2:]

        embed = self.conv_assembly(x)
        match = self.conv_match_1(x)
        reference = self.conv_match_2(F.interpolate(x, scale_factor=1.0 / s, mode="bilinear"))

        # keys: L2-normalised 3x3 patches of the downscaled reference, (B, L, C/2*9)
        keys = F.unfold(reference, PATCH, padding=PATCH // 2)
        keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)
        wide = torch.promote_types(embed.dtype, torch.float32)  # at least fp32, see the matching below
        keys = keys.transpose(1, 2).to(wide) * SOFTMAX_GAIN
        # queries: 3x3 neighbourhoods of every padded LR position, (B, C/2*9, hp*wp)
        queries = F.unfold(match, PATCH, padding=PATCH // 2).to(wide)
        composed = self.composed_patches(embed)  # (B, C*16, L)
        num_keys = composed.shape[-1]
        top_patches, left_patches = self.border_patches(embed, hp, wp)

        out = embed.new_zeros(b, c, hp + 3, wp + 3, dtype=wide)
        top_rows, left_cols = [], []
        rows_per_chunk = max(1, self.chunk_elements // max(1, b * wp * num_keys))
        # a traced graph would freeze the chunk count: it takes every row at once (memory quadratic in area)
        chunks = [(0, hp)] if tracing else [(r, min(hp, r + rows_per_chunk)) for r in range(0, hp, rows_per_chunk)]
        for row0, row1 in chunks:
            cols = slice(row0 * wp, row1 * wp)
            # matching stays in fp32: a x10 softmax over thousands of keys is sensitive to bf16 rounding
            with torch.autocast(device_type=feature.device.type, enabled=False):
                logits = torch.bmm(keys, queries[:, :, cols])  # (B, L, positions), gain included
                weights = torch.softmax(logits, dim=1).to(composed.dtype)
            gathered = torch.bmm(composed, weights)  # (B, C*16, positions)
            # each position adds its 4x4 block of output rows py-1..py+2: a fold with stride 1
            block = overlap_add(gathered, (row1 - row0, wp), (4, 4), (1, 1))
            out[:, :, row0 : row1 + 3] += block.to(out.dtype)
            # the weights of the positions on the first row (first chunk) and first column
            border = torch.arange(0, (row1 - row0) * wp, wp, device=feature.device)
            if row0 == 0:
                border = torch.cat([torch.arange(wp, device=feature.device), border])
            border_weights = weights.index_select(2, border)
            left_cols.append(torch.bmm(left_patches, border_weights[..., -(row1 - row0) :]))
            if row0 == 0:
                top_rows.append(torch.bmm(top_patches, border_weights[..., :wp]))
        out = out[:, :, 1 : hp + 1, 1 : wp + 1]
        out = out - self.border_correction(top_rows[0], torch.cat(left_cols, dim=-1), hp, wp)
        bias = self.down.bias.to(out.dtype).view(1, c, 1, 1)
        return ((out + bias) / AGGREGATE_DIVISOR)[:, :, :h, :w]

    def composed_patches(self, embed: torch.Tensor) -> torch.Tensor:
        """``down`` (without bias) applied to every key's 6x6 reconstruction patch, (B, C*16, L).

        Placing a key's 6x6 patch on the 2x canvas at a position and then running the 3x3
        stride-2 ``down`` conv touches the 4x4 output pixels around that position, and the
        result for each of them is ``down`` at a shifted location, using only the kernel taps
        that land inside the patch. So all keys' 4x4 blocks come from three row masks times
        three column masks of the kernel, each one strided conv of ``embed``: the aggregation
        then moves C*16 instead of C*36 numbers per key and no 2x canvas is built."""
        b, _, hp, wp = embed.shape
        c = self.down.out_channels  # an int even while traced: the kernel's shape must be known to the exporter
        taps = torch.zeros(3, 3, device=embed.device, dtype=self.down.weight.dtype)
        for r, rows in enumerate(TAP_MASKS):
            taps[r, rows] = 1
        # (C_out, row mask, column mask, C_in, 3, 3): the kernel with only the taps each pair keeps
        masked = self.down.weight.unsqueeze(1).unsqueeze(1) * (taps.view(3, 1, 1, 3, 1) * taps.view(1, 3, 1, 1, 3))
        # output t of the stride-2 conv over ``embed`` padded by 3 is ``down`` at location t - 1
        padded = F.pad(embed, (3, 5, 3, 5))
        shifted = F.conv2d(padded, masked.reshape(9 * c, c, 3, 3).to(embed.dtype), stride=NON_LOCAL_SCALE)
        height, width = shifted.shape[-2:]
        hk, wk = hp // NON_LOCAL_SCALE, wp // NON_LOCAL_SCALE
        # the block at offset (di - 1, dj - 1) from a position is the masked conv at location key + offset:
        # one index_select picks all 16 (its backward is one scatter, not 16 full-size slice gradients)
        key_rows = torch.arange(hk, device=embed.device).view(hk, 1) * width
        key_cols = torch.arange(wk, device=embed.device).view(1, wk)
        picks = [
            (3 * OFFSET_MASK[di] + OFFSET_MASK[dj]) * height * width + di * width + dj + key_rows + key_cols
            for di in range(4)
            for dj in range(4)
        ]
        flat = shifted.reshape(b, c, 9 * height * width)
        return flat.index_select(2, torch.stack(picks).reshape(-1)).reshape(b, c * 16, hk * wk)

    def border_patches(self, embed: torch.Tensor, hp: int, wp: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row 1 (resp. column 1) of every key's 6x6 patch, (B, C*6, L): where positions on the
        first row (column) put it lies outside the canvas, which ``down`` pads with zeros;
        the composed blocks include it and the border correction takes it out again."""
        kernel = PATCH * NON_LOCAL_SCALE
        pad = (kernel - NON_LOCAL_SCALE) // 2
        padded = F.pad(embed, (pad, pad, pad, pad))
        row = padded[:, :, 1 : 1 + hp : NON_LOCAL_SCALE, :]  # patch row 1 of each key row
        top = F.unfold(row, (1, kernel), stride=(1, NON_LOCAL_SCALE))
        col = padded[:, :, :, 1 : 1 + wp : NON_LOCAL_SCALE]
        left = F.unfold(col, (kernel, 1), stride=(NON_LOCAL_SCALE, 1))
        return top, left

    def border_correction(self, top: torch.Tensor, left: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        """What the composed blocks add through canvas row -1 and column -1, (B, C, hp, wp);
        ``top`` (B, C*6, wp) and ``left`` (B, C*6, hp) are the aggregated border patches."""
        b = top.shape[0]
        c = self.down.weight.shape[0]
        kernel = PATCH * NON_LOCAL_SCALE
        # canvas row -1 over columns -1 .. 2wp-1 (fold index = column + 2), likewise column -1
        row = overlap_add(top, (1, wp), (1, kernel), (1, NON_LOCAL_SCALE))[..., 0, 1:-2]
        col = overlap_add(left, (hp, 1), (kernel, 1), (NON_LOCAL_SCALE, 1))[..., 1:-2, 0]
        weight = self.down.weight.to(top.dtype)
        row_term = F.conv1d(row, weight[:, :, 0, :], stride=NON_LOCAL_SCALE)  # (B, C, wp): output row 0
        col_term = F.conv1d(col, weight[:, :, :, 0], stride=NON_LOCAL_SCALE)  # (B, C, hp): output column 0
        correction = top.new_zeros(b, c, hp, wp)
        correction[:, :, 0, :] += row_term
        correction[:, :, :, 0] += col_term
        # the canvas cell (-1, -1) was counted by both
        correction[:, :, 0, 0] -= F.linear(row[..., 0], weight[:, :, 0, 0])
        return correction
