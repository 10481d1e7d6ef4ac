"""realciao-fit-recipe: the command, its outputs and its bad inputs (as realciao-eval's)."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from realciao.cli import fit_recipe
from realciao.degradations import load_recipe
from realciao.train.config import load_config

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("optuna")

QUICK_BASE = """\
name: quick
stages:
  - resize: {relative_to: target}
  - noise:
      types: [{type: gaussian, p: 1, sigma: [1, 20]}]
  - jpeg: {p: 0.8, quality: [40, 95]}
"""


def photos(folder, kind="png", count=3):
    folder.mkdir(parents=True, exist_ok=True)
    image = skimage_data.astronaut()
    for index in range(count):
        crop = image[40 * index : 40 * index + 80, 100:180]
        Image.fromarray(crop).save(folder / f"photo{index}.{kind}", **({"quality": 80} if kind == "jpg" else {}))
    return folder


def run(tmp_path, *args, base=True, force=True):
    """A 3-candidate fit: too short to beat the base, so it is written only with --force."""
    if base:
        (tmp_path / "quick.yml").write_text(QUICK_BASE)
        args = (*args, "--base", str(tmp_path / "quick.yml"))
    return fit_recipe.main([*args, "--budget", "3", "--no-progress", *(["--force"] if force else [])])


def test_a_folder_of_pngs_gives_a_loadable_recipe_and_an_offline_report(tmp_path, capsys, one_thread):
    folder = photos(tmp_path / "pngs")
    (folder / "readme.txt").write_text("not a photo")
    out = tmp_path / "degradations" / "my_photos.yml"
    assert run(tmp_path, "-i", str(folder), "-o", str(out)) == 0
    captured = capsys.readouterr()
    assert "fitted quick to 3 photos" in captured.out and "readme.txt" in captured.err
    recipe = load_recipe(out)
    assert recipe.name == "my_photos"
    text = out.read_text()
    assert "jpeg_quality left out of the distance" in text  # PNGs: JPEG strength from blockiness
    report = out.with_name("my_photos_report")
    page = (report / "index.html").read_text()
    for png in ["grid.png", "history.png", "hist_noise_sigma.png", "hist_jpeg_blockiness.png"]:
        assert (report / png).is_file() and png in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<script" not in page
    # fine-tuning takes the fitted recipe as is
    config = load_config("options/finetune_custom_degradation.yml", [f"data.recipe={out}"], check_files=False)
    assert config.data.recipe == str(out)


def test_jpeg_photos_are_fitted_with_their_quality(tmp_path, one_thread):
    folder = photos(tmp_path / "jpgs", "jpg")
    out = tmp_path / "jpg.yml"
    assert run(tmp_path, "-i", str(folder), "-o", str(out), "--report", str(tmp_path / "r")) == 0
    assert re.search(r"jpeg_quality: median 80, range 80 to 80", out.read_text())
    assert (tmp_path / "r" / "hist_jpeg_quality.png").is_file()


@pytest.mark.parametrize("setup,message", [
    (lambda folder: None, "holds no images"),
    (lambda folder: (folder / "notes.txt").write_text("x"), "holds no images"),
    (lambda folder: (folder / "broken.jpg").write_bytes(b"not a jpeg"), "no photo could be read"),
])
def test_nothing_to_measure_is_one_line_and_exit_2(tmp_path, capsys, setup, message):
    folder = tmp_path / "photos"
    folder.mkdir()
    setup(folder)
    assert run(tmp_path, "-i", str(folder), "-o", str(tmp_path / "x.yml")) == 2
    err = capsys.readouterr().err
    assert "realciao-fit-recipe: error: " in err and message in err and "Traceback" not in err
    assert not (tmp_path / "x.yml").exists()


def test_an_unreadable_file_is_named_and_the_others_are_used(tmp_path, capsys, one_thread):
    folder = photos(tmp_path / "mixed", count=2)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    assert run(tmp_path, "-i", str(folder), "-o", str(tmp_path / "x.yml")) == 0
    assert "broken.png" in capsys.readouterr().err
    assert "skipped" in (tmp_path / "x_report" / "index.html").read_text()


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    folder = photos(tmp_path / "p", count=1)
    existing = tmp_path / "exists.yml"
    existing.write_text("name: x\n")
    for args, message in [
        (["-i", str(folder), "-o", str(existing)], "exists; pass --overwrite"),
        (["-i", str(folder), "-o", str(tmp_path / "x.txt")], "must end in .yml"),
        (["-i", str(folder), "-o", str(tmp_path / "x.yml"), "--budget", "0"], "--budget must be at least 1"),
        (["-i", str(folder), "-o", str(tmp_path / "x.yml"), "--scale", "0.5"], "--scale must be at least 1"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            fit_recipe.main([*args, "--no-progress"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert run(tmp_path, "-i", str(folder), "-o", str(tmp_path / "y.yml"), "--base", "no_such_recipe",
               base=False) == 2
    assert "recipe file not found" in capsys.readouterr().err
    assert run(tmp_path, "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "y.yml")) == 2
    assert "no such photo file or folder" in capsys.readouterr().err


def test_an_output_under_a_file_is_a_usage_error_before_any_work(tmp_path, capsys):
    folder = photos(tmp_path / "p", count=1)
    (tmp_path / "outfile").write_text("a file, not a folder")
    for args, message in [
        (["-o", str(tmp_path / "outfile" / "x.yml")], "outfile is a file, so no folder can be made under it"),
        (["-o", str(tmp_path / "x.yml"), "--report", str(tmp_path / "outfile")], "outfile: is a file, not a folder"),
    ]:
        assert fit_recipe.main(["-i", str(folder), *args, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err  # one line, before any work
    assert not (tmp_path / "x.yml").exists()
    (tmp_path / "x_report").write_text("where the default report folder would go")
    with pytest.raises(SystemExit) as exit_info:
        fit_recipe.main(["-i", str(folder), "-o", str(tmp_path / "x.yml"), "--no-progress"])
    assert exit_info.value.code == 2 and "x_report (the default): is a file, not a folder" in capsys.readouterr().err


def test_a_bad_output_is_refused_before_torch_loads(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "outfile").write_text("a file")
    probe = ("import sys, runpy; sys.argv = ['realciao-fit-recipe', '-i', 'photos', '-o', 'outfile/x.yml'];\n"
             "try:\n    runpy.run_module('realciao.cli.fit_recipe', run_name='__main__')\n"
             "finally:\n    print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(root), "PATH": ""})
    assert result.returncode == 2 and result.stdout.strip() == "False"
    assert result.stderr.strip() == ("realciao-fit-recipe: error: -o outfile/x.yml: outfile is a file, so no folder "
                                     "can be made under it")


def test_a_fit_no_closer_than_its_base_writes_nothing_unless_forced(tmp_path, capsys, one_thread):
    folder = photos(tmp_path / "pngs")
    out = tmp_path / "fit.yml"
    assert run(tmp_path, "-i", str(folder), "-o", str(out), force=False) == 1
    err = capsys.readouterr().err
    distances = re.search(r"no closer to the photos than quick \(distance ([\d.]+) -> ([\d.]+)\); nothing written", err)
    assert distances and float(distances[2]) >= float(distances[1]), err
    assert "--force" in err and not out.exists() and not out.with_name("fit_report").exists()
    assert run(tmp_path, "-i", str(folder), "-o", str(out)) == 0  # the same fit, forced
    assert out.is_file() and out.with_name("fit_report").is_dir()


def test_the_recipe_records_its_scale_and_every_evaluation_is_counted(tmp_path, capsys, one_thread):
    from realciao.fitting.fit import planned_evaluations

    folder = photos(tmp_path / "pngs")
    out = tmp_path / "x2.yml"
    assert run(tmp_path, "-i", str(folder), "-o", str(out), "--scale", "2") == 0
    assert "for x2:" in capsys.readouterr().out
    assert load_recipe(out).fitted_scale == 2
    searched, evaluated = map(int, re.search(r"(\d+) candidates searched, (\d+) evaluated in all", out.read_text())
                              .groups())
    planned = planned_evaluations(tmp_path / "quick.yml", 3)
    assert searched == 3 and 3 < evaluated <= planned


def test_the_budget_help_says_what_is_evaluated(tmp_path):
    from realciao.fitting.fit import planned_evaluations

    text = " ".join(fit_recipe.build_parser().format_help().split())
    extra = planned_evaluations("realesrgan", 0)
    assert "candidate recipes the optimiser's search evaluates" in text
    assert f"({extra} for realesrgan)" in text and "the progress bar counts both" in text


def test_the_base_is_realesrgan_unless_named_or_auto():
    parser = fit_recipe.build_parser()
    assert parser.parse_args(["-i", "x", "-o", "y.yml"]).base == "realesrgan"
    assert parser.parse_args(["-i", "x", "-o", "y.yml", "--base", "auto"]).base == "auto"
    assert "auto: the shipped recipe closest to the photos" in " ".join(parser.format_help().split())
