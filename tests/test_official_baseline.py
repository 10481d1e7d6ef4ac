"""scripts/official_ciaosr.py, the benchmarks' same-run baseline, computes the official
function: the official test vectors, and realciao's outputs and gradients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import realciao
from realciao.coords import make_query_grid
from realciao.inference import normalise
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import official_ciaosr  # noqa: E402

FIXTURE_CASES = ["x1", "x2", "x2_5", "x3", "x4", "asym_1_7x2_75", "batch2_x3_3"]
FIXTURE_QUERIES = 3000  # per case: every n-th query plus the last, to keep the per-query MLPs cheap
TOLERANCE = 1e-5
SMALL = {"channels": 16, "num_blocks": 2, "mlp_hidden": [32, 32]}


@pytest.fixture(scope="module")
def fixture():
    folder = shared_path("fixtures", "ciaosr_official")
    return realciao.load_generator(folder / "weights.safetensors"), load_file(folder / "cases.safetensors")


def sharpened(model: torch.nn.Module) -> torch.nn.Module:
    """Larger weights than the default init, so that the neighbour softmax, the gates and the
    non-local branch shape the output visibly (a x10 softmax gain of 9 would then fail)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(1.5)
        model.upsampler.cs_attn.conv_match_1[0].weight.mul_(3)
        model.upsampler.cs_attn.conv_match_2[0].weight.mul_(3)
    return model


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(1)
    return sharpened(realciao.build_generator("edsr-baseline-ciaosr", **SMALL).eval())


def spread_queries(total: int, count: int) -> torch.Tensor:
    picks = torch.arange(0, total, max(1, total // count))
    return torch.cat([picks, torch.tensor([total - 1])]).unique()


@pytest.mark.parametrize("case", FIXTURE_CASES)
def test_matches_official_vectors(fixture, case):
    model, tensors = fixture
    lr_normalised = normalise(tensors[f"{case}.lr"])
    with torch.no_grad():
        feature = model.encoder(lr_normalised)
        non_local = official_ciaosr.non_local(model.upsampler.cs_attn, feature)
    assert (non_local - tensors[f"{case}.nonlocal"]).abs().max() < TOLERANCE
    picks = spread_queries(tensors[f"{case}.coord"].shape[1], FIXTURE_QUERIES)
    coord, cell = tensors[f"{case}.coord"][:, picks], tensors[f"{case}.cell"][:, picks]
    pred = official_ciaosr.official_predict(model, lr_normalised, coord, cell, chunk=700)  # several chunks
    assert (pred - tensors[f"{case}.pred"][:, picks]).abs().max() < TOLERANCE


def test_upscale_reproduces_official_output_image(fixture):
    model, tensors = fixture
    expected = tensors["asym_1_7x2_75.output"]
    out = official_ciaosr.official_upscale(model, tensors["asym_1_7x2_75.lr"], expected.shape[-2:])
    assert out.shape == expected.shape
    assert (out - expected).abs().max() < TOLERANCE


def test_query_grid_is_the_official_one(fixture):
    _, tensors = fixture
    coord, cell = official_ciaosr.query_grid(68, 143, 1)
    assert torch.equal(coord, tensors["asym_1_7x2_75.coord"]) and torch.equal(cell, tensors["asym_1_7x2_75.cell"])


@pytest.mark.parametrize("batch,lr_hw,size", [
    (1, (12, 15), (24, 30)),  # x2
    (1, (12, 15), (30, 38)),  # x2.5
    (1, (11, 14), (33, 42)),  # x3, odd LR height: the non-local branch pads
    (1, (12, 16), (20, 44)),  # 1.7 x 2.75
    (2, (10, 13), (25, 39)),  # batch 2, x2.5 x3
])
def test_matches_realciao_on_random_inputs(small_model, batch, lr_hw, size):
    lr = torch.rand(batch, 3, *lr_hw)
    expected = realciao.upscale(small_model, lr, size)
    out = official_ciaosr.official_upscale(small_model, lr, size)
    assert (out - expected).abs().max() < TOLERANCE
    coord, cell = make_query_grid(*size, batch)
    with torch.no_grad():
        pred = official_ciaosr.official_forward(small_model, normalise(lr), coord, cell)
        assert (pred - small_model(normalise(lr), coord, cell)).abs().max() < TOLERANCE


def test_training_gradients_match_realciao():
    torch.manual_seed(2)
    model = sharpened(realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16, 16]))
    batch, gt, queries = 2, 27, 300
    lr = torch.rand(batch, 3, 10, 10) - 0.44
    coord_all, cell_all = make_query_grid(gt, gt, batch)
    picks = torch.rand(batch, gt * gt).argsort(1)[:, :queries]
    coord = torch.gather(coord_all, 1, picks.unsqueeze(-1).expand(-1, -1, 2))
    cell = cell_all[:, :queries]
    target = torch.randn(batch, queries, 3)

    def grads(forward):
        model.zero_grad(set_to_none=True)
        lr_in = lr.clone().requires_grad_(True)
        loss = torch.nn.functional.l1_loss(forward(lr_in), target) + (forward(lr_in) * target).mean()
        loss.backward()
        return [p.grad for p in model.parameters()] + [lr_in.grad]

    ours = grads(lambda x: model(x, coord, cell))
    baseline = grads(lambda x: official_ciaosr.official_forward(model, x, coord, cell))
    names = [n for n, _ in model.named_parameters()] + ["lr"]
    for name, a, b in zip(names, ours, baseline):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-9, name
