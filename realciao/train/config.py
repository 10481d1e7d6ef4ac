"""Training options: the typed model of an options file, checked when it is loaded.

Every field's type, bounds, default and description live here, once; ``load_config`` reads
a YAML file (plus ``--set key.path=value`` overrides) through ``realciao.typed``, so every
mistake is one line, ``FILE: key.path: expected ..., got ...``. The generator's name and
options and the degradation recipe are checked at load too. ``options/schema.json`` is
generated from these models (``write_schema``) for editors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, Field, field_validator, model_validator

from realciao.devices import AUTO, PRECISIONS
from realciao.typed import Typed, TypedFileError, apply_overrides, read_yaml, validate_data

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Precision = Literal[(*PRECISIONS, AUTO)]  # the one vocabulary (realciao.devices), plus auto
# marks an option that decides the model or the data plan: a resumed run must have the value of the
# run it resumes (``plan_fields``; realciao.train.state.check_plan). Shown in the schema as "plan": true.
PLAN = Field(json_schema_extra={"plan": True})
TRACKERS = ("tensorboard", "wandb")  # Accelerate's names

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "options" / "schema.json"


class ConfigError(TypedFileError):
    """An invalid option; the message names the file and the key."""


class GeneratorOptions(Typed):
    name: Annotated[str, PLAN] = "edsr-baseline-ciaosr"
    """Registered generator: edsr-baseline-ciaosr, rdn-ciaosr, swinir-ciaosr, rrdb-ciaosr (or one registered by a plugin)."""
    options: Annotated[dict, PLAN] = Field(default_factory=dict)
    """Overrides of the generator's configuration, e.g. {channels: 32, num_blocks: 4, mlp_hidden: [64, 64]}."""
    pretrained: Annotated[Optional[str], PLAN] = None
    """A realciao .safetensors or official CiaoSR checkpoint to start from (sizes come from the file)."""
    encoder_weights: Annotated[Optional[str], PLAN] = None
    """An ESRGAN-family RRDBNet checkpoint (Real-ESRGAN x4plus, BSRGAN, RealSR...) whose trunk starts an rrdb-ciaosr encoder; the upsampler starts fresh. Not with `pretrained`."""
    allow_pickle: bool = False
    """Allow a .pth/.pt `pretrained` file that needs full unpickling (it can run code: only for files you trust)."""
    zero_init_residual: bool = True
    """A fresh generator starts as plain bilinear upsampling (the decoder's last layer zeroed); no effect with `pretrained`."""


class DataOptions(Typed):
    hr_folders: Annotated[list[str], PLAN] = Field(default_factory=list)
    """Folders of clean HR images, searched recursively."""
    builtin_samples: Annotated[bool, PLAN] = False
    """Train on scikit-image's bundled photos (no download)."""
    meta_info: Annotated[Optional[str], PLAN] = None
    """Text file of image paths relative to the first HR folder, one a line."""
    lmdb: Annotated[Optional[str], PLAN] = None
    """BasicSR-style LMDB folder (data.mdb + meta_info.txt)."""
    paired_lr_folder: Annotated[Optional[str], PLAN] = None
    """Real LR images named like their HR counterparts."""
    paired_hr_folder: Annotated[Optional[str], PLAN] = None
    """Real HR images of the pairs."""
    paired_probability: Annotated[Probability, PLAN] = 0.0
    """Chance that a batch is drawn from the real pairs."""
    paired_scale: Annotated[Optional[PositiveFloat], PLAN] = None
    """Expected HR size / LR size of every real pair; a pair whose HR is not within one pixel of LR x this on each axis is skipped. null: any ratio. Each pair's ratio (per axis) always comes from its sizes."""
    paired_max_shift: Annotated[Optional[NonNegativeFloat], PLAN] = 0.5
    """Largest content shift, in LR pixels, between a real pair's LR and its HR downscaled to the LR's size (phase correlation on luminance); a pair beyond it is skipped. null: no check."""
    lr_patch: Annotated[PositiveInt, PLAN] = 48
    """LR patch side in pixels."""
    scale_min: Annotated[PositiveFloat, PLAN] = 1.0
    """Smallest training scale (GT size / LR size)."""
    scale_max: Annotated[PositiveFloat, PLAN] = 4.0
    """Largest training scale."""
    per_axis_scale: Annotated[bool, PLAN] = False
    """Draw the height and width scales independently."""
    batch_size: Annotated[PositiveInt, PLAN] = 16
    """Patches per batch, per process."""
    num_workers: Annotated[int, Field(ge=0)] = 0
    """DataLoader worker processes (0: load in the training process)."""
    hflip: Annotated[bool, PLAN] = True
    """Random horizontal flips."""
    rotate: Annotated[bool, PLAN] = True
    """Random vertical flips and transposes (90-degree rotations)."""
    augment: Annotated[Optional[dict | str], PLAN] = None
    """An albumentations pipeline for the HR crops (both images of a real pair get the same draw), after the flips: its serialised form (A.to_dict) inline, or the path of a YAML/JSON file written by A.save. Transforms must keep the crop size."""
    recipe: Annotated[str, PLAN] = "realesrgan"
    """Degradation recipe: a shipped name (realesrgan, bsrgan, phone_camera, bicubic) or a path to a YAML file."""
    pool_size: Annotated[int, Field(ge=0), PLAN] = 0
    """Training pairs kept to mix batches; 0 turns the pool off."""
    queries_per_patch: Annotated[PositiveInt, PLAN] = 2304
    """Sampled HR pixels per patch in the Net stage."""

    @field_validator("augment", mode="before")
    @classmethod
    def _pipeline_or_path(cls, value):
        if value is not None and not isinstance(value, (dict, str)):
            raise ValueError(
                f"expected an albumentations pipeline (its serialised form, a mapping) or the path of "
                f"a YAML/JSON file written by A.save, got {value!r:.60}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DataOptions:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min: expected <= scale_max ({self.scale_max:g}), got {self.scale_min:g}")
        if self.paired_probability > 0 and not (self.paired_lr_folder and self.paired_hr_folder):
            raise ValueError("paired_probability: expected paired_lr_folder and paired_hr_folder with it")
        if not (self.hr_folders or self.builtin_samples or self.lmdb):
            raise ValueError(
                "hr_folders: expected training images: give hr_folders, lmdb or builtin_samples: true"
            )
        return self


