"""Checkpoints: realciao safetensors round trip, official layouts, inferred sizes, pickle refusal."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

import realciao
from realciao.archs.swinir import relative_position_index, shifted_window_mask
from realciao.checkpoint import CheckpointError
from tests.crafted import RunsCode
from tests.test_archs import TINY, tiny

# widths unlike any default, so that only inference from shapes can rebuild them
ODD_SIZES = {
    "edsr-baseline-ciaosr": {"channels": 6, "num_blocks": 3, "mlp_hidden": [10, 12, 14]},
    "rdn-ciaosr": {"channels": 6, "num_blocks": 3, "num_layers": 2, "growth": 5, "mlp_hidden": [10]},
    "rrdb-ciaosr": {"channels": 6, "num_blocks": 2, "growth": 5, "mlp_hidden": [10]},
    "swinir-ciaosr": {
        "embed_dim": 8, "depths": [2, 1], "num_heads": [2, 4], "window_size": 4, "ffn_hidden": 12, "mlp_hidden": [10],
    },
}


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights under official CiaoSR key names, with the buffers official files carry."""
    state = {}
    for key, value in model.state_dict().items():
        state[key.split(".", 1)[1]] = value.clone()
    state["cs_attn.escape_NaN"] = torch.tensor([1e-4])
    if model.config["encoder"] == "swinir":
        window = model.config["encoder_args"]["window_size"]
        for key in list(state):
            if key.endswith("attn.qkv.weight"):
                block = key[: -len("attn.qkv.weight")]
                state[block + "attn.relative_position_index"] = relative_position_index(window)
                if int(block.split(".")[-2]) % 2 == 1:
                    state[block + "attn_mask"] = shifted_window_mask(2 * window, 2 * window, window, window // 2)
    return state


def same_function(a, b) -> bool:
    lr = torch.rand(1, 3, 9, 11)
    return torch.equal(realciao.upscale(a, lr, (20, 23)), realciao.upscale(b, lr, (20, 23)))


@pytest.mark.parametrize("name", sorted(TINY))
def test_realciao_round_trip(tmp_path, name):
    model = tiny(name)
    path = realciao.save_generator(model, tmp_path / "g.safetensors")
    loaded = realciao.load_generator(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert same_function(model, loaded)
    assert os.listdir(tmp_path) == ["g.safetensors"]  # no temporary file left behind


@pytest.mark.parametrize("name", sorted(ODD_SIZES))
def test_official_plain_state_dict_of_any_width_loads_without_config(tmp_path, name):
    torch.manual_seed(1)
    model = realciao.build_generator(name, **ODD_SIZES[name]).eval()
    save_file(official_state_dict(model), tmp_path / "official.safetensors")
    loaded = realciao.load_generator(tmp_path / "official.safetensors")
    assert loaded.config["name"] == name
    expected = dict(ODD_SIZES[name])
    assert loaded.config["mlp_hidden"] == expected.pop("mlp_hidden")
    assert loaded.config["encoder_args"] == expected
    assert same_function(model, loaded)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: {"meta": {"iter": 5}, "state_dict": {f"generator.{k}": v for k, v in s.items()}}, id="mmediting"),
        pytest.param(lambda s: {f"module.{k}": v for k, v in s.items()}, id="module-prefix"),
        pytest.param(lambda s: {"params_ema": s, "params": {}}, id="basicsr-params-ema"),
        pytest.param(lambda s: s, id="plain"),
    ],
)
def test_official_pickle_layouts_load_with_the_flag(tmp_path, wrap):
    model = tiny("swinir-ciaosr")
    path = tmp_path / "official.pth"
    torch.save(wrap(official_state_dict(model)), path)
    assert same_function(model, realciao.load_generator(path, allow_pickle=True))


def test_a_plain_pth_state_dict_loads_without_consent(tmp_path):
    """torch's restricted (weights-only) unpickler reads tensors and containers, never code."""
    model = tiny()
    path = tmp_path / "model.pth"
    torch.save(official_state_dict(model), path)
    assert same_function(model, realciao.load_generator(path))




def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "crafted.pth"
    torch.save({"state_dict": official_state_dict(tiny()), "meta": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="only full unpickling can read.*allow_pickle=True") as error:
        realciao.load_generator(path)
    assert str(path) in str(error.value)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"generator\.allow_pickle: true"):
        realciao.load_generator(path, consent="generator.allow_pickle: true")
    assert not marker.exists()


def test_name_mismatch_missing_file_and_foreign_weights_are_clear_errors(tmp_path):
    path = realciao.save_generator(tiny(), tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="holds a edsr-baseline-ciaosr generator, not 'rdn-ciaosr'"):
        realciao.load_generator(path, name="rdn-ciaosr")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        realciao.load_generator(tmp_path / "missing.safetensors")
    save_file({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no keys of a known encoder"):
        realciao.load_generator(tmp_path / "other.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="broken.safetensors: not a readable safetensors file"):
        realciao.load_generator(tmp_path / "broken.safetensors")


def test_strict_loading_rejects_extra_or_missing_weights(tmp_path):
    state = official_state_dict(tiny())
    save_file({**state, "cs_attn.extra.weight": torch.zeros(1)}, tmp_path / "extra.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected \['upsampler.cs_attn.extra.weight'\]"):
        realciao.load_generator(tmp_path / "extra.safetensors")
    save_file({**state, "imnet_q.layers.9.weight": torch.zeros(1)}, tmp_path / "deeper.safetensors")
    with pytest.raises(CheckpointError, match="deeper.safetensors: does not fit"):
        realciao.load_generator(tmp_path / "deeper.safetensors")
    del state["imnet_v.layers.0.bias"]
    save_file(state, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        realciao.load_generator(tmp_path / "missing.safetensors")


def test_official_fixture_weights_load_as_edsr_baseline():
    from tests.conftest import shared_path

    model = realciao.load_generator(shared_path("fixtures", "ciaosr_official", "weights.safetensors"))
    assert model.config["name"] == "edsr-baseline-ciaosr"
    assert model.config["encoder_args"] == {"channels": 64, "num_blocks": 16}
    assert model.config["mlp_hidden"] == [256, 256, 256, 256]


def test_a_file_that_is_not_a_checkpoint_at_all_is_one_clear_error(tmp_path):
    (tmp_path / "notes.pth").write_text("these are my notes, not weights")
    with pytest.raises(CheckpointError, match="notes.pth: not a readable PyTorch checkpoint"):
        realciao.load_generator(tmp_path / "notes.pth")
