"""RRDBNet trunk (no upsampler): the encoder of ESRGAN, Real-ESRGAN, BSRGAN and RealSR.

Key names follow Real-ESRGAN's RRDBNet (conv_first, body.N.rdbJ.convK, conv_body), so a
trunk from any ESRGAN-family checkpoint is carried over tensor for tensor by
``load_esrgan_trunk``. The peers were trained on RGB in [0, 1]; CiaoSR feeds its encoder the
LR minus the DIV2K mean, so the encoder adds the mean back before its first conv and its
features equal the peer's trunk features on the same image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from realciao.archs.ciaosr import RGB_MEAN
from realciao.archs.encoder import Encoder, conv_receptive_radius, count_indices
from realciao.errors import RealciaoError

RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling inside and around each dense block
DENSE_BLOCKS = ("rdb1", "rdb2", "rdb3")
CONVS_PER_DENSE_BLOCK = 5


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing every earlier output; the last one back to the block's width."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        for index in range(1, CONVS_PER_DENSE_BLOCK + 1):
            out = channels if index == CONVS_PER_DENSE_BLOCK else growth
            setattr(self, f"conv{index}", nn.Conv2d(channels + (index - 1) * growth, out, 3, padding=1))
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, CONVS_PER_DENSE_BLOCK):
            features.append(self.lrelu(getattr(self, f"conv{index}")(torch.cat(features, dim=1))))
        return x + RESIDUAL_SCALE * getattr(self, f"conv{CONVS_PER_DENSE_BLOCK}")(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside one more scaled residual."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBEncoder(Encoder):
    """conv3x3 -> N RRDBs -> conv3x3, with the trunk's residual from the first conv."""

    name = "rrdb"
    tiny_options = {"channels": 8, "num_blocks": 1, "growth": 4}

    def __init__(self, in_channels: int = 3, channels: int = 64, num_blocks: int = 23, growth: int = 32):
        super().__init__()
        self.out_channels = channels
        self.conv_first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(channels, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        # not in the state dict: a constant of the input convention, not a learned tensor
        self.register_buffer("input_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.conv_first(x + self.input_mean.to(x.dtype))
        return feature + self.conv_body(self.body(feature))

    def receptive_radius(self) -> int:
        return conv_receptive_radius(self)  # 347 with 23 blocks: every conv of every dense block is on one path

    @classmethod
    def options_from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
        if "encoder.body.0.rdb1.conv1.weight" not in state:
            return None
        return {
            "channels": state["encoder.conv_first.weight"].shape[0],
            "num_blocks": count_indices(state, r"encoder\.body\.(\d+)\."),
            "growth": state["encoder.body.0.rdb1.conv1.weight"].shape[0],
        }


# spandrel hands every ESRGAN-family checkpoint over in one layout (old ESRGAN keys), whatever
# layout the file used: model.0 = conv_first, model.1.sub.N = RRDB N (RDBj.convK.0 = the conv),
# model.1.sub.<num_blocks> = conv_body; model.3 onwards is the upsampler, which CiaoSR replaces.
_SPANDREL_BLOCK = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_SPANDREL_PLAIN = re.compile(r"model\.(0|1\.sub\.\d+)\.(weight|bias)$")


def trunk_from_spandrel_rrdbnet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trunk tensors of spandrel's RRDBNet state dict under this encoder's keys."""
    num_blocks = count_indices(state, r"model\.1\.sub\.(\d+)\.RDB")
    trunk: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if block := _SPANDREL_BLOCK.match(key):
            index, dense, conv, kind = block.groups()
            trunk[f"body.{index}.rdb{dense}.conv{conv}.{kind}"] = tensor
        elif plain := _SPANDREL_PLAIN.match(key):
            where, kind = plain.groups()
            if where == "0":
                trunk[f"conv_first.{kind}"] = tensor
            elif where == f"1.sub.{num_blocks}":
                trunk[f"conv_body.{kind}"] = tensor
    return trunk


def load_trunk(encoder: RRDBEncoder, trunk: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy every trunk tensor into ``encoder`` exactly; any missing, extra or misshapen key is
    one error naming it and ``source``."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(trunk))
    extra = sorted(set(trunk) - set(own))
    if missing or extra:
        key, what = (missing[0], "missing from the checkpoint") if missing else (extra[0], "not in the encoder")
        raise RealciaoError(f"{source}: trunk tensor {key} {what} ({len(missing)} missing, {len(extra)} extra; "
                         f"the encoder has num_blocks={len(encoder.body)}, channels={encoder.out_channels})")
    for key, tensor in trunk.items():
        if tensor.shape != own[key].shape:
            raise RealciaoError(f"{source}: trunk tensor {key} has shape {tuple(tensor.shape)}, the encoder's is "
                             f"{tuple(own[key].shape)} (set the encoder's channels/growth to the checkpoint's)")
    encoder.load_state_dict({key: tensor.to(own[key].dtype) for key, tensor in trunk.items()})


def load_esrgan_trunk(encoder: RRDBEncoder, path) -> None:
    """Initialise ``encoder`` from the trunk of an ESRGAN-family checkpoint (Real-ESRGAN, BSRGAN,
    RealSR, ESRGAN: any file spandrel reads as RRDBNet); its upsampling convs are ignored."""
    from realciao.peers import PeerError, read_peer  # spandrel reads the file safely and knows every layout

    try:
        descriptor = read_peer(path)
    except PeerError as error:
        raise RealciaoError(f"encoder_weights: {error}") from None
    model = descriptor.model
    if type(model).__name__ != "RRDBNet":
        raise RealciaoError(f"{path}: spandrel reads it as {descriptor.architecture.name}, not as an RRDBNet "
                            f"(ESRGAN-family) checkpoint")
    if getattr(model, "shuffle_factor", None):
        raise RealciaoError(f"{path}: an RRDBNet x{descriptor.scale} that takes pixel-unshuffled input, so its "
                            f"trunk never saw RGB pixels; use an x4 RRDBNet checkpoint")
    load_trunk(encoder, trunk_from_spandrel_rrdbnet(model.state_dict()), str(path))
