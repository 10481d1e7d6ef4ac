"""train_realciao.py as a user meets it: the fine-tuning options' files checked before any
work, a recipe fitted for another scale, option errors under ``accelerate launch``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from realciao.archs import build_generator
from realciao.checkpoint import save_generator
from realciao.cli import train
from realciao.train.config import load_config
from realciao.train.trainer import Trainer
from tests.test_train_loop import hr_folder, options_file

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = ROOT / "options" / "finetune_custom_degradation.yml"
TINY = {"channels": 8, "num_blocks": 1, "mlp_hidden": [16]}


def test_finetuning_with_a_missing_validation_folder_stops_before_any_work(tmp_path, capsys):
    base = save_generator(build_generator("edsr-baseline-ciaosr", **TINY), tmp_path / "base.safetensors")
    code = train.main(["-opt", str(FINETUNE), "--set", f"generator.pretrained={base}",
                       "--set", f"data.hr_folders=[{hr_folder(tmp_path)}]", "--set", f"output_dir={tmp_path / 'exp'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (f"train_realciao.py: error: {FINETUNE}: validation.real_lr_folder: datasets/my_phone_photos: "
                           "folder does not exist")
    assert not (tmp_path / "exp").exists()  # no experiment folder, no iteration


def _recipe(tmp_path: Path, fitted_scale: float) -> Path:
    text = (ROOT / "degradations" / "bicubic.yml").read_text().replace("name: bicubic\n", "name: fitted\n")
    path = tmp_path / f"fitted_x{fitted_scale:g}.yml"
    path.write_text(f"{text}\nfitted_scale: {fitted_scale}\n")
    return path


@pytest.mark.parametrize("fitted_scale,warned", [(4.0, True), (2.0, False)])
def test_a_recipe_fitted_for_a_scale_outside_the_training_scales_warns_once(tmp_path, capsys, fitted_scale, warned):
    recipe = _recipe(tmp_path, fitted_scale)
    trainer = Trainer(load_config(options_file(tmp_path, name=f"x{fitted_scale:g}"), [f"data.recipe={recipe}"]))
    trainer.close()
    lines = [line for line in capsys.readouterr().out.splitlines() if "fitted_scale" in line]
    if warned:
        assert lines == [f"warning: data.recipe {recipe} was fitted for x4 (its fitted_scale), outside the training "
                         "scales x1 to x3 (data.scale_min..scale_max); refit it with realciao-fit-recipe --scale 2, "
                         "or train at scales that include x4"]
    else:
        assert lines == []


# the launcher flags the README's commands give: without them accelerate warns about each default
LAUNCH = ["-q", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


@pytest.mark.slow
def test_an_option_error_under_accelerate_launch_is_one_line(tmp_path):
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate command is not on PATH")
    bad = tmp_path / "bad.yml"
    bad.write_text("data: {builtin_samples: true, batchsize: 4}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([launcher, "launch", *LAUNCH, "train_realciao.py", "-opt", str(bad)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"train_realciao.py: error: {bad}: data.batchsize: unknown key"), lines
    # accelerate 1.x ends with 1 whatever a failed script's code (launch.py, _run_subprocess);
    # python train_realciao.py (no launcher) gives the script's own 2
    assert result.returncode == 1
    direct = subprocess.run([sys.executable, "train_realciao.py", "-opt", str(bad)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert direct.returncode == 2 and direct.stderr.strip() == lines[0] and not direct.stdout
    assert not re.search("Traceback|CalledProcessError|were not passed", result.stderr)
