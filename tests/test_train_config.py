"""Training options: typed, validated at load, errors name the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from realciao.train.config import SCHEMA_PATH, ConfigError, load_config, options_schema

OPTIONS = Path(__file__).resolve().parents[1] / "options"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(OPTIONS.glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_options_file_loads(path):
    config = load_config(path, check_files=False)  # they name the user's datasets
    assert config.name


BASE = "data: {builtin_samples: true}\n"


@pytest.mark.parametrize(
    "text,message",
    [
        ("data: {builtin_samples: true, batchsize: 4}", r"opt.yml: data.batchsize: unknown key; allowed: \["),
        ("nmae: x\ndata: {builtin_samples: true}", r"opt.yml: nmae: unknown key"),
        ("data: {builtin_samples: true, batch_size: four}", r"opt.yml: data.batch_size: expected an integer, got 'four'"),
        (BASE + "train: {stage: gann}", r"opt.yml: train.stage: expected 'net' or 'gan', got 'gann'"),
        ("data: {builtin_samples: true, scale_min: 3, scale_max: 2}", r"opt.yml: data.scale_min: expected <= scale_max"),
        ("data: {}", r"opt.yml: data.hr_folders: expected training images"),
        (BASE + "losses: {perceptual_layers: {conv9_9: 1}}", r"losses.perceptual_layers: expected layers among"),
        ("data: [1, 2]", r"opt.yml: data: expected a mapping of options, got \[1, 2\]"),
        ("data: {builtin_samples: true, paired_probability: 1.5}", r"data.paired_probability: expected a value <= 1, got 1.5"),
        # values that used to pass the loader and fail later, or never
        (BASE + "validation: {scales: ['two']}", r"opt.yml: validation.scales\[0\]: expected a number, got 'two'"),
        (BASE + "validation: {tile: -5}", r"opt.yml: validation.tile: expected a value >= 0, got -5"),
        (BASE + "train: {optimizer: {betas: [0.9]}}", r"opt.yml: train.optimizer.betas: expected at least 2 items, got \[0.9\]"),
        (BASE + "train: {optimizer: {betas: [2, 3]}}", r"opt.yml: train.optimizer.betas\[0\]: expected a value < 1, got 2"),
        (BASE + "train: {schedule: {milestones: ['a']}}", r"opt.yml: train.schedule.milestones\[0\]: expected an integer, got 'a'"),
        (BASE + "train: {optimizer: {type: Adamm}}", r"opt.yml: train.optimizer.type: expected a torch.optim optimiser"),
        (BASE + "train: {optimizer: {type: SGD, betas: [0.9, 0.9]}}", r"opt.yml: train.optimizer.betas: SGD takes no betas"),
        (BASE + "train: {optimizer: {type: SGD, args: {momentum: fast}}}", r"train.optimizer.args.momentum: expected a number"),
        (BASE + "train: {optimizer: {args: {momentum: 0.9}}}", r"train.optimizer.args.momentum: not an argument of Adam"),
        (BASE + "train: {schedule: {type: cosine, milestones: [5]}}", r"train.schedule.milestones: only a multistep"),
        (BASE + "train: {optimizer: {lr: -1}}", r"opt.yml: train.optimizer.lr: expected a value > 0, got -1"),
        (BASE + "train: {grad_clip: -1}", r"opt.yml: train.grad_clip: expected a value >= 0, got -1"),
        ("data: {builtin_samples: true, num_workers: -1}", r"opt.yml: data.num_workers: expected a value >= 0, got -1"),
        (BASE + "generator: {name: edsr}", r"opt.yml: generator.name: expected one of \[.*'edsr-baseline-ciaosr'.*\], got 'edsr'"),
        (BASE + "generator: {options: {blocks: 4}}", r"opt.yml: generator.options.blocks: unknown key; allowed: \["),
        (BASE + "generator: {options: {num_blocks: two}}", r"opt.yml: generator.options.num_blocks: expected an integer"),
        (BASE + "generator: {options: {mlp_hidden: [0]}}", r"opt.yml: generator.options.mlp_hidden\[0\]: expected a value >= 1"),
        (BASE.replace("}", ", recipe: nosuch}"), r"opt.yml: data.recipe: nosuch: recipe file not found"),
        (BASE + "train: {mixed_precision: no}",
         r"opt.yml: train.mixed_precision: expected 'fp32', 'bf16', 'fp16' or 'auto', got False"),
        (BASE + "train: {threads: 0}", r"opt.yml: train.threads: expected a value >= 1, got 0"),
        (BASE + "losses: {charbonnier_eps: 0}", r"opt.yml: losses.charbonnier_eps: expected a value > 0, got 0"),
        (BASE + "losses: {ldl_weight: -1}", r"opt.yml: losses.ldl_weight: expected a value >= 0, got -1"),
        (BASE + "logging: {trackers: [tensorbord]}", r"opt.yml: logging.trackers\[0\]: expected 'tensorboard' or 'wandb'"),
        (BASE + "logging: {trackers: [tensorboard, tensorboard]}", r"opt.yml: logging.trackers: expected each tracker once"),
        ("data: {builtin_samples: true, paired_max_shift: -1}", r"opt.yml: data.paired_max_shift: expected a value >= 0"),
        ("data: {builtin_samples: true, augment: 3}", r"opt.yml: data.augment: expected an albumentations pipeline .* got 3$"),
        (BASE + "name: a/b", r"opt.yml: name: expected .*, got 'a/b'"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_set_overrides_use_the_same_checks(tmp_path):
    path = write(tmp_path, "data: {builtin_samples: true}")
    config = load_config(path, ["train.iterations=7", "data.scale_max=2.5", "generator.options={num_blocks: 2}"])
    assert (config.train.iterations, config.data.scale_max, config.generator.options) == (7, 2.5, {"num_blocks": 2})
    with pytest.raises(ConfigError, match=r"train.iteration: unknown key"):
        load_config(path, ["train.iteration=7"])
    with pytest.raises(ConfigError, match="--set expects key.path=value"):
        load_config(path, ["train.iterations"])


def test_a_bad_recipe_is_reported_with_its_own_file_and_key(tmp_path):
    recipe = tmp_path / "mine.yml"
    recipe.write_text("stages:\n  - noise: {types: [{type: gaussian, p: 1, sigma: [30, 1]}]}\n")
    path = write(tmp_path, f"data: {{builtin_samples: true, recipe: {recipe}}}")
    with pytest.raises(ConfigError, match=r"opt.yml: data.recipe: .*mine.yml: stages\[0\].noise.types\[0\].sigma: empty range"):
        load_config(path)


def test_the_shipped_schema_is_current():
    """options/schema.json is generated from the option types; regenerate it with
    `python -c "from realciao.train.config import write_schema; write_schema()"`."""
    assert json.loads(SCHEMA_PATH.read_text()) == options_schema()
    lr = options_schema()["$defs"]["OptimizerOptions"]["properties"]["lr"]
    assert lr["exclusiveMinimum"] == 0 and lr["description"].startswith("Learning rate")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such options file"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: {builtin_samples: true"))


def test_auto_precision_and_threads_are_accepted(tmp_path):
    config = load_config(write(tmp_path, BASE + "train: {mixed_precision: auto, threads: 2}"))
    assert (config.train.mixed_precision, config.train.threads) == ("auto", 2)
    defaults = load_config(write(tmp_path, BASE))
    assert (defaults.train.mixed_precision, defaults.train.threads) == ("fp32", None)
    assert defaults.logging.trackers == ["tensorboard"]


def test_the_real_world_options_files_choose_their_precision_automatically():
    for path in sorted(OPTIONS.glob("train_realciao*.yml")):
        assert load_config(path, check_files=False).train.mixed_precision == "auto", path.name


def test_wandb_without_wandb_installed_is_one_line_naming_the_key(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"opt.yml: logging.trackers: wandb is not installed: pip install wandb") as error:
        load_config(write(tmp_path, BASE + "logging: {trackers: [tensorboard, wandb]}"))
    assert "\n" not in str(error.value)
    assert load_config(write(tmp_path, BASE + "logging: {trackers: []}")).logging.trackers == []


def _paths_setup(tmp_path: Path) -> dict[str, str]:
    """An image folder, an empty folder, a file and a folder to name in options."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    return {"images": str(images), "empty": str(tmp_path / "empty"), "file": str(tmp_path / "notes.txt"),
            "missing": str(tmp_path / "missing")}


