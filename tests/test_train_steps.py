"""realciao.train.steps and the loss registry: the trainer, scripts/bench_train.py and
scripts/gpu_check.py take their training steps from one place, and a loss added outside the
package trains without any change to the trainer."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import Field

from realciao.train import losses, steps
from realciao.train.config import LossOptions, NonNegativeFloat, TrainConfig, load_config
from realciao.train.losses import Loss, LossInputs, PerceptualLoss, register_loss
from realciao.train.trainer import Trainer
from tests.test_train_loop import options_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_train  # noqa: E402
import gpu_check  # noqa: E402

TINY = {"channels": 8, "num_blocks": 1, "mlp_hidden": [16]}


@pytest.fixture
def step_calls(monkeypatch) -> list[str]:
    """The stages of every call of the trainer's step functions (which still do their work)."""
    calls = []
    for stage, real in (("net", steps.net_step), ("gan", steps.gan_step)):

        def spy(*args, _stage=stage, _real=real, **kwargs):
            calls.append(_stage)
            return _real(*args, **kwargs)

        monkeypatch.setattr(steps, f"{stage}_step", spy)
    return calls


def random_perceptual() -> PerceptualLoss:
    from torchvision.models.vgg import cfgs, make_layers

    return PerceptualLoss({"conv1_2": 1.0}, make_layers(cfgs["E"]).state_dict(prefix="features."))


@pytest.mark.parametrize("stage", ["net", "gan"])
def test_the_benchmark_times_the_trainers_own_step(step_calls, stage, one_thread):
    step = bench_train.training_step(
        stage,
        "fp32",
        batch=2,
        lr_size=8,
        queries=16,
        model_options=TINY,
        discriminator_channels=8,
        perceptual=random_perceptual(),
    )
    result = step()
    assert step_calls == [stage]
    expected = {"l1"} if stage == "net" else {"l1", "perceptual", "gan", "d_real", "d_fake"}
    assert set(result.losses) == expected and all(math.isfinite(v) for v in result.losses.values())


def test_the_benchmarks_baseline_runs_the_same_step_with_the_official_forward(step_calls, one_thread):
    step = bench_train.training_step(
        "net", "fp32", batch=1, lr_size=8, queries=16, model_options=TINY, official=True
    )
    assert set(step().losses) == {"l1"} and step_calls == ["net"]


def test_the_gpu_check_times_the_trainers_own_step(step_calls, tmp_path, one_thread):
    ctx = gpu_check.Context(tmp_path, "training", dry_run=True)
    step = gpu_check.training_step(ctx, "gan", "bf16", random_perceptual(), 2, 8, 16, TINY)
    step()
    assert step_calls == ["gan"]


def test_the_trainer_steps_with_the_same_function(step_calls, tmp_path, one_thread):
    trainer = Trainer(load_config(options_file(tmp_path)))
    batches = trainer._loader(0, 1)
    assert set(trainer.train_iteration(batches)) == {"l1"}
    trainer.close()
    assert step_calls == ["net"]


# --- a loss added from outside the package -----------------------------------------------------------


class LossesWithTotalVariation(LossOptions):
    tv_weight: NonNegativeFloat = 0.0
    """Weight of the total variation of the output (a test's own loss)."""


class ConfigWithTotalVariation(TrainConfig):
    losses: LossesWithTotalVariation = Field(default_factory=LossesWithTotalVariation)


def total_variation(inputs: LossInputs) -> torch.Tensor:
    image = inputs.images(inputs.output)
    return (image[..., 1:, :] - image[..., :-1, :]).abs().mean() + (
        image[..., 1:] - image[..., :-1]
    ).abs().mean()


@pytest.fixture
def registered_tv(monkeypatch):
    monkeypatch.setattr(losses, "LOSSES", dict(losses.LOSSES))  # the registry as it was, after the test
    return register_loss(Loss("tv", "tv_weight", lambda options, device: total_variation, needs_images=True))


def test_a_registered_loss_trains_and_is_logged_without_touching_the_trainer(
    registered_tv, tmp_path, one_thread
):
    data = yaml.safe_load(
        options_file(
            tmp_path, train={"iterations": 2}, losses={"tv_weight": 0.5}, logging={"trackers": []}
        ).read_text()
    )
    trainer = Trainer(ConfigWithTotalVariation.model_validate(data))
    assert (
        trainer.losses.names == ["l1", "tv"] and trainer.losses.needs_images
    )  # Net stage: windows of pixels
    trainer.run()
    bar = [line for line in (trainer.dir / "train.log").read_text().splitlines() if "2/2" in line]
    assert bar and "tv=" in bar[-1] and "l1=" in bar[-1]  # the progress bar's last state, as logged


def test_a_registered_loss_at_weight_zero_is_left_out(registered_tv):
    assert losses.LossSet(LossesWithTotalVariation(), "net", torch.device("cpu")).names == ["l1"]


def test_a_loss_name_is_registered_once(registered_tv):
    with pytest.raises(ValueError, match="'tv' is registered already"):
        register_loss(registered_tv)


def test_the_shipped_losses_each_name_a_weight_field():
    assert all(loss.weight in LossOptions.model_fields for loss in losses.LOSSES.values())
    assert list(losses.LOSSES) == [
        "l1",
        "charbonnier",
        "ldl",
        "perceptual",
        "gan",
    ]  # the order they are summed in
