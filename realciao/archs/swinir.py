"""SwinIR trunk (classical layout, no upsampler) as CiaoSR's encoder.

Key names follow the SwinIR release so official CiaoSR checkpoints load. The LR is
reflect-padded to a multiple of the window and the feature cropped back, so the
encoder accepts any size. ``attn_mask`` and ``relative_position_index`` are derived
from the window and the input size, so they are not stored in the state dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from realciao.archs.encoder import Encoder, count_indices


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/window * W/window, window*window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int, device=None) -> torch.Tensor:
    """Additive mask (nW, N, N): -100 between tokens that the cyclic shift brought together."""
    region = torch.zeros(h, w, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[rows, cols] = label
            label += 1
    windows = window_partition(region.view(1, h, w, 1), window).squeeze(-1)
    different = windows.unsqueeze(1) != windows.unsqueeze(2)
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # explicit softmax attention in the reference's order: q is scaled before the product,
        # which keeps the features within ~1e-7 of official checkpoints' (SDPA differs by ~1e-6)
        attn = (q * (c // self.num_heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0).to(attn.dtype)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(b_ // num_windows, num_windows, self.num_heads, n, n) + mask.to(attn.dtype)[None, :, None]
            attn = attn.view(b_, self.num_heads, n, n)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b_, n, c))


class SwinMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_hidden: int):
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMLP(dim, mlp_hidden)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        mask = None
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
            mask = shifted_window_mask(h, w, self.window, self.shift, device=x.device)
        y = self.attn(window_partition(y, self.window), mask)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_hidden: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_hidden) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class ResidualSwinGroup(nn.Module):
    """RSTB with the '1conv' residual connection."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_hidden: int):
        super().__init__()
        self.residual_group = SwinStage(dim, depth, num_heads, window, mlp_hidden)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).reshape(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class PatchEmbedNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


class SwinIREncoder(Encoder):
    name = "swinir"
    tiny_options = {"embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4}

    def __init__(
        self,
        in_channels: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        ffn_hidden: int | None = None,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} must have the same length")
        self.out_channels = embed_dim
        self.window_size = window_size
        hidden = ffn_hidden if ffn_hidden is not None else int(embed_dim * mlp_ratio)
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, padding=1)
        self.patch_embed = PatchEmbedNorm(embed_dim)
        self.layers = nn.ModuleList(
            [ResidualSwinGroup(embed_dim, d, h, window_size, hidden) for d, h in zip(depths, num_heads)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.window_size, (-w) % self.window_size
        tracing = torch.jit.is_tracing()  # a traced (ONNX) graph serves every size: it always pads, by reflection
        if pad_h or pad_w or tracing:
            # reflect needs the pad to be smaller than the side; tiny inputs fall back to replicate
            mode = "reflect" if tracing or (pad_h < h and pad_w < w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        size = (x.shape[-2], x.shape[-1])
        shallow = self.conv_first(x)
        tokens = self.patch_embed(shallow)
        for layer in self.layers:
            tokens = layer(tokens, size)
        deep = self.norm(tokens).transpose(1, 2).reshape(shallow.shape)
        return (self.conv_after_body(deep) + shallow)[:, :, :h, :w]

    def receptive_radius(self) -> None:
        return None  # windows depend on where a tile starts: tiles are approximate

    @classmethod
    def options_from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
        if "encoder.patch_embed.norm.weight" not in state:
            return None
        stages = count_indices(state, r"encoder\.layers\.(\d+)\.")
        block = "encoder.layers.{}.residual_group.blocks.0."
        table = state[block.format(0) + "attn.relative_position_bias_table"].shape
        return {
            "embed_dim": state["encoder.conv_first.weight"].shape[0],
            "depths": [count_indices(state, rf"encoder\.layers\.{i}\.residual_group\.blocks\.(\d+)\.")
                       for i in range(stages)],
            "num_heads": [state[block.format(i) + "attn.relative_position_bias_table"].shape[1] for i in range(stages)],
            "window_size": (int(round(math.sqrt(table[0]))) + 1) // 2,
            "ffn_hidden": state[block.format(0) + "mlp.fc1.weight"].shape[0],
        }
