"""The fine-tuning walkthrough, run as written: its three commands are read from the README
(the same block as the docs page's) and run in order on photos made from scikit-image's
bundled ones, with only the overrides that make them short (a few iterations, a tiny budget,
small validation)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from realciao.archs import build_generator
from realciao.checkpoint import save_generator
from realciao.cli import evaluate, fit_recipe, train
from realciao.degradations import load_recipe

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
# where the walkthrough is written: (file, heading of its section)
README_SECTION = (ROOT / "README.md", "### Fine-tuning on your photos")
DOCS_SECTION = (ROOT / "docs" / "training" / "finetuning.md", "# Fine-tuning on your own photos")

# what makes each command short; nothing else is added to the README's commands
SHORT = {
    "fit": ["--budget", "4", "--no-progress"],  # 2 found nothing closer than the base once gray noise was searched
    "train": [
        f"--set={key}"
        for key in (
            "train.iterations=2",
            "checkpoint.every=2",
            "validation.every=2",
            "data.batch_size=2",
            "data.lr_patch=16",
            "data.num_workers=0",
            "data.pool_size=0",
            "validation.max_images=1",
            "validation.save_images=1",
            "validation.tile=0",
            "logging.trackers=[]",
        )
    ],
    "eval": ["--metrics", "piqe", "--max-images", "1", "--quiet"],
}


def walkthrough_commands(where: tuple[Path, str] = README_SECTION) -> list[list[str]]:
    """The first bash block of the fine-tuning section, one argv per command."""
    path, heading = where
    text = path.read_text()
    section = text[text.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [
        shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()
    ]


def make_inputs(folder: Path) -> None:
    """The user's phone photos (JPEGs), clean HR images and the model to start from."""
    photos, hr = folder / "my_photos", folder / "my_clean_hr"
    photos.mkdir()
    hr.mkdir()
    for index, name in enumerate(("astronaut", "coffee", "chelsea")):
        image = Image.fromarray(getattr(skimage_data, name)()[:, :, :3])
        image.crop((64, 64, 224, 224)).save(photos / f"IMG_{index}.jpg", quality=75)
        image.crop((0, 0, 256, 256)).save(hr / f"{name}.png")
    model = build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16])
    save_generator(model, folder / "base.safetensors")
    (folder / "options").symlink_to(ROOT / "options")  # the README's commands run from the repository root


@pytest.mark.slow
def test_the_readme_finetuning_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys, one_thread):
    commands = walkthrough_commands()
    assert commands == walkthrough_commands(DOCS_SECTION)  # the docs page shows the commands that run
    assert [c[0] for c in commands] == ["realciao-fit-recipe", "python", "realciao-eval"]
    assert commands[1][1] == "train_realciao.py"
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    fit, training, evaluation = commands

    assert fit_recipe.main(fit[1:] + SHORT["fit"]) == 0
    recipe = load_recipe(fit[fit.index("-o") + 1])
    assert recipe.fitted_scale == 2  # the scale the fine-tuning options train around

    assert train.main(training[2:] + SHORT["train"]) == 0
    out = capsys.readouterr().out
    assert "fitted_scale" not in out  # the recipe suits the training scales: no warning
    experiment = tmp_path / "experiments" / "finetune_phone_camera"
    assert (experiment / "net_g_ema.safetensors").is_file()
    assert any(p.name.endswith("_real_IMG_0.png") for p in (experiment / "validation").iterdir())

    assert evaluate.main(evaluation[1:] + SHORT["eval"]) == 0
    results = json.loads((tmp_path / "eval_my_photos" / "results.json").read_text())
    assert {row["method"] for row in results["per_image"]} == {"bicubic", "base", "finetuned"}
