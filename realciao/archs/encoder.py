"""What every encoder answers for itself, so that the registry, checkpoints, tiling and
the tests need no list of encoder types of their own.

An encoder maps the normalised LR (B, 3, h, w) to a feature (B, C, h, w) at LR
resolution. Registering a subclass with ``realciao.archs.register_encoder`` makes the
generator ``<name>-ciaosr`` buildable, savable, loadable from official state dicts and
tileable; nothing else in the package changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn


class Encoder(nn.Module):
    """Base class of CiaoSR encoders.

    Subclasses set ``name`` (the registry key), ``tiny_options`` (a few-thousand-parameter
    configuration for tests and demos), ``out_channels`` (in ``__init__``), and implement
    ``receptive_radius`` and ``options_from_state_dict``.
    """

    name: ClassVar[str]
    tiny_options: ClassVar[dict[str, Any]]
    out_channels: int

    def receptive_radius(self) -> int | None:
        """LR pixels a feature can see in each direction, exactly; None when tiles of an
        image cannot reproduce the whole image (attention windows, global operations)."""
        raise NotImplementedError

    @classmethod
    def options_from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
        """This encoder's constructor options read from the keys and shapes of an official
        state dict (keys under ``encoder.``); None when the keys are not this encoder's."""
        raise NotImplementedError


def conv_receptive_radius(module: nn.Module) -> int:
    """Receptive radius of a network of stride-1 convolutions: the longest path runs through
    every conv, so it is the sum of their radii (exact for chains and dense/residual blocks)."""
    return sum(m.dilation[0] * (m.kernel_size[0] - 1) // 2 for m in module.modules() if isinstance(m, nn.Conv2d))


def count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    """Distinct values of the first group of ``pattern`` over the keys: e.g. the number of blocks."""
    regex = re.compile(pattern)
    return len({m.group(1) for key in state if (m := regex.match(key))})