class OptimizerOptions(Typed):
    type: str = "Adam"
    """Any torch.optim optimiser: Adam, AdamW, SGD, RMSprop, NAdam, RAdam..."""
    lr: PositiveFloat = 1e-4
    """Learning rate (the base of the schedule)."""
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [
        0.9,
        0.99,
    ]
    """The two betas of Adam-like optimisers, each in [0, 1)."""
    weight_decay: NonNegativeFloat = 0.0
    """Weight decay (decoupled for AdamW)."""
    args: dict = Field(default_factory=dict)
    """Other constructor arguments of the optimiser, e.g. {amsgrad: true} or {momentum: 0.9, nesterov: true}."""

    @model_validator(mode="after")
    def _fits_the_class(self) -> OptimizerOptions:
        from realciao.train.optim import check_optimizer_options

        check_optimizer_options(self)
        return self


class ScheduleOptions(Typed):
    type: Literal["constant", "multistep", "cosine"] = "multistep"
    """constant; multistep (lr times gamma at each milestone); cosine (down to min_lr at the last iteration)."""
    milestones: list[PositiveInt] = Field(default_factory=list)
    """Iterations at which a multistep schedule multiplies the lr by gamma."""
    gamma: PositiveFloat = 0.5
    """Factor applied at each milestone."""
    warmup_iterations: Annotated[int, Field(ge=0)] = 0
    """Iterations of linear warm-up from lr/warmup to lr, before the schedule."""
    min_lr: NonNegativeFloat = 0.0
    """The lr a cosine schedule ends at."""

    @model_validator(mode="after")
    def _used_fields(self) -> ScheduleOptions:
        if self.type != "multistep" and self.milestones:
            raise ValueError(f"milestones: only a multistep schedule has milestones (type is {self.type})")
        return self


class LossOptions(Typed):
    l1_weight: NonNegativeFloat = 1.0
    """Weight of the L1 loss (both stages)."""
    charbonnier_weight: NonNegativeFloat = 0.0
    """Weight of the Charbonnier loss, mean of sqrt(d^2 + eps^2) (both stages)."""
    charbonnier_eps: PositiveFloat = 1e-3
    """The Charbonnier loss's eps."""
    ldl_weight: NonNegativeFloat = 0.0
    """Weight of the LDL artifact loss (Liang et al. 2022) against the EMA model (both stages; the Net stage then samples its pixels as one square window per patch)."""
    perceptual_weight: NonNegativeFloat = 1.0
    """Weight of the VGG19 perceptual loss (GAN stage)."""
    perceptual_layers: dict[str, NonNegativeFloat] = Field(
        default_factory=lambda: {
            "conv1_2": 0.1,
            "conv2_2": 0.1,
            "conv3_4": 1.0,
            "conv4_4": 1.0,
            "conv5_4": 1.0,
        }
    )
    """Pre-ReLU VGG19 layers and their weights."""
    vgg_weights: Optional[str] = None
    """torchvision's vgg19-dcbb9e9d.pth (or a .safetensors of it); default: torchvision's cache."""
    gan_weight: NonNegativeFloat = 0.1
    """Weight of the generator's GAN loss (GAN stage)."""

    @model_validator(mode="after")
    def _known_layers(self) -> LossOptions:
        from realciao.train.losses import VGG_LAYERS  # the network's facts live with the loss that uses it

        unknown = sorted(set(self.perceptual_layers) - set(VGG_LAYERS))
        if unknown:
            raise ValueError(
                f"perceptual_layers: expected layers among {list(VGG_LAYERS)}, got {unknown[0]!r}"
            )
        return self


