"""The generator computes the official CiaoSR function: every case of the official test vectors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from realciao import load_generator
from realciao.inference import normalise
from tests.conftest import shared_path

FIXTURE_SETS = {
    "edsr": ("weights.safetensors", "cases"),
    "rdn_small": ("rdn_small_weights.safetensors", "rdn_small_cases"),
    "swinir_small": ("swinir_small_weights.safetensors", "swinir_small_cases"),
}
# case names are listed here (not read from ../shared) so that the test ids exist without it
CASES = {
    "edsr": ["x1", "x2", "x2_5", "x3", "x4", "asym_1_7x2_75", "batch2_x3_3"],
    "rdn_small": ["x2_5", "x4"],
    "swinir_small": ["x3", "asym_2x3_5"],
}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def fixture_models():
    cache = {}

    def get(set_name):
        if set_name not in cache:
            weights, cases = FIXTURE_SETS[set_name]
            folder = shared_path("fixtures", "ciaosr_official")
            cache[set_name] = (load_generator(folder / weights), load_file(folder / f"{cases}.safetensors"))
        return cache[set_name]

    return get


def test_fixture_case_lists_are_complete():
    folder = shared_path("fixtures", "ciaosr_official")
    for set_name, (_, cases) in FIXTURE_SETS.items():
        listed = {k for k in json.loads((folder / f"{cases}.json").read_text()) if not k.startswith("_")}
        assert listed == set(CASES[set_name]), set_name


@pytest.mark.parametrize("set_name,case", [(s, c) for s, cases in CASES.items() for c in cases])
def test_matches_official_vectors(fixture_models, set_name, case):
    model, tensors = fixture_models(set_name)
    lr = tensors[f"{case}.lr"]
    coord, cell = tensors[f"{case}.coord"], tensors[f"{case}.cell"]
    with torch.no_grad():
        feature = model.encoder(normalise(lr))
        non_local = model.upsampler.cs_attn(feature)
        pred = model(normalise(lr), coord, cell)
    assert (feature - tensors[f"{case}.feature"]).abs().max() < TOLERANCE
    assert (non_local - tensors[f"{case}.nonlocal"]).abs().max() < TOLERANCE
    assert (pred - tensors[f"{case}.pred"]).abs().max() < TOLERANCE


def test_upscale_reproduces_official_output_image(fixture_models):
    import realciao

    model, tensors = fixture_models("edsr")
    expected = tensors["asym_1_7x2_75.output"]
    out = realciao.upscale(model, tensors["asym_1_7x2_75.lr"], size=expected.shape[-2:])
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < TOLERANCE


def test_bf16_close_to_fp32_on_official_weights(fixture_models):
    import realciao

    model, tensors = fixture_models("edsr")
    lr = tensors["x2.lr"]
    size = (lr.shape[-2] * 2, lr.shape[-1] * 2)
    fp32 = realciao.upscale(model, lr, size)
    bf16 = realciao.upscale(model, lr, size, precision="bf16")
    psnr = -10 * torch.log10((fp32 - bf16).pow(2).mean())
    assert psnr >= 50, f"bf16 vs fp32 PSNR {psnr:.1f} dB"  # the agreement the docs promise where auto picks bf16
    assert not torch.equal(fp32, bf16)  # the bf16 path really ran in lower precision
