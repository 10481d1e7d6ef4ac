"""Training options: typed dataclasses read from YAML, validated at load.

Every mistake is reported as ``FILE: key.path: what was expected``: an unknown key, a
wrong type, a value out of range. ``--set a.b=value`` overrides use the same checks.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


class ConfigError(ValueError):
    """An invalid option; the message names the file and the key."""


@dataclass
class GeneratorOptions:
    name: str = "edsr-baseline-ciaosr"
    options: dict = field(default_factory=dict)  # build_generator overrides, e.g. {num_blocks: 4}
    pretrained: Optional[str] = None  # realciao or official CiaoSR checkpoint to start from
    allow_pickle: bool = False
    # a fresh generator starts as plain bilinear upsampling (its residual decoder's last layer
    # zeroed) instead of bilinear plus random noise; no effect with `pretrained`
    zero_init_residual: bool = True


@dataclass
class DataOptions:
    hr_folders: list = field(default_factory=list)  # folders of clean HR images, searched recursively
    builtin_samples: bool = False  # scikit-image's bundled photos (no download)
    meta_info: Optional[str] = None  # text file of image paths relative to the first folder, one a line
    lmdb: Optional[str] = None  # BasicSR-style LMDB folder (data.mdb + meta_info.txt)
    paired_lr_folder: Optional[str] = None  # real LR images named like their HR counterparts
    paired_hr_folder: Optional[str] = None
    paired_probability: float = 0.0  # chance a batch is drawn from the real pairs
    paired_scale: float = 4.0  # HR size / LR size of the real pairs
    lr_patch: int = 48
    scale_min: float = 1.0
    scale_max: float = 4.0
    per_axis_scale: bool = False  # draw the height and width scales independently
    batch_size: int = 16  # per process
    num_workers: int = 0
    hflip: bool = True
    rotate: bool = True  # 90-degree rotations and transposes
    recipe: str = "realesrgan"  # degradation recipe: a name in degradations/ or a path
    pool_size: int = 0  # training pairs kept to mix batches; 0 turns the pool off
    queries_per_patch: int = 2304  # sampled HR pixels per patch in the Net stage


@dataclass
class OptimizerOptions:
    lr: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    milestones: list = field(default_factory=list)  # iterations at which the lr is multiplied by gamma
    gamma: float = 0.5


@dataclass
class LossOptions:
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    perceptual_layers: dict = field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    vgg_weights: Optional[str] = None  # torchvision's vgg19-dcbb9e9d.pth; else torchvision's cache
    gan_weight: float = 0.1
    sharpened_target: bool = True  # USM-sharpened GT for L1 and perceptual (Real-ESRGAN)


@dataclass
class DiscriminatorOptions:
    channels: int = 64
    skip_connection: bool = True
    pretrained: Optional[str] = None  # a Real-ESRGAN discriminator (safetensors, or .pth with allow_pickle)
    allow_pickle: bool = False
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)


@dataclass
class TrainOptions:
    stage: str = "net"  # "net": L1 on sampled pixels; "gan": L1 + perceptual + GAN on whole patches
    iterations: int = 1000
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    ema_decay: float = 0.999
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off
    grad_accumulation: int = 1
    mixed_precision: str = "no"  # no, bf16, fp16
    compile: bool = False
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row
    log_every: int = 10


@dataclass
class CheckpointOptions:
    every: int = 500
    keep_last: int = 3


@dataclass
class ValidationOptions:
    every: int = 500
    hr_folder: Optional[str] = None  # paired set: HR images, LR made with MATLAB-style bicubic
    builtin_sample: bool = False  # scikit-image's coffee photo, held out of builtin_samples
    scales: list = field(default_factory=lambda: [2.0, 3.0, 4.0])
    real_lr_folder: Optional[str] = None  # real low-quality photos, no-reference metrics
    real_scale: float = 4.0
    niqe_params: Optional[str] = None  # niqe_modelparameters.mat for offline NIQE
    tile: int = 128
    max_images: int = 10
    save_images: int = 2


@dataclass
class TrainConfig:
    name: str = "realciao"
    output_dir: str = "experiments"
    seed: int = 0
    generator: GeneratorOptions = field(default_factory=GeneratorOptions)
    data: DataOptions = field(default_factory=DataOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    losses: LossOptions = field(default_factory=LossOptions)
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    checkpoint: CheckpointOptions = field(default_factory=CheckpointOptions)
    validation: ValidationOptions = field(default_factory=ValidationOptions)

    @property
    def experiment_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _check_type(value, args[0], where)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}.get(
        getattr(annotation, "__name__", str(annotation)), annotation
    )
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, source: str, keypath: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {keypath or 'top level'}: expected a mapping of options, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{source}: {keypath + '.' if keypath else ''}{unknown[0]}: unknown key; allowed: {sorted(fields)}")
    values = {}
    for name, value in data.items():
        key = f"{keypath}.{name}" if keypath else name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = from_dict(hints[name], value, source, key)
        else:
            values[name] = _check_type(value, hints[name], f"{source}: {key}")
    return cls(**values)


def _parse_override(text: str, where: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"{where}: --set expects key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def validate(config: TrainConfig, where: str) -> TrainConfig:
    def fail(key: str, message: str):
        raise ConfigError(f"{where}: {key}: {message}")

    d, t = config.data, config.train
    if t.stage not in ("net", "gan"):
        fail("train.stage", f"expected 'net' or 'gan', got {t.stage!r}")
    if t.mixed_precision not in ("no", "bf16", "fp16"):
        fail("train.mixed_precision", f"expected no, bf16 or fp16, got {t.mixed_precision!r}")
    for key, value in (("train.iterations", t.iterations), ("data.batch_size", d.batch_size), ("data.lr_patch", d.lr_patch),
                       ("train.grad_accumulation", t.grad_accumulation), ("checkpoint.every", config.checkpoint.every),
                       ("checkpoint.keep_last", config.checkpoint.keep_last), ("validation.every", config.validation.every),
                       ("data.queries_per_patch", d.queries_per_patch), ("train.max_bad_steps", t.max_bad_steps)):
        if value < 1:
            fail(key, f"must be at least 1, got {value}")
    if not 0 < d.scale_min <= d.scale_max:
        fail("data.scale_min", f"need 0 < scale_min <= scale_max, got [{d.scale_min}, {d.scale_max}]")
    if not 0 <= d.paired_probability <= 1:
        fail("data.paired_probability", f"must be in [0, 1], got {d.paired_probability}")
    if d.paired_probability > 0 and not (d.paired_lr_folder and d.paired_hr_folder):
        fail("data.paired_probability", "needs data.paired_lr_folder and data.paired_hr_folder")
    if not (d.hr_folders or d.builtin_samples or d.lmdb):
        fail("data.hr_folders", "no training images: give hr_folders, lmdb or builtin_samples: true")
    if not 0 <= t.ema_decay < 1:
        fail("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    unknown_layers = sorted(set(config.losses.perceptual_layers) - set(VGG_LAYERS))
    if unknown_layers:
        fail("losses.perceptual_layers", f"unknown layer {unknown_layers[0]!r}; choose from {list(VGG_LAYERS)}")
    return config


# pre-ReLU convolutions of VGG19 and their index in torchvision's ``features``
VGG_LAYERS = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25, "conv5_1": 28, "conv5_2": 30,
    "conv5_3": 32, "conv5_4": 34,
}


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such options file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    for text in overrides or []:
        keys, value = _parse_override(text, str(path))
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: --set {text}: {key} is not a mapping")
        node[keys[-1]] = value
    return validate(from_dict(TrainConfig, data, str(path)), str(path))
