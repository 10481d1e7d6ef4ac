"""Running recipes: determinism, per-sample draws, any LR size, every shipped recipe, devices."""

from __future__ import annotations

import textwrap

import pytest
import torch

from realciao.degradations import available_recipes, degrade, load_recipe, parse_recipe, synthesize
from realciao.degradations.resize import resize


def _gt(batch: int = 4, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 8, width // 8, generator=generator)
    smooth = resize(coarse, (height, width), "bicubic").clamp(0, 1)
    return (0.8 * smooth + 0.2 * torch.rand(batch, 3, height, width, generator=generator)).clamp(0, 1)


def _recipe(text: str):
    import yaml

    return parse_recipe(yaml.safe_load(textwrap.dedent(text)))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_8_bit(images: torch.Tensor) -> bool:
    levels = images * 255
    return bool(torch.allclose(levels, levels.round(), atol=1e-3)) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", available_recipes())
def test_every_shipped_recipe_runs_on_cpu(name):
    gt = _gt(3, 64, 64)
    result = degrade(gt, name, (16, 20), _seeded(0))
    assert result.lq.shape == (3, 3, 16, 20) and result.lq.device == gt.device
    assert torch.isfinite(result.lq).all() and _is_8_bit(result.lq)
    assert len(result.parameters) == 3 and all(result.parameters)


def test_synthesize_returns_the_lr_batch():
    gt = _gt()
    lq = synthesize(gt, "realesrgan", lq_size=(16, 16), generator=_seeded(3))
    assert lq.shape == (4, 3, 16, 16) and _is_8_bit(lq)
    assert torch.equal(lq, degrade(gt, load_recipe("realesrgan"), (16, 16), _seeded(3)).lq)


def test_same_seed_same_output_other_seed_other_output():
    gt = _gt()
    first = synthesize(gt, "realesrgan", (16, 16), _seeded(11))
    again = synthesize(gt, "realesrgan", (16, 16), _seeded(11))
    other = synthesize(gt, "realesrgan", (16, 16), _seeded(12))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_no_generator_draws_fresh_randomness_without_touching_the_global_rng():
    gt = _gt(2)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first, second = synthesize(gt, "realesrgan", (16, 16)), synthesize(gt, "realesrgan", (16, 16))
    assert not torch.equal(first, second)
    assert torch.equal(state, torch.get_rng_state())


def test_samples_of_one_batch_draw_their_own_parameters():
    gt = _gt(1).expand(16, 3, 64, 64).contiguous()
    result = degrade(gt, "realesrgan", (16, 16), _seeded(5))
    by_op = [{r["op"]: r for r in sample} for sample in result.parameters]
    assert len({round(s["resize1"]["scale"], 6) for s in by_op}) > 8
    assert len({s["resize1"]["mode"] for s in by_op}) > 1  # the reference draws one mode per batch
    assert len({s["noise1"]["type"] for s in by_op}) == 2  # ... and one noise type per batch
    assert len({"blur2" in s for s in by_op}) == 2  # ... and one blur2 gate per batch
    assert len({s["jpeg1"]["quality"] for s in by_op}) == 16
    assert len({tuple(sample.flatten().tolist()[:64]) for sample in result.lq}) == 16


def test_one_of_picks_an_order_per_sample():
    result = degrade(_gt(1).expand(24, 3, 64, 64), "realesrgan", (16, 16), _seeded(2))
    orders = set()
    for sample in result.parameters:
        ops = [r["op"] for r in sample]
        tail = [op for op in ops if op in ("final_resize", "jpeg2")]
        orders.add(tuple(tail))
    assert orders == {("final_resize", "jpeg2"), ("jpeg2", "final_resize")}


def test_shuffle_orders_per_sample_and_keeps_downsample2_before_downsample3():
    result = degrade(_gt(1).expand(24, 3, 64, 64), "bsrgan", (16, 16), _seeded(1))
    orders = set()
    for sample in result.parameters:
        ops = [r["op"] for r in sample]
        down2 = min(i for i, op in enumerate(ops) if op.startswith("downsample2"))
        assert down2 < ops.index("downsample3")
        assert ops[-1] == "final_jpeg"
        orders.add(tuple(op for op in ops if op in ("blur1", "blur2", "noise", "downsample3")))
    assert len(orders) > 5


@pytest.mark.parametrize(("gt_size", "lq_size"), [((64, 64), (21, 21)), ((60, 90), (17, 40)), ((48, 48), (48, 48)),
                                                   ((40, 40), (13, 7))])
def test_any_and_asymmetric_lr_sizes(gt_size, lq_size):
    gt = _gt(2, *gt_size)
    result = degrade(gt, "realesrgan", lq_size, _seeded(0))
    assert result.lq.shape == (2, 3, *lq_size)
    expected_scale = torch.tensor([gt_size[0] / lq_size[0], gt_size[1] / lq_size[1]])
    assert result.scale.shape == (2, 2) and torch.allclose(result.scale, expected_scale.expand(2, 2))


def test_intermediate_resizes_are_relative_to_the_requested_size():
    recipe = _recipe("""
        stages:
          - resize: {name: half_of_target, relative_to: target, scale: 0.5, modes: [area]}
          - resize: {name: double, scale: 2, modes: [bilinear]}
    """)
    result = degrade(_gt(2, 64, 64), recipe, (30, 18), _seeded(0))
    sizes = [[r["out_size"] for r in sample] for sample in result.parameters]
    assert sizes == [[(15, 9), (30, 18)]] * 2


def test_sharpened_gt_is_returned_and_degraded():
    gt = _gt(2)
    result = degrade(gt, "realesrgan", (16, 16), _seeded(0), return_sharpened_gt=True)
    assert result.gt_sharpened.shape == gt.shape
    assert (result.gt_sharpened - gt).abs().max() > 1e-3  # USM changed something
    assert degrade(gt, "realesrgan", (16, 16), _seeded(0)).gt_sharpened is None
    with pytest.raises(ValueError, match="no gt_sharpening"):
        degrade(gt, "bsrgan", (16, 16), _seeded(0), return_sharpened_gt=True)


def test_a_recipe_without_resize_is_fitted_to_the_lr_size():
    recipe = _recipe("""
        stages:
          - jpeg: {quality: 90}
    """)
    result = degrade(_gt(2, 32, 32), recipe, (8, 8), _seeded(0))
    assert result.lq.shape == (2, 3, 8, 8)
    assert result.parameters[0][-1]["op"] == "fit_to_lq_size"


def test_gated_ops_skip_exactly_the_samples_that_drew_no():
    recipe = _recipe("""
        stages:
          - noise:
              p: 0.5
              types: [{type: gaussian, p: 1, sigma: 20}]
    """)
    gt = _gt(1, 32, 32).expand(32, 3, 32, 32)
    result = degrade(gt, recipe, (32, 32), _seeded(4))
    noisy = [bool(sample) for sample in result.parameters]
    assert 0 < sum(noisy) < 32
    clean = (gt * 255).round() / 255
    for index, was_noised in enumerate(noisy):
        assert torch.equal(result.lq[index], clean[index]) != was_noised


def test_drawn_parameters_are_in_their_ranges():
    result = degrade(_gt(1).expand(32, 3, 64, 64), "realesrgan", (16, 16), _seeded(9))
    for sample in result.parameters:
        by_op = {r["op"]: r for r in sample}
        blur1 = by_op["blur1"]
        assert blur1["size"] in range(7, 22, 2)
        if blur1["family"] != "sinc":
            sigmas = blur1["sigma"] if isinstance(blur1["sigma"], tuple) else (blur1["sigma"],)
            assert all(0.2 <= s <= 3 for s in sigmas)
        assert 30 <= by_op["jpeg1"]["quality"] <= 95
        assert 0.15 <= by_op["resize1"]["scale"] <= 1.5


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="float"):
        synthesize(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "realesrgan", (4, 4))
    with pytest.raises(ValueError, match="lq_size"):
        synthesize(_gt(1), "realesrgan", (0, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_either_generator():
    gt = _gt(4).cuda()
    on_cuda = synthesize(gt, "realesrgan", (16, 16), torch.Generator(device="cuda").manual_seed(0))
    from_cpu = synthesize(gt, "realesrgan", (16, 16), _seeded(0))
    assert on_cuda.is_cuda and from_cpu.is_cuda and _is_8_bit(on_cuda)
    assert torch.equal(on_cuda, synthesize(gt, "realesrgan", (16, 16), torch.Generator(device="cuda").manual_seed(0)))


def test_an_op_object_used_twice_draws_twice():
    from realciao.degradations.sampling import Uniform
    from realciao.degradations.specs import JpegOp, Recipe

    jpeg = JpegOp(name="jpeg", quality=Uniform(30, 95))
    result = degrade(_gt(2, 32, 32), Recipe(name="twice", stages=(jpeg, jpeg)), (32, 32), _seeded(0))
    first, second = result.parameters[0]
    assert first["op"] == second["op"] == "jpeg" and first["quality"] != second["quality"]


def test_the_engine_does_not_import_basicsr():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, realciao.degradations as d; d.load_recipe('realesrgan'); print('basicsr' in sys.modules)"
    repository = Path(__file__).resolve().parents[1]
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=repository).stdout
    assert output.strip() == "False"
