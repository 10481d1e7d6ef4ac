"""Training rrdb-ciaosr from a peer's trunk: generator.encoder_weights, train.freeze and
train.encoder_lr (the encoder itself: tests/test_archs_rrdb.py)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import realciao
from realciao.train.config import ConfigError, load_config
from tests.test_archs_rrdb import real_esrgan_layout
from tests.test_train_loop import options_file, run_in_process

TRUNK = {"channels": 8, "num_blocks": 1, "growth": 32}  # spandrel reads every RRDBNet as growth 32


def rrdb_options(tmp_path, train=None, **generator):
    peer = tmp_path / "peer.safetensors"
    save_file(real_esrgan_layout(**TRUNK), peer)
    return options_file(
        tmp_path,
        generator={"name": "rrdb-ciaosr", "options": {**TRUNK, "mlp_hidden": [16]},
                   "encoder_weights": str(peer), **generator},
        train={"iterations": 2, "log_every": 1, **(train or {})},
    ), peer


def test_a_frozen_trunk_from_a_peer_stays_exactly_the_peers_while_the_upsampler_trains(tmp_path):
    path, peer = rrdb_options(tmp_path, train={"freeze": ["encoder"]})
    trainer = run_in_process(path)
    released = realciao.load_generator(trainer.dir / "models" / "net_g_iter_00000002.safetensors")
    peer_state = real_esrgan_layout(**TRUNK)
    for key, tensor in released.encoder.state_dict().items():
        assert torch.equal(tensor, peer_state[key]), key
    fresh = realciao.build_generator("rrdb-ciaosr", encoder_weights=peer, **TRUNK, mlp_hidden=[16])
    moved = [k for k, v in released.upsampler.state_dict().items() if not torch.equal(v, fresh.upsampler.state_dict()[k])]
    assert moved, "the upsampler did not train"
    optimised = {id(p) for group in trainer.optimizer_g.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in trainer.generator.encoder.parameters())


def test_the_encoder_gets_its_own_learning_rate_and_trains(tmp_path):
    path, _ = rrdb_options(tmp_path, train={"encoder_lr": 1e-5, "optimizer": {"lr": 2e-3}})
    trainer = run_in_process(path)
    assert [group["initial_lr"] for group in trainer.optimizer_g.param_groups] == [2e-3, 1e-5]
    released = realciao.load_generator(trainer.dir / "models" / "net_g_iter_00000002.safetensors")
    peer_state = real_esrgan_layout(**TRUNK)
    assert not torch.equal(released.encoder.conv_first.weight, peer_state["conv_first.weight"])


def test_encoder_weights_mistakes_name_the_key(tmp_path):
    path, _ = rrdb_options(tmp_path, name="edsr-baseline-ciaosr", options={"channels": 8, "num_blocks": 1})
    with pytest.raises(ConfigError, match="generator.encoder_weights.*only an RRDB encoder"):
        load_config(path)
    path, _ = rrdb_options(tmp_path, encoder_weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ConfigError, match="generator.encoder_weights"):
        load_config(path)
    path, peer = rrdb_options(tmp_path, pretrained=str(tmp_path / "peer.safetensors"))
    with pytest.raises(ConfigError, match="generator.encoder_weights.*pretrained"):
        load_config(path)
