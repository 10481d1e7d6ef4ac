"""RDN trunk (no upsampler), mmediting layout: sfe1, sfe2, rdbs.N.layers.M.conv, rdbs.N.lff, gff."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from realciao.archs.encoder import Encoder, conv_receptive_radius, count_indices


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, channels: int, growth: int, num_layers: int):
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(channels + growth * i, growth) for i in range(num_layers)])
        # local feature fusion back to the block's width
        self.lff = nn.Conv2d(channels + growth * num_layers, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.layers(x))


class RDNEncoder(Encoder):
    name = "rdn"
    tiny_options = {"channels": 8, "num_blocks": 2, "num_layers": 2, "growth": 4}

    def __init__(
        self,
        in_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 16,
        num_layers: int = 8,
        growth: int = 64,
    ):
        super().__init__()
        self.out_channels = channels
        self.sfe1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.sfe2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.rdbs = nn.ModuleList([ResidualDenseBlock(channels, growth, num_layers) for _ in range(num_blocks)])
        # global feature fusion
        self.gff = nn.Sequential(
            nn.Conv2d(channels * num_blocks, channels, 1),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.sfe1(x)
        x = self.sfe2(shallow)
        block_outputs = []
        for block in self.rdbs:
            x = block(x)
            block_outputs.append(x)
        return self.gff(torch.cat(block_outputs, dim=1)) + shallow

    def receptive_radius(self) -> int:
        return conv_receptive_radius(self)

    @classmethod
    def options_from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
        if "encoder.sfe1.weight" not in state:
            return None
        return {
            "channels": state["encoder.sfe1.weight"].shape[0],
            "num_blocks": count_indices(state, r"encoder\.rdbs\.(\d+)\."),
            "num_layers": count_indices(state, r"encoder\.rdbs\.0\.layers\.(\d+)\."),
            "growth": state["encoder.rdbs.0.layers.0.conv.weight"].shape[0],
        }
