"""The encoder contract: an encoder registered from outside the package builds, saves,
loads (realciao and official layouts) and tiles exactly, with no other file changing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import realciao
from realciao.archs import ENCODERS, GENERATORS, register_encoder
from realciao.archs.encoder import Encoder, conv_receptive_radius
from realciao.tiling import TiledUpscaler
from tests.test_checkpoint import official_state_dict


class ToyEncoder(Encoder):
    """Three convolutions: all a generator needs from an encoder."""

    name = "toy"
    tiny_options = {"channels": 6}

    def __init__(self, in_channels: int = 3, channels: int = 6, depth: int = 3):
        super().__init__()
        self.out_channels = channels
        layers = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        layers += [nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth - 1)]
        self.convs = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return x

    def receptive_radius(self) -> int:
        return conv_receptive_radius(self)

    @classmethod
    def options_from_state_dict(cls, state: Mapping[str, torch.Tensor]):
        if "encoder.convs.0.weight" not in state:
            return None
        depth = len({k.split(".")[2] for k in state if k.startswith("encoder.convs.")})
        return {"channels": state["encoder.convs.0.weight"].shape[0], "depth": depth}


@pytest.fixture
def toy():
    register_encoder(ToyEncoder)
    yield "toy-ciaosr"
    ENCODERS.pop("toy")


def lr_image(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((height, width, 3), dtype=np.float32)


def test_a_registered_encoder_builds_saves_loads_and_tiles_exactly(tmp_path, toy):
    assert toy in GENERATORS
    torch.manual_seed(0)
    model = realciao.build_generator(toy, channels=5, depth=4, mlp_hidden=[12], non_local=False).eval()
    assert model.config["encoder_args"] == {"channels": 5, "depth": 4}
    lr = torch.rand(1, 3, 11, 13)
    expected = realciao.upscale(model, lr, (25, 30))

    saved = realciao.load_generator(realciao.save_generator(model, tmp_path / "toy.safetensors"))
    assert torch.equal(realciao.upscale(saved, lr, (25, 30)), expected)
    save_file(official_state_dict(model), tmp_path / "official.safetensors")
    official = realciao.load_generator(tmp_path / "official.safetensors")
    assert official.config == model.config

    pixels = lr_image(29, 33)
    whole = realciao.upscale(model, torch.from_numpy(pixels).permute(2, 0, 1)[None], (72, 83))[0].permute(1, 2, 0)
    tiled, report = TiledUpscaler(model, tile=8)(pixels, (72, 83))
    assert report.tiles > 4
    assert np.abs(tiled - whole.numpy()).max() < 1e-5


def test_registering_a_non_encoder_or_a_taken_name_is_refused(toy):
    with pytest.raises(TypeError, match="must subclass"):
        register_encoder(nn.Conv2d)
    clash = type("OtherToy", (ToyEncoder,), {})
    with pytest.raises(ValueError, match="already registered"):
        register_encoder(clash)
