"""Generator behaviour: registry, parameter counts, chunking, batching, precision, input errors."""

from __future__ import annotations

import pytest
import torch

import realciao
from realciao.archs import ENCODERS, generator_name
from realciao.archs.ciaosr import pixel_index
from realciao.coords import make_query_grid
from realciao.inference import normalise

# a tiny configuration of every registered generator, from the encoders themselves
TINY = {generator_name(name): {**encoder.tiny_options, "mlp_hidden": [16, 16]} for name, encoder in ENCODERS.items()}


def tiny(name: str = "edsr-baseline-ciaosr", **extra) -> realciao.archs.CiaoSR:
    torch.manual_seed(0)
    return realciao.build_generator(name, **{**TINY[name], **extra}).eval()


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "name,total",
    [("edsr-baseline-ciaosr", 2_649_030), ("rdn-ciaosr", 23_402_566), ("swinir-ciaosr", 14_667_218)],
)
def test_parameter_counts_of_the_paper_configs(name, total):
    model = realciao.build_generator(name)
    assert count(model) == total
    if name != "swinir-ciaosr":  # SwinIR's 180-wide feature gives a wider upsampler
        assert count(model.upsampler) == 1_428_614


def test_unknown_name_and_option_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator 'edsr'"):
        realciao.build_generator("edsr")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['blocks'\]"):
        realciao.build_generator("edsr-baseline-ciaosr", blocks=4)


@pytest.mark.parametrize("name", sorted(TINY))
def test_any_output_size_including_asymmetric_and_non_integer(name):
    model = tiny(name)
    lr = torch.rand(1, 3, 9, 14)
    for size in [(9, 14), (17, 31), (40, 23), (25, 35)]:
        out = realciao.upscale(model, lr, size=size)
        assert out.shape == (1, 3, *size)
        assert out.min() >= 0 and out.max() <= 1


def test_query_chunking_is_exact():
    model = tiny()
    lr = normalise(torch.rand(2, 3, 11, 13))
    coord, cell = make_query_grid(29, 37, batch=2)
    with torch.no_grad():
        model.upsampler.query_chunk = 1 << 20
        whole = model(lr, coord, cell)
        model.upsampler.query_chunk = 70
        chunked = model(lr, coord, cell)
    assert torch.allclose(whole, chunked, atol=1e-6, rtol=0)


def test_non_local_chunking_is_exact():
    model = tiny()
    feature = torch.randn(2, 8, 15, 18)
    branch = model.upsampler.cs_attn
    with torch.no_grad():
        branch.chunk_elements = 1 << 30
        whole = branch(feature)
        branch.chunk_elements = 1  # one row of positions per chunk
        chunked = branch(feature)
    assert whole.shape == feature.shape
    assert torch.allclose(whole, chunked, atol=1e-6, rtol=0)


def test_batch_items_are_independent():
    model = tiny()
    lr = torch.rand(3, 3, 10, 12)
    together = realciao.upscale(model, lr, size=(23, 27))
    for i in range(3):
        alone = realciao.upscale(model, lr[i : i + 1], size=(23, 27))
        assert torch.allclose(together[i : i + 1], alone, atol=1e-5, rtol=0)


def test_bf16_close_to_fp32():
    model = tiny()
    lr = torch.rand(1, 3, 12, 12)
    fp32 = realciao.upscale(model, lr, size=(30, 30))
    bf16 = realciao.upscale(model, lr, size=(30, 30), precision="bf16")
    psnr = -10 * torch.log10((fp32 - bf16).pow(2).mean())
    assert psnr > 40, f"{psnr:.1f} dB"


def test_without_non_local_branch():
    model = tiny(non_local=False)
    assert model.upsampler.cs_attn is None
    assert realciao.upscale(model, torch.rand(1, 3, 8, 8), size=(20, 20)).shape == (1, 3, 20, 20)


def test_training_gradients_flow_and_match_inference():
    model = tiny().train()
    lr = normalise(torch.rand(2, 3, 10, 10))
    coord, cell = make_query_grid(25, 25, batch=2)
    pred = model(lr, coord, cell)
    pred.abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.upsampler.imnet_k.linears[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(pred, model(lr, coord, cell), atol=1e-6)


def test_pixel_index_picks_grid_sample_nearest_pixel_and_flags_outside():
    h, w = 5, 7
    coord = torch.rand(1, 200, 2) * 2.4 - 1.2  # some outside [-1, 1]
    index = pixel_index(coord, h, w)
    ids = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) + 1
    expected = torch.nn.functional.grid_sample(ids, coord.flip(-1).unsqueeze(1), mode="nearest", align_corners=False)
    expected = expected.view(-1).long() - 1
    expected[expected < 0] = h * w
    assert torch.equal(index.view(-1), expected)
    assert (index == h * w).any() and (index < h * w).any()


def test_queries_outside_the_image_do_not_fail():
    model = tiny()
    lr = normalise(torch.rand(1, 3, 6, 6))
    coord = torch.tensor([[[-1.5, 0.0], [0.0, 1.2], [0.1, 0.1]]])
    cell = torch.full_like(coord, 0.1)
    with torch.no_grad():
        pred = model(lr, coord, cell)
    assert pred.shape == (1, 3, 3) and torch.isfinite(pred).all()


@pytest.mark.parametrize(
    "lr,coord,cell,message",
    [
        (torch.rand(1, 4, 8, 8), torch.rand(1, 5, 2), torch.rand(1, 5, 2), r"lr must be \(B, 3, h, w\)"),
        (torch.rand(3, 8, 8), torch.rand(1, 5, 2), torch.rand(1, 5, 2), r"lr must be \(B, 3, h, w\)"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 5, 3), torch.rand(1, 5, 2), r"coord must be \(B, Q, 2\)"),
        (torch.rand(2, 3, 8, 8), torch.rand(1, 5, 2), torch.rand(1, 5, 2), r"coord must be \(B, Q, 2\) with B = 2"),
        (torch.rand(1, 3, 8, 8), torch.rand(1, 5, 2), torch.rand(1, 4, 2), "same number of queries"),
    ],
)
def test_wrong_shapes_are_clear_errors(lr, coord, cell, message):
    with pytest.raises(ValueError, match=message):
        tiny()(lr, coord, cell)


def test_upscale_rejects_bad_arguments():
    model = tiny()
    with pytest.raises(ValueError, match="RGB tensor"):
        realciao.upscale(model, torch.rand(1, 1, 8, 8), size=(16, 16))
    with pytest.raises(ValueError, match="size must be"):
        realciao.upscale(model, torch.rand(1, 3, 8, 8), size=16)
    with pytest.raises(ValueError, match="precision"):
        realciao.upscale(model, torch.rand(1, 3, 8, 8), size=(16, 16), precision="fp8")


def test_single_pixel_rows_and_columns():
    model = tiny()
    for shape in [(1, 9), (9, 1), (1, 1), (2, 2)]:
        out = realciao.upscale(model, torch.rand(1, 3, *shape), size=(shape[0] * 3, shape[1] * 3))
        assert out.shape == (1, 3, shape[0] * 3, shape[1] * 3) and torch.isfinite(out).all()
