"""realciao.tiling: tiles reproduce the whole-image output, in bounded pieces, without seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realciao import tiling
from realciao.archs import build_generator
from realciao.inference import upscale
from realciao.tiling import TiledUpscaler, axis_frames, plan_frame_axis, receptive_radius, split_cores

TINY = {"channels": 8, "num_blocks": 2, "mlp_hidden": [16, 16]}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(non_local: bool = False):
    torch.manual_seed(0)
    return build_generator("edsr-baseline-ciaosr", non_local=non_local, **TINY).eval()


def lr_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth structure plus texture, float32 (h, w, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = 0.5 + 0.3 * np.sin(7 * x[..., None] + 5 * y[..., None] + np.array([0, 1, 2]))
    return np.clip(base + 0.15 * rng.standard_normal((height, width, 3)), 0, 1).astype(np.float32)


def whole(model, lr: np.ndarray, size) -> np.ndarray:
    return upscale(model, torch.from_numpy(lr).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    "lr_size,out_size",
    [
        ((37, 45), (74, 90)),  # x2
        ((37, 45), (111, 135)),  # x3: the official shift skips LR rows
        ((40, 52), (100, 130)),  # x2.5: queries exactly between two LR pixels
        ((40, 52), (68, 143)),  # asymmetric 1.7 x 2.75
    ],
)
def test_tiles_reproduce_the_whole_image_without_the_non_local_branch(lr_size, out_size):
    model = tiny()
    lr = lr_image(*lr_size)
    tiled, report = TiledUpscaler(model, tile=10)(lr, out_size)
    assert report.tiles > 9 and report.unresolved_coords == 0
    assert np.abs(tiled - whole(model, lr, out_size)).max() < 1e-5


def test_the_exactness_check_can_fail_too_small_a_margin_shows():
    model = tiny()
    lr = lr_image(37, 45)
    reference = whole(model, lr, (92, 112))
    radius = receptive_radius(model.encoder)
    short, _ = TiledUpscaler(model, tile=10, margin=radius - 2)(lr, (92, 112))
    assert np.abs(short - reference).max() > 1e-5


def test_whole_image_ties_need_the_nudged_coordinates(monkeypatch):
    """At x2.5 some queries sit exactly between LR pixels; a plain float32 mapping into the
    tile frame breaks some of those ties the other way."""
    model = tiny()
    lr = lr_image(40, 52)
    monkeypatch.setattr(tiling, "_NUDGES", np.zeros(1))
    tiled, report = TiledUpscaler(model, tile=10)(lr, (100, 130))
    assert report.unresolved_coords > 0
    assert np.abs(tiled - whole(model, lr, (100, 130))).max() > 1e-5


def test_one_tile_is_bit_identical_to_the_whole_image_function():
    model = tiny(non_local=True)
    lr = lr_image(21, 26)
    tiled, report = TiledUpscaler(model, tile=64)(lr, (50, 47))
    assert report.tiles == 1
    assert np.array_equal(tiled, whole(model, lr, (50, 47)))


def test_non_local_tiles_have_no_seams():
    """The non-local branch sees one tile: the one approximation. Its error near tile borders
    is no larger than elsewhere (a seam would concentrate it there)."""
    model = tiny(non_local=True)
    lr = lr_image(48, 48, seed=3)
    out_size = (96, 96)
    tiled, _ = TiledUpscaler(model, tile=16)(lr, out_size)
    error = np.abs(tiled - whole(model, lr, out_size)).mean(axis=(1, 2))  # per output row
    assert error.max() > 0  # really approximate, so the comparison below means something
    borders = np.zeros(out_size[0], bool)
    for edge in (32, 64):  # tile borders in output rows at x2
        borders[edge - 2 : edge + 2] = True
    assert error[borders].mean() <= 1.5 * error[~borders].mean()


def test_cores_cover_the_axis_in_balanced_pieces():
    assert split_cores(10, 4) == [(0, 3), (3, 7), (7, 10)]
    assert split_cores(5, 100) == [(0, 5)]
    for length, tile in [(1, 1), (97, 13), (4000, 96)]:
        cores = split_cores(length, tile)
        assert cores[0][0] == 0 and cores[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
        assert max(b - a for a, b in cores) <= tile


@pytest.mark.parametrize("lr,out", [(37, 111), (40, 100), (52, 143), (50, 20), (7, 7)])
def test_every_output_index_is_written_by_exactly_one_tile(lr, out):
    rows, _ = axis_frames((lr, 5), (out, 9), torch.device("cpu"))
    tiles = plan_frame_axis(rows, tile=6, margin=3)
    written = np.concatenate([np.arange(*t.out) for t in tiles])
    assert np.array_equal(written, np.arange(out))
    for t in tiles:
        assert t.encoder[0] <= t.upsampler[0] and t.upsampler[1] <= t.encoder[1]
        own = rows.decisions[:, t.out[0] : t.out[1]]
        # every LR pixel an output reads (own pixel, neighbours, their 3x3 unfold) lies in the window
        assert own.min() - 1 >= t.upsampler[0] or t.upsampler[0] == 0
        assert own.max() + 1 < t.upsampler[1] or t.upsampler[1] == lr


def test_receptive_radius_counts_the_convolutions():
    assert receptive_radius(build_generator("edsr-baseline-ciaosr").encoder) == 34
    assert receptive_radius(tiny().encoder) == 6
    swin = build_generator("swinir-ciaosr", embed_dim=12, depths=[2], num_heads=[2], window_size=4)
    assert receptive_radius(swin.encoder) is None


def test_grey_input_is_upscaled_as_replicated_rgb_into_integer_buffers():
    model = tiny()
    lr = (lr_image(12, 15) * 255).round().astype(np.uint8)
    rgb, _ = TiledUpscaler(model, tile=5)(np.repeat(lr[..., :1], 3, axis=2), (30, 31))
    grey, _ = TiledUpscaler(model, tile=5)(lr[..., 0], (30, 31))
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, grey)


def test_reduced_precision_tiles_that_overflow_are_redone_in_fp32(monkeypatch):
    model = tiny()
    lr = lr_image(12, 12)
    original = TiledUpscaler._upsample

    def overflowing(self, feature, lr_normalised, coord, cell, step, precision):
        pred = original(self, feature, lr_normalised, coord, cell, step, precision)
        return pred if precision == "fp32" else torch.full_like(pred, float("nan"))

    monkeypatch.setattr(TiledUpscaler, "_upsample", overflowing)
    out, report = TiledUpscaler(model, tile=6, precision="bf16")(lr, (24, 24))
    assert report.fp32_fallbacks == report.tiles == 4
    assert np.isfinite(out).all() and np.abs(out - whole(model, lr, (24, 24))).max() < 1e-5


def test_bf16_tiles_stay_close_and_fp16_is_refused_on_the_cpu():
    model = tiny()
    lr = lr_image(20, 20)
    bf16, _ = TiledUpscaler(model, tile=8, precision="bf16")(lr, (40, 40))
    assert np.abs(bf16 - whole(model, lr, (40, 40))).mean() < 0.02
    with pytest.raises(ValueError, match="fp16 runs only on CUDA"):
        TiledUpscaler(model, tile=8, precision="fp16")


def test_default_tile_follows_free_memory_and_the_non_local_cost(monkeypatch):
    full = build_generator("edsr-baseline-ciaosr", num_blocks=1)
    without = build_generator("edsr-baseline-ciaosr", num_blocks=1, non_local=False)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 64 << 30)
    assert tiling.default_tile(full) == 96 and tiling.default_tile(without) == 256
    monkeypatch.setattr(tiling, "available_memory", lambda device: 256 << 20)
    assert 32 <= tiling.default_tile(without) < 96
