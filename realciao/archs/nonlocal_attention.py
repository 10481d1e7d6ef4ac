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
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        hp, wp = x.shape[-2:]

        embed = self.conv_assembly(x)
        match = self.conv_match_1(x)
        reference = self.conv_match_2(F.interpolate(x, scale_factor=1.0 / s, mode="bilinear"))

        # keys: L2-normalised 3x3 patches of the downscaled reference, (B, L, C/2*9)
        keys = F.unfold(reference, PATCH, padding=PATCH // 2)
        keys = keys / keys.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)
        keys = keys.transpose(1, 2).float()
        # queries: 3x3 neighbourhoods of every padded LR position, (B, C/2*9, hp*wp)
        queries = F.unfold(match, PATCH, padding=PATCH // 2).float()
        # reconstruction patches: 6x6 windows of `embed`, stride 2, "same" zero padding
        kernel = PATCH * s
        patches = F.unfold(embed, kernel, stride=s, padding=(kernel - s) // 2)  # (B, C*36, L)
        num_keys = patches.shape[-1]

        canvas_pad = (kernel - s) // 2
        canvas = embed.new_zeros(b, c, s * hp + 2 * canvas_pad, s * wp + 2 * canvas_pad)
        rows_per_chunk = max(1, self.chunk_elements // max(1, b * wp * num_keys))
        for row0 in range(0, hp, rows_per_chunk):
            row1 = min(hp, row0 + rows_per_chunk)
            cols = slice(row0 * wp, row1 * wp)
            # matching stays in fp32: a x10 softmax over thousands of keys is sensitive to bf16 rounding
            with torch.autocast(device_type=feature.device.type, enabled=False):
                logits = torch.bmm(keys, queries[:, :, cols])  # (B, L, positions)
                weights = torch.softmax(logits * SOFTMAX_GAIN, dim=1)
            gathered = torch.bmm(patches, weights.to(patches.dtype))  # (B, C*36, positions)
            # overlap-add of the chunk's 6x6 patches: a transposed conv, stride s
            block = F.fold(gathered, (s * (row1 - row0) + 2 * canvas_pad, s * wp + 2 * canvas_pad), kernel, stride=s)
            canvas[:, :, s * row0 : s * row1 + 2 * canvas_pad] += block.to(canvas.dtype)
        canvas = canvas[:, :, canvas_pad:-canvas_pad, canvas_pad:-canvas_pad]
        return (self.down(canvas) / AGGREGATE_DIVISOR)[:, :, :h, :w]
