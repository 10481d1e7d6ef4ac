"""The hidden camera of ``realciao.fitting.known`` and the end-to-end check of a fitted recipe
(``scripts/bench_fit_recipe.py endtoend``), in miniature: a few images and iterations and a
tiny fit budget, so the figures it prints say nothing yet; the full run does (its defaults)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realciao.fitting.known import CAMERA_RANGES, camera_hr, camera_lr, write_camera_photos
from realciao.fitting.measure import jpeg_quality_from_tables
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]


def hr_image(height: int = 130, width: int = 98, seed: int = 0) -> np.ndarray:
    """A smooth RGB image with edges (uint8), sides not multiples of 4."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(6 * x + 3 * y), np.cos(5 * y), (x > 0.4) * 0.8], -1) * 0.4 + 0.5
    image += rng.uniform(-0.05, 0.05, (1, 1, 3))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def test_the_camera_gives_the_same_photo_for_the_same_seed_and_another_for_another():
    hr = hr_image()
    first, params = camera_lr(hr, 3)
    again, params_again = camera_lr(hr, 3)
    other, other_params = camera_lr(hr, 4)
    assert np.array_equal(first, again) and params == params_again
    assert not np.array_equal(first, other) and params != other_params


def test_the_camera_photo_is_a_quarter_of_the_hr_it_pairs_with():
    hr = hr_image(130, 98)
    lr, params = camera_lr(hr, 0)
    assert lr.dtype == np.uint8 and lr.shape == (32, 24, 3)
    assert camera_hr(hr).shape == (128, 96, 3)  # cropped to multiples of 4: the pair's ground truth
    for name, (low, high) in CAMERA_RANGES.items():
        assert low <= params[name] <= high, name
    assert camera_lr(hr[..., 0], 0)[0].shape == (32, 24, 3)  # grey in, RGB out


def test_written_photos_are_jpegs_whose_tables_tell_their_quality(tmp_path):
    images = [(f"img{i}", hr_image(seed=i)) for i in range(4)]
    written = write_camera_photos(tmp_path / "photos", images, seed=7)
    assert [name for name, _, _ in written] == [f"img{i}.jpg" for i in range(4)]
    for name, quality, params in written:
        assert CAMERA_RANGES["jpeg_quality"][0] <= quality <= CAMERA_RANGES["jpeg_quality"][1]
        assert params["jpeg_quality"] == quality
        with Image.open(tmp_path / "photos" / name) as file:
            assert file.format == "JPEG" and file.size == (24, 32)
            assert jpeg_quality_from_tables(file.quantization) == quality
    assert written == write_camera_photos(tmp_path / "again", images, seed=7)  # deterministic per seed
    assert (tmp_path / "photos" / "img0.jpg").read_bytes() == (tmp_path / "again" / "img0.jpg").read_bytes()
    assert len({quality for _, quality, _ in write_camera_photos(tmp_path / "more", images * 5, seed=7)}) > 1


def test_written_photos_read_image_files(tmp_path):
    path = tmp_path / "hr.png"
    Image.fromarray(hr_image()).save(path)
    (name, quality, _), = write_camera_photos(tmp_path / "photos", [path], seed=0)
    assert name == "hr.jpg"
    with Image.open(tmp_path / "photos" / name) as file:
        assert file.size == (24, 32) and jpeg_quality_from_tables(file.quantization) == quality


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_fit_recipe", ROOT / "scripts" / "bench_fit_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_endtoend_check_runs_small_and_prints_both_figures(tmp_path, capsys):
    pytest.importorskip("optuna")
    shared_path("data", "B100", "HR")
    shared_path("data", "train_hr")
    bench = load_bench()
    bench.main([
        "endtoend", "--base", "auto", "--endtoend-images", "2", "--budget", "1", "--fit-samples", "8",
        "--start-iterations", "3", "--finetune-iterations", "3",
        "--hr", str(shared_path("data", "train_hr", "BSDS200")),
        "--work", str(tmp_path / "work"), "--json", str(tmp_path / "endtoend.json"),
    ])
    out = capsys.readouterr().out
    print(out)  # the figures, shown with pytest -s
    figures = re.search(r"fitted - base: ([+-]\d+\.\d\d) dB Y-PSNR, ([+-]\d\.\d{4}) SSIM", out)
    assert figures, out
    work = tmp_path / "work"
    header = (work / "fitted.yml").read_text()
    base_name = re.search(r"from base recipe '(\w+)'", header)[1]  # --base auto: the closest shipped recipe
    assert "Base chosen as the shipped recipe closest to the photos" in header
    for label in ("bicubic", "start (bicubic-trained)", f"fine-tuned on {base_name} (base)",
                  "fine-tuned on the fitted recipe"):
        assert re.search(rf"^  {re.escape(label)} +\d+\.\d\d  0\.\d{{4}}$", out, re.M), label
    assert re.search(r"^wall time: photos \d+ s, fit \d+ s, .*total \d+ s", out, re.M)
    assert len(list((work / "photos").glob("*.jpg"))) == 2
    assert "fitted_scale: 4" in (work / "fitted.yml").read_text()
    fitted_options = json.loads((work / "experiments" / "finetune_fitted" / "options.json").read_text())
    base_options = json.loads((work / "experiments" / "finetune_base" / "options.json").read_text())
    # both arms: the recipe's degradations, trained towards the plain HR (no GT sharpening)
    assert fitted_options["data"]["recipe"] == str(work / "fitted_plain_gt.yml")
    assert base_options["data"]["recipe"] == str(work / "base_plain_gt.yml")
    from realciao.degradations import load_recipe

    for arm, source in (("fitted", load_recipe(work / "fitted.yml")), ("base", load_recipe(base_name))):
        plain = load_recipe(work / f"{arm}_plain_gt.yml")
        assert plain.gt_sharpening is None and plain.stages == source.stages
    results = json.loads((tmp_path / "endtoend.json").read_text())
    rows = results["tables"][0]["rows"]
    assert rows[-1] == {"model": "fitted - base", "Y-PSNR (dB)": figures[1], "SSIM": figures[2]}
