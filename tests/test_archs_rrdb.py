"""rrdb-ciaosr: CiaoSR on the RRDBNet trunk, started from ESRGAN-family weights.

Shapes, checkpoints, tiling and export come from the encoder registry's parametrised tests
(test_archs, test_checkpoint, test_export); here: the transfer of a peer's trunk, exact to
the tensor, and the features against spandrel's own RRDBNet on a real photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import realciao
from realciao.archs.ciaosr import RGB_MEAN
from realciao.archs.rrdb import RRDBEncoder
from realciao.errors import RealciaoError

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_ESRGAN = SHARED / "weights" / "RealESRGAN_x4plus.safetensors"
COMPACT = SHARED / "weights" / "realesr-animevideov3.safetensors"
PHOTO = SHARED / "data" / "RealSRSet" / "Lincoln.png"
needs_shared = pytest.mark.skipif(not REAL_ESRGAN.is_file(), reason=f"needs the peer weights in {REAL_ESRGAN.parent}")

SMALL = {"channels": 8, "num_blocks": 2, "growth": 32}  # spandrel reads every RRDBNet as growth 32


def real_esrgan_layout(channels: int, num_blocks: int, growth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random RRDBNet x4 in Real-ESRGAN's released key layout, trunk and upsampler."""
    generator = torch.Generator().manual_seed(seed)

    def conv(key: str, out: int, inp: int) -> dict[str, torch.Tensor]:
        # trained-like magnitudes: unit-variance weights would overflow through the dense blocks
        return {f"{key}.weight": torch.randn(out, inp, 3, 3, generator=generator) * 0.02,
                f"{key}.bias": torch.randn(out, generator=generator) * 0.02}

    state = conv("conv_first", channels, 3)
    for block in range(num_blocks):
        for dense in (1, 2, 3):
            for index in range(1, 6):
                out = channels if index == 5 else growth
                state |= conv(f"body.{block}.rdb{dense}.conv{index}", out, channels + (index - 1) * growth)
    state |= conv("conv_body", channels, channels)
    for key in ("conv_up1", "conv_up2", "conv_hr"):
        state |= conv(key, channels, channels)
    return state | conv("conv_last", 3, channels)


def test_paper_width_rrdb_trunk_has_real_esrgans_trunk_size():
    model = realciao.build_generator("rrdb-ciaosr")
    # RRDBNet x4 has 16,697,987 parameters, of which its upsampler (3 convs 64->64, 1 conv 64->3) 112,515
    assert sum(p.numel() for p in model.encoder.parameters()) == 16_697_987 - 112_515
    assert model.encoder.receptive_radius() == 2 + 23 * 3 * 5


def test_every_trunk_tensor_of_a_real_esrgan_layout_file_is_carried_over_exactly(tmp_path):
    state = real_esrgan_layout(**SMALL)
    save_file(state, tmp_path / "peer.safetensors")
    model = realciao.build_generator("rrdb-ciaosr", encoder_weights=tmp_path / "peer.safetensors", **SMALL)
    encoder_state = model.encoder.state_dict()
    trunk_keys = [k for k in state if not k.startswith(("conv_up", "conv_hr", "conv_last"))]
    assert sorted(encoder_state) == sorted(trunk_keys)
    for key in trunk_keys:
        assert torch.equal(encoder_state[key], state[key]), key
    assert "encoder_weights" not in str(model.config)  # where training starts, not the architecture


def test_the_input_convention_is_the_peers_rgb_in_zero_to_one():
    encoder = RRDBEncoder(**SMALL).eval()
    image = torch.rand(1, 3, 9, 7)
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        feature = encoder(image - mean)
        direct = encoder.conv_first(image)
        expected = direct + encoder.conv_body(encoder.body(direct))
    torch.testing.assert_close(feature, expected, rtol=0, atol=1e-6)
    assert "input_mean" not in encoder.state_dict()  # a constant of the convention, never saved


@needs_shared
def test_features_equal_spandrels_real_esrgan_trunk_on_a_real_photo():
    from spandrel import ModelLoader

    from realciao.imageio import read_image

    model = realciao.build_generator("rrdb-ciaosr", encoder_weights=REAL_ESRGAN).eval()
    peer = ModelLoader("cpu").load_from_file(REAL_ESRGAN).model.eval()
    pixels = read_image(PHOTO).pixels[40:64, 60:92]  # 24x32: the whole 23-block trunk twice stays a few seconds
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        ours = model.encoder(image - torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        first = peer.model[0](image)
        theirs = peer.model[1](first)  # the shortcut block: first conv + conv_body(RRDBs(first))
    assert ours.shape == theirs.shape == (1, 64, 24, 32)
    assert (ours - theirs).abs().max().item() < 1e-4


@needs_shared
def test_a_compact_model_is_not_an_rrdb_trunk():
    with pytest.raises(RealciaoError, match="not as an RRDBNet"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=COMPACT, **SMALL)


def test_bad_encoder_weights_are_one_line_naming_the_file_or_key(tmp_path):
    missing = tmp_path / "nothing.safetensors"
    with pytest.raises(RealciaoError, match="nothing.safetensors: no such file"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=missing, **SMALL)
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(RealciaoError, match="junk.safetensors"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=tmp_path / "junk.safetensors", **SMALL)

    save_file(real_esrgan_layout(**SMALL), tmp_path / "peer.safetensors")
    with pytest.raises(RealciaoError, match=r"body\.2\.rdb1\.conv1\.bias missing from the checkpoint"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=tmp_path / "peer.safetensors",
                                 **{**SMALL, "num_blocks": 3})
    with pytest.raises(RealciaoError, match=r"conv_first\.weight has shape \(8, 3, 3, 3\), the encoder's is \(6, 3, 3, 3\)"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=tmp_path / "peer.safetensors",
                                 **{**SMALL, "channels": 6})
    with pytest.raises(RealciaoError, match="only rrdb-ciaosr"):
        realciao.build_generator("edsr-baseline-ciaosr", encoder_weights=tmp_path / "peer.safetensors")


def test_an_x2_rrdbnet_with_pixel_unshuffled_input_is_refused(tmp_path):
    state = real_esrgan_layout(**SMALL)
    state["conv_first.weight"] = torch.randn(8, 12, 3, 3)  # RRDBNet x2 sees 2x2-unshuffled RGB
    save_file(state, tmp_path / "x2.safetensors")
    with pytest.raises(RealciaoError, match="pixel-unshuffled"):
        realciao.build_generator("rrdb-ciaosr", encoder_weights=tmp_path / "x2.safetensors", **SMALL)
