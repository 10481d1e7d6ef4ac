"""Training options: typed, validated at load, errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from realciao.train.config import ConfigError, load_config

OPTIONS = Path(__file__).resolve().parents[1] / "options"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(OPTIONS.glob("*.yml")), ids=lambda p: p.name)
def test_every_shipped_options_file_loads(path):
    config = load_config(path)
    assert config.name


@pytest.mark.parametrize(
    "text,message",
    [
        ("data: {builtin_samples: true, batchsize: 4}", r"opt.yml: data.batchsize: unknown key; allowed: \["),
        ("nmae: x\ndata: {builtin_samples: true}", r"opt.yml: nmae: unknown key"),
        ("data: {builtin_samples: true, batch_size: four}", r"opt.yml: data.batch_size: expected int, got 'four'"),
        ("data: {builtin_samples: true}\ntrain: {stage: gann}", r"opt.yml: train.stage: expected 'net' or 'gan'"),
        ("data: {builtin_samples: true, scale_min: 3, scale_max: 2}", r"opt.yml: data.scale_min: need 0 < scale_min"),
        ("data: {}", r"opt.yml: data.hr_folders: no training images"),
        ("data: {builtin_samples: true}\nlosses: {perceptual_layers: {conv9_9: 1}}", r"losses.perceptual_layers: unknown layer"),
        ("data: [1, 2]", r"opt.yml: data: expected a mapping"),
        ("data: {builtin_samples: true, paired_probability: 1.5}", r"data.paired_probability: must be in \[0, 1\]"),
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


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such options file"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "data: {builtin_samples: true"))
