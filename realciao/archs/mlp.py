"""The MLPs of the CiaoSR upsampler: Linear layers at even indices of ``layers``, ReLU between."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int]):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        modules: list[nn.Module] = []
        for i in range(len(dims) - 1):
            modules.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                modules.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*modules)
        self.in_dim = in_dim
        self.out_dim = out_dim

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def forward(self, x):
        return self.layers(x)