@pytest.mark.parametrize("text,message", [
    (BASE + "validation: {real_lr_folder: '{missing}'}", "validation.real_lr_folder: {missing}: folder does not exist"),
    (BASE + "validation: {real_lr_folder: '{empty}'}", r"validation.real_lr_folder: {empty}: no images \(.*\) found"),
    (BASE + "validation: {hr_folder: '{file}'}", "validation.hr_folder: {file}: is a file, not a folder"),
    (BASE + "validation: {real_lr_folder: '{images}', niqe_params: '{missing}'}",
     "validation.niqe_params: {missing}: no such file"),
    ("data: {hr_folders: ['{images}', '{empty}']}", r"data.hr_folders\[1\]: {empty}: no images"),
    ("data: {hr_folders: ['{images}'], meta_info: '{missing}'}", "data.meta_info: {missing}: no such file"),
    (BASE.replace("}", ", lmdb: '{empty}'}"), "data.lmdb: {empty}: not a BasicSR LMDB folder"),
    (BASE.replace("}", ", paired_probability: 0.5, paired_lr_folder: '{images}', paired_hr_folder: '{missing}'}"),
     "data.paired_hr_folder: {missing}: folder does not exist"),
    (BASE + "generator: {pretrained: '{missing}'}", "generator.pretrained: {missing}: no such file"),
    (BASE + "generator: {pretrained: '{images}'}", "generator.pretrained: {images}: is a folder, not a file"),
    (BASE + "train: {stage: gan}\nlosses: {vgg_weights: '{missing}'}", "losses.vgg_weights: {missing}: no such file"),
    (BASE + "train: {stage: gan}\nlosses: {vgg_weights: '{file}'}\ndiscriminator: {pretrained: '{missing}'}",
     "discriminator.pretrained: {missing}: no such file"),
    (BASE + "output_dir: '{file}/runs'", "output_dir: {file}/runs/realciao: .*notes.txt is a file"),
])
def test_every_named_file_and_folder_is_checked_at_load(tmp_path, text, message):
    paths = _paths_setup(tmp_path)
    for name, path in paths.items():
        text, message = text.replace(f"{{{name}}}", path), message.replace(f"{{{name}}}", path)
    with pytest.raises(ConfigError, match=f"opt.yml: {message}") as error:
        load_config(write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_files_a_stage_does_not_use_are_not_required(tmp_path):
    paths = _paths_setup(tmp_path)
    # the Net stage reads no VGG or discriminator weights; NIQE parameters only with real photos
    text = BASE + (f"losses: {{vgg_weights: '{paths['missing']}'}}\ndiscriminator: {{pretrained: '{paths['missing']}'}}\n"
                   f"validation: {{niqe_params: '{paths['missing']}'}}")
    assert load_config(write(tmp_path, text)).train.stage == "net"
    assert load_config(write(tmp_path, text), check_files=False)


def test_offline_gan_stage_without_vgg_weights_is_refused_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("REALCIAO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty torchvision cache
    with pytest.raises(ConfigError, match=r"opt.yml: losses.vgg_weights: VGG19 weights for the perceptual loss: .*"
                                          r"vgg19-dcbb9e9d.pth: file not found"):
        load_config(write(tmp_path, BASE + "train: {stage: gan}"))
    assert load_config(write(tmp_path, BASE + "train: {stage: gan}\nlosses: {perceptual_weight: 0}"))