class DiscriminatorOptions(Typed):
    channels: Annotated[PositiveInt, PLAN] = 64
    """Base width of the U-Net discriminator."""
    skip_connection: Annotated[bool, PLAN] = True
    """U-Net skip connections."""
    pretrained: Optional[str] = None
    """A Real-ESRGAN U-Net discriminator to start from (.safetensors, or .pth)."""
    allow_pickle: bool = False
    """Allow a .pth `pretrained` file that needs full unpickling (it can run code)."""
    optimizer: OptimizerOptions = Field(default_factory=OptimizerOptions)
    """The discriminator's optimiser."""
    schedule: ScheduleOptions = Field(default_factory=ScheduleOptions)
    """The discriminator's learning-rate schedule."""


class TrainOptions(Typed):
    stage: Annotated[Literal["net", "gan"], PLAN] = "net"
    """net: L1 on sampled pixels; gan: L1 + perceptual + GAN on whole rendered patches."""
    iterations: PositiveInt = 1000
    """Optimiser steps in the run."""
    optimizer: OptimizerOptions = Field(default_factory=OptimizerOptions)
    """The generator's optimiser."""
    schedule: ScheduleOptions = Field(default_factory=ScheduleOptions)
    """The generator's learning-rate schedule."""
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.999
    """Decay of the generator's exponential moving average (the release weights)."""
    freeze: Annotated[Optional[list[Literal["encoder"]]], PLAN] = None
    """Parts of the generator left as they start: [encoder] trains only the upsampler (e.g. on a trunk from `generator.encoder_weights`); null: none."""
    encoder_lr: Annotated[Optional[PositiveFloat], PLAN] = None
    """The encoder's own learning rate (the schedule scales it as it scales `optimizer.lr`); null: `optimizer.lr`."""
    grad_clip: NonNegativeFloat = 0.0
    """Maximum gradient norm; 0 turns clipping off."""
    grad_accumulation: Annotated[PositiveInt, PLAN] = 1
    """Micro-batches per optimiser step."""
    mixed_precision: Precision = "fp32"
    """fp32, bf16 (CPU and GPU), fp16 (GPU, one gradient scaler per optimiser) or auto (the fastest of the precisions the device runs, timed once on a forward and backward pass of the generator at the run's shapes and cached per machine; a reduced precision only when more than 5 % faster than fp32; a resumed run keeps the precision it started with)."""
    threads: Optional[PositiveInt] = None
    """torch threads per process; null: the user's OMP_NUM_THREADS, else the available cores divided among the local processes."""
    compile: bool = False
    """torch.compile the generator."""
    max_bad_steps: PositiveInt = 10
    """Stop after this many non-finite losses in a row."""
    log_every: PositiveInt = 10
    """Iterations between log lines."""


class LoggingOptions(Typed):
    trackers: list[Literal[TRACKERS]] = Field(default_factory=lambda: ["tensorboard"])
    """Accelerate trackers that get the losses, validation metrics and images: tensorboard, wandb (pip install wandb); [] for none."""

    @model_validator(mode="after")
    def _installed(self) -> LoggingOptions:
        import importlib.util

        if len(set(self.trackers)) != len(self.trackers):
            raise ValueError(f"trackers: expected each tracker once, got {self.trackers}")
        for name in self.trackers:
            if importlib.util.find_spec(name) is None:
                raise ValueError(
                    f"trackers: {name} is not installed: pip install {name}, or remove it from logging.trackers"
                )
        return self


class CheckpointOptions(Typed):
    every: PositiveInt = 500
    """Iterations between checkpoints."""
    keep_last: PositiveInt = 3
    """Complete checkpoints kept."""


