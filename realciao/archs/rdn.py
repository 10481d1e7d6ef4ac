"""RDN trunk (no upsampler), mmediting layout: sfe1, sfe2, rdbs.N.layers.M.conv, rdbs.N.lff, gff."""

from __future__ import annotations

import torch
from torch import nn


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


class RDNEncoder(nn.Module):
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