class ValidationOptions(Typed):
    every: PositiveInt = 500
    """Iterations between validations."""
    hr_folder: Optional[str] = None
    """A paired set: HR images; the LR is made with MATLAB bicubic at each scale (or with `recipe`)."""
    recipe: Optional[str] = None
    """Make the paired LR with this degradation recipe (a fixed seed per image) instead of bicubic: the
    metrics then include bicubic of the same degraded LR, and the margin over it (restoration)."""
    recipe_seed: Annotated[int, Field(ge=0)] = 0
    """Seed of the degraded LR (image i uses recipe_seed + i)."""
    builtin_sample: bool = False
    """Validate on scikit-image's coffee photo, held out of builtin_samples."""
    scales: Annotated[list[PositiveFloat], Field(min_length=1)] = [2.0, 3.0, 4.0]
    """Scales of the paired validation; any positive numbers (1.7, 3.3...)."""
    real_lr_folder: Optional[str] = None
    """Real low-quality photos, scored with no-reference metrics."""
    real_scale: PositiveFloat = 4.0
    """Scale of the real-photo validation."""
    niqe_params: Optional[str] = None
    """niqe_modelparameters.mat for NIQE without internet."""
    tile: Annotated[int, Field(ge=0)] = 128
    """LR tile side of validation inference; 0: whole images."""
    max_images: PositiveInt = 10
    """Images per validation set."""
    save_images: Annotated[int, Field(ge=0)] = 2
    """Outputs written per set and scale."""


class TrainConfig(Typed):
    name: Annotated[str, Field(min_length=1)] = "realciao"
    """The experiment's name: its folder is output_dir/name."""
    output_dir: str = "experiments"
    """Where experiment folders go."""
    seed: Annotated[int, Field(ge=0), PLAN] = 0
    """Seed of every random draw (data order, crops, degradations, initialisation)."""
    generator: GeneratorOptions = Field(default_factory=GeneratorOptions)
    data: DataOptions = Field(default_factory=DataOptions)
    train: TrainOptions = Field(default_factory=TrainOptions)
    losses: LossOptions = Field(default_factory=LossOptions)
    discriminator: DiscriminatorOptions = Field(default_factory=DiscriminatorOptions)
    checkpoint: CheckpointOptions = Field(default_factory=CheckpointOptions)
    validation: ValidationOptions = Field(default_factory=ValidationOptions)
    logging: LoggingOptions = Field(default_factory=LoggingOptions)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"expected a folder name (no / or \\), got {name!r}")
        return name

    @property
    def experiment_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def plan_fields(model: type[BaseModel] = TrainConfig, prefix: str = "") -> list[str]:
    """The dotted keys of the options marked ``PLAN`` in ``model`` and the models it nests, in order."""
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("plan"):
            keys.append(prefix + name)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += plan_fields(field.annotation, f"{prefix}{name}.")
    return keys


def check_generator(config: TrainConfig, file: str) -> None:
    """The generator's name and options against the registry, keys named as in the file."""
    from pydantic import ValidationError

    from realciao.archs import GENERATORS, options_model
    from realciao.typed import raise_first

    name = config.generator.name
    if name not in GENERATORS:
        raise ConfigError(file, "generator.name", f"expected one of {sorted(GENERATORS)}, got {name!r}")
    if config.generator.encoder_weights:
        from realciao.archs import ENCODERS
        from realciao.archs.rrdb import RRDBEncoder

        if config.generator.pretrained:
            raise ConfigError(file, "generator.encoder_weights", "expected no encoder_weights beside generator."
                              "pretrained (a pretrained generator brings its own encoder)")
        if not issubclass(ENCODERS[GENERATORS[name]], RRDBEncoder):
            raise ConfigError(file, "generator.encoder_weights", f"only an RRDB encoder (rrdb-ciaosr) starts from "
                              f"an ESRGAN-family trunk, got generator.name {name}")
    if config.generator.pretrained:
        return  # sizes come from the file
    try:
        options_model(name).model_validate(config.generator.options)
    except ValidationError as error:
        try:
            raise_first(error, file, options_model(name), ("generator", "options"))
        except TypedFileError as typed:
            raise ConfigError(typed.file, typed.key_path, typed.detail) from None


def check_recipe(config: TrainConfig, file: str) -> None:
    from realciao.degradations import RecipeError, load_recipe

    for key, recipe in (("data.recipe", config.data.recipe), ("validation.recipe", config.validation.recipe)):
        if recipe is None:
            continue
        try:
            load_recipe(recipe)
        except RecipeError as error:
            raise ConfigError(file, key, str(error)) from None


def check_augment(config: TrainConfig, file: str) -> None:
    from realciao.train.augment import AugmentError, build_pipeline

    if config.data.augment is None:
        return
    try:
        build_pipeline(config.data.augment)
    except AugmentError as error:
        key = "data.augment" + (f".{error.key}" if error.key else "")
        raise ConfigError(file, key, error.detail) from None


def _file_problem(path: str) -> str | None:
    if Path(path).is_dir():
        return "is a folder, not a file"
    return None if Path(path).is_file() else "no such file"


def _folder_problem(path: str) -> str | None:
    return (
        None
        if Path(path).is_dir()
        else ("is a file, not a folder" if Path(path).exists() else "folder does not exist")
    )


def named_paths(config: TrainConfig) -> list[tuple[str, str, Callable[[str], str | None]]]:
    """(key, path, check) for every file and folder the run will read: the check says what is
    wrong with the path, or None."""
    from realciao.imageio import image_folder_problem
    from realciao.train.data import lmdb_problem

    d, v, stage_gan = config.data, config.validation, config.train.stage == "gan"
    # with meta_info, the first HR folder is the root of the listed paths: it need only exist
    hr_check = _folder_problem if d.meta_info else image_folder_problem
    paths = [(f"data.hr_folders[{i}]", folder, hr_check) for i, folder in enumerate(d.hr_folders)]
    paths += [
        ("data.meta_info", d.meta_info, _file_problem),
        ("data.lmdb", d.lmdb, lmdb_problem),
        ("generator.pretrained", config.generator.pretrained, _file_problem),
        ("generator.encoder_weights", config.generator.encoder_weights, _file_problem),
        ("validation.hr_folder", v.hr_folder, image_folder_problem),
        ("validation.real_lr_folder", v.real_lr_folder, image_folder_problem),
    ]
    if d.paired_probability > 0:
        paths += [
            ("data.paired_lr_folder", d.paired_lr_folder, image_folder_problem),
            ("data.paired_hr_folder", d.paired_hr_folder, image_folder_problem),
        ]
    if v.real_lr_folder:
        paths.append(("validation.niqe_params", v.niqe_params, _file_problem))
    if stage_gan:
        paths.append(("discriminator.pretrained", config.discriminator.pretrained, _file_problem))
        if config.losses.perceptual_weight > 0:
            paths.append(("losses.vgg_weights", config.losses.vgg_weights, _file_problem))
    return [(key, path, check) for key, path, check in paths if path]


def check_paths(config: TrainConfig, file: str) -> None:
    """Every file and folder the options name, before any work: a run that trains for hours must
    not stop at its first validation for a folder that was never there."""
    from realciao.files import output_problem

    for key, path, check in named_paths(config):
        problem = check(path)
        if problem:
            raise ConfigError(file, key, f"{path}: {problem}")
    check_vgg_cache(config, file)
    problem = output_problem(config.experiment_dir, folder=True)
    if problem:
        raise ConfigError(file, "output_dir", f"{config.experiment_dir}: {problem}")


def check_vgg_cache(config: TrainConfig, file: str) -> None:
    """Without ``losses.vgg_weights``, the GAN stage's perceptual loss reads torchvision's cache,
    or downloads into it when online; offline, a missing file is known now."""
    from realciao.train.losses import missing_vgg_message, online_allowed, torchvision_cache_path

    needed = (
        config.train.stage == "gan" and config.losses.perceptual_weight > 0 and not config.losses.vgg_weights
    )
    if needed and not online_allowed() and not torchvision_cache_path().is_file():
        raise ConfigError(
            file, "losses.vgg_weights", missing_vgg_message(torchvision_cache_path(), "file not found")
        )


def load_config(
    path: str | Path, overrides: list[str] | None = None, check_files: bool = True
) -> TrainConfig:
    """The options file at ``path`` with ``--set`` overrides, fully checked; ``check_files``:
    also every file and folder it names (off for reading an options file on another machine)."""
    file = str(path)
    try:
        data = apply_overrides(read_yaml(path, "options file"), overrides or [], file)
        config = validate_data(TrainConfig, data, file)
    except TypedFileError as error:
        raise ConfigError(error.file, error.key_path, error.detail) from None
    check_generator(config, file)
    check_recipe(config, file)
    check_augment(config, file)
    if check_files:
        check_paths(config, file)
    return config


def options_schema() -> dict:
    """The JSON schema of an options file (what ``options/schema.json`` holds)."""
    schema = TrainConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "realciao training options"
    return schema


def write_schema(path: str | Path = SCHEMA_PATH) -> Path:
    path = Path(path)
    path.write_text(json.dumps(options_schema(), indent=2, sort_keys=True) + "\n")
    return path
