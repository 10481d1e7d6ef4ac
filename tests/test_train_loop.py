"""The training loop on CPU: both stages, starting from official checkpoints, the NaN
guard, exact resume after SIGKILL, and two processes (gloo) training together."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import realciao
from realciao.train.config import load_config
from realciao.train.losses import discriminator_view
from realciao.train.steps import sample_queries
from realciao.train.trainer import Trainer, TrainingError
from tests.test_checkpoint import official_state_dict
from tests.test_train_losses import fake_vgg19_file

ROOT = Path(__file__).resolve().parents[1]


def hr_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        smooth = cv2.GaussianBlur(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(folder / f"{i}.png"), smooth)
    return folder


def options_file(tmp_path: Path, **sections) -> Path:
    options = {
        "name": "run",
        "output_dir": str(tmp_path / "experiments"),
        "generator": {
            "name": "edsr-baseline-ciaosr",
            "options": {"channels": 8, "num_blocks": 1, "mlp_hidden": [16]},
        },
        "data": {
            "hr_folders": [str(hr_folder(tmp_path))],
            "recipe": "bicubic",
            "lr_patch": 8,
            "batch_size": 2,
            "scale_min": 1.0,
            "scale_max": 3.0,
            "queries_per_patch": 64,
        },
        "train": {"iterations": 3, "log_every": 1},
        "checkpoint": {"every": 2, "keep_last": 2},
        "validation": {"every": 1000},
    }
    for section, values in sections.items():
        options[section] = {**options.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / "options.yml"
    path.write_text(yaml.safe_dump(options))
    return path


def run_in_process(path: Path, *overrides: str, auto_resume: bool = False) -> Trainer:
    trainer = Trainer(load_config(path, list(overrides)), auto_resume=auto_resume)
    trainer.run()
    return trainer


def test_net_stage_trains_checkpoints_and_releases_ema(tmp_path):
    trainer = run_in_process(options_file(tmp_path))
    run_dir = trainer.dir
    assert sorted(p.name for p in (run_dir / "states").iterdir()) == ["iter_00000002", "iter_00000003"]
    model = realciao.load_generator(run_dir / "net_g_ema.safetensors")
    assert model.config["encoder_args"] == {"channels": 8, "num_blocks": 1}
    assert (run_dir / "models" / "net_g_iter_00000003.safetensors").is_file()
    with pytest.raises(TrainingError, match="already holds checkpoints.*--auto-resume"):
        Trainer(load_config(options_file(tmp_path)))


def test_net_stage_with_the_real_esrgan_recipe(tmp_path):
    path = options_file(
        tmp_path,
        data={"recipe": "realesrgan", "lr_patch": 16, "scale_min": 2.0, "scale_max": 4.0, "pool_size": 4},
    )
    trainer = run_in_process(path, "train.iterations=2", "checkpoint.every=2")
    assert len(trainer.pool) > 0


def test_gan_stage_from_official_generator_and_real_esrgan_discriminator(tmp_path):
    from realciao.compat import import_basicsr

    torch.manual_seed(3)
    generator = realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16])
    save_file(official_state_dict(generator), tmp_path / "official.safetensors")
    discriminator = import_basicsr("archs.discriminator_arch").UNetDiscriminatorSN(3, 8)
    save_file({k: v.contiguous() for k, v in discriminator.state_dict().items()}, tmp_path / "d.safetensors")
    path = options_file(
        tmp_path,
        generator={"pretrained": str(tmp_path / "official.safetensors"), "options": {}},
        train={"stage": "gan", "iterations": 2},
        losses={"vgg_weights": str(fake_vgg19_file(tmp_path / "vgg19.pth"))},
        discriminator={"channels": 8, "pretrained": str(tmp_path / "d.safetensors")},
    )
    trainer = run_in_process(path)
    tuned = realciao.load_generator(trainer.dir / "models" / "net_g_iter_00000002.safetensors")
    before = generator.state_dict()["upsampler.imnet_q.layers.2.weight"]
    assert not torch.equal(tuned.state_dict()["upsampler.imnet_q.layers.2.weight"], before)


def test_gan_stage_without_vgg_weights_is_a_clear_error(tmp_path):
    from realciao.train.config import ConfigError
    from realciao.train.losses import WeightsMissingError

    path = options_file(tmp_path, train={"stage": "gan"}, losses={"vgg_weights": str(tmp_path / "vgg19.pth")})
    with pytest.raises(ConfigError, match=r"options.yml: losses.vgg_weights: .*vgg19.pth: no such file"):
        load_config(path)  # at load, before any work
    with pytest.raises(WeightsMissingError, match="vgg19.pth: file not found"):
        Trainer(load_config(path, check_files=False))  # the trainer's own check, for options made in code


def test_non_finite_losses_stop_with_a_clear_message(tmp_path, capsys):
    generator = realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16])
    with torch.no_grad():
        generator.upsampler.imnet_q.linears[-1].bias.fill_(float("nan"))
    realciao.save_generator(generator, tmp_path / "nan.safetensors")
    path = options_file(
        tmp_path,
        generator={"pretrained": str(tmp_path / "nan.safetensors"), "options": {}},
        train={"max_bad_steps": 2, "iterations": 5},
        losses={"charbonnier_weight": 0.5},
    )
    with pytest.raises(
        TrainingError,
        match=r"NaN or infinite for 2 iterations in a row at iteration 2 "
        r"\(rank 0: charbonnier, l1\)",
    ):
        run_in_process(path)
    out = capsys.readouterr().out
    assert (
        "iteration 1: non-finite loss (rank 0: charbonnier, l1), step skipped (1 in a row, stopping at 2)"
        in out
    )
    log = (tmp_path / "experiments" / "run" / "train.log").read_text()
    assert "error: the loss was NaN or infinite for 2 iterations in a row at iteration 2 (rank 0" in log


# --- train.log, trackers, threads and precision -----------------------------------------------------


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_log_holds_the_run_facts_and_every_printed_line(tmp_path, capsys, keep_threads):
    import accelerate

    path = options_file(tmp_path, train={"threads": 1})
    (tmp_path / "hr" / "broken.png").write_bytes(b"not a png")
    before = sys.stdout, sys.stderr
    trainer = run_in_process(path)
    assert (sys.stdout, sys.stderr) == before  # the streams are given back
    printed = capsys.readouterr()
    log = (trainer.dir / "train.log").read_text()
    header = [
        f"versions: realciao {realciao.__version__}, torch {torch.__version__}, accelerate {accelerate.__version__}",
        "device: cpu (",
        "world size: 1",
        "options:",
        "    batch_size: 2",
        "threads: 1 (asked for with the threads option)",
        "precision: fp32",
        "skipping unreadable training image",
        "broken.png",
        "rank 0: generator weights fingerprint",
        "done: release weights (EMA) at",
    ]
    assert all(line in log for line in header), log
    assert torch.get_num_threads() == 1
    for line in (printed.out + printed.err).split("\n"):
        shown = line.rsplit("\r", 1)[-1].strip()
        assert not shown or shown in log, (
            shown
        )  # every line the run printed (the progress bar: its last state)
    # a resumed session appends its own header
    run_in_process(path, "train.iterations=4", auto_resume=True)
    log = (trainer.dir / "train.log").read_text()
    assert log.count(" started ===") == 1 and log.count(" resumed ===") == 1
    assert "resumed from" in log.split(" resumed ===")[1]


@pytest.mark.parametrize("fp32,bf16,expected", [(1.0, 0.5, "bf16"), (1.0, 1.5, "fp32")])
def test_auto_precision_is_the_faster_measured_printed_once_and_kept_on_resume(
    tmp_path, capsys, keep_threads, monkeypatch, fp32, bf16, expected
):
    from realciao import autoprecision

    monkeypatch.setattr(autoprecision, "cpu_runs_bf16_natively", lambda: True)
    monkeypatch.setenv(autoprecision.CACHE_ENV, str(tmp_path / "precision.json"))
    timed = []
    monkeypatch.setattr(
        autoprecision,
        "time_probe",
        lambda probe, p: timed.append(probe.what) or {"fp32": fp32, "bf16": bf16}[p],
    )
    path = options_file(tmp_path, train={"mixed_precision": "auto", "iterations": 1})
    trainer = run_in_process(path)
    assert trainer.precision == expected and len(timed) == 2 and timed[0].startswith("train, model ")
    out = capsys.readouterr().out
    assert out.count(f"precision: {expected} (auto, measured: fp32 1000 ms, bf16 {bf16 * 1000:.0f} ms") == 1
    assert out.count("threads: ") == 1
    # resumed: the run's own precision, whatever a measurement would say now
    monkeypatch.setattr(autoprecision, "time_probe", lambda probe, p: {"fp32": bf16, "bf16": fp32}[p])
    resumed = run_in_process(path, "train.iterations=2", auto_resume=True)
    assert resumed.precision == expected
    assert f"precision: {expected} (auto, as the run being resumed)" in capsys.readouterr().out


def test_fp16_on_the_cpu_is_refused_in_one_line(tmp_path, keep_threads):
    from realciao.errors import RealciaoError

    with pytest.raises(RealciaoError, match="fp16 runs only on CUDA"):
        Trainer(load_config(options_file(tmp_path, train={"mixed_precision": "fp16"})))


def test_validation_images_and_metrics_reach_tensorboard(tmp_path, keep_threads):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = options_file(
        tmp_path,
        train={"iterations": 2},
        validation={
            "every": 2,
            "hr_folder": str(tmp_path / "hr"),
            "scales": [2],
            "tile": 0,
            "max_images": 1,
            "save_images": 1,
        },
    )
    trainer = run_in_process(path)
    run_dir = trainer.dir / "logs" / "run"  # beside it, add_hparams writes the options in a folder of its own
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    assert "val/psnr_x2" in accumulator.Tags()["scalars"] and "train/l1" in accumulator.Tags()["scalars"]
    (image_tag,) = accumulator.Tags()["images"]
    assert image_tag.startswith("val/x2_")
    image = accumulator.Images(image_tag)[0]
    assert (image.height, image.width, image.step) == (72, 80, 2)


def test_trackers_get_images_in_their_own_form():
    from types import SimpleNamespace

    from realciao.train.validation import log_images

    calls = {}

    def tracker(name):
        return SimpleNamespace(
            name=name, log_images=lambda values, step: calls.setdefault(name, (values, step))
        )

    image = torch.rand(3, 4, 5)
    log_images([tracker("tensorboard"), tracker("wandb")], {"val/a": image}, step=7)
    tensorboard, step = calls["tensorboard"]
    assert step == 7 and torch.equal(tensorboard["val/a"], image[None])
    (wandb_image,) = calls["wandb"][0]["val/a"]
    assert wandb_image.shape == (4, 5, 3) and wandb_image.dtype == np.uint8


def test_no_trackers_at_all(tmp_path, keep_threads):
    trainer = run_in_process(options_file(tmp_path, train={"iterations": 1}, logging={"trackers": []}))
    assert not (trainer.dir / "logs").exists()


# --- Charbonnier and LDL in both stages; real pairs in the GAN stage ---------------------------------


def test_net_stage_with_charbonnier_and_ldl_on_windows_of_pixels(tmp_path, keep_threads):
    path = options_file(
        tmp_path, losses={"charbonnier_weight": 0.5, "ldl_weight": 1.0}, data={"queries_per_patch": 36}
    )
    trainer = Trainer(load_config(path))
    picks, window = sample_queries(
        2, 10, 12, 36, trainer.losses.needs_images, torch.Generator().manual_seed(0)
    )
    assert window == (6, 6) and picks.shape == (2, 36)
    rows, cols = picks // 12, picks % 12
    assert all(
        len(set(r.tolist())) == 6 and len(set(c.tolist())) == 6 for r, c in zip(rows, cols)
    )  # one square
    batches = trainer._loader(0, 3)
    logs = [trainer.train_iteration(batches) for _ in range(3)]
    assert all(
        set(entry) == {"l1", "charbonnier", "ldl"} and all(np.isfinite(list(entry.values())))
        for entry in logs
    )
    assert logs[0]["ldl"] == 0  # the EMA starts as the model: no pixel is worse than it
    assert logs[-1]["ldl"] > 0
    trainer.close()


def write_real_pairs(tmp_path: Path, ratios=((2.0, 2.0), (2.5, 2.5))) -> tuple[Path, Path]:
    lr_dir, hr_dir = tmp_path / "pairs_lr", tmp_path / "pairs_hr"
    lr_dir.mkdir(exist_ok=True)
    hr_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    for i, (ratio_h, ratio_w) in enumerate(ratios):
        hr = cv2.GaussianBlur(
            rng.integers(0, 256, (round(24 * ratio_h), round(28 * ratio_w), 3), dtype=np.uint8), (0, 0), 2
        )
        cv2.imwrite(str(hr_dir / f"{i}.png"), hr)
        cv2.imwrite(str(lr_dir / f"{i}.png"), cv2.resize(hr, (28, 24), interpolation=cv2.INTER_AREA))
    return lr_dir, hr_dir


def test_gan_stage_with_charbonnier_ldl_and_real_pairs_whose_gt_is_no_multiple_of_8(tmp_path, keep_threads):
    lr_dir, hr_dir = write_real_pairs(tmp_path, ratios=((2.5, 2.5),))
    path = options_file(
        tmp_path,
        data={"paired_lr_folder": str(lr_dir), "paired_hr_folder": str(hr_dir), "paired_probability": 1.0},
        train={"stage": "gan"},
        losses={"perceptual_weight": 0.0, "charbonnier_weight": 1.0, "ldl_weight": 1.0},
        discriminator={"channels": 8},
    )
    trainer = Trainer(load_config(path))
    batches = trainer._loader(0, 2)
    logs = [trainer.train_iteration(batches) for _ in range(2)]
    assert all(set(e) == {"l1", "charbonnier", "ldl", "gan", "d_real", "d_fake"} for e in logs)
    assert all(np.isfinite(list(e.values())).all() for e in logs)
    gt = next(trainer._loader(0, 1))["gt"]
    assert gt.shape[-2:] == (20, 20)  # the LR patch's area at x2.5, not rounded to 24
    assert discriminator_view(gt).shape[-2:] == (16, 16)
    trainer.close()


def launch(args: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        args, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def crashing(point: str, script: list[str]) -> list[str]:
    """``script`` (python train_realciao.py ARGS) killed, or paused, at ``point`` (POINT:ITERATION[:SECONDS])
    by tests/crash_run.py."""
    return [sys.executable, "-m", "tests.crash_run", point, "--", *script[2:]]


def final_weights(run_dir: Path, iteration: int) -> dict[str, torch.Tensor]:
    name = f"iter_{iteration:08d}"
    return {
        **load_file(run_dir / "models" / f"net_g_{name}.safetensors"),
        **{f"ema.{k}": v for k, v in load_file(run_dir / "models" / f"net_g_ema_{name}.safetensors").items()},
    }


def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path):
    iterations = 40
    path = options_file(
        tmp_path,
        data={"lr_patch": 12, "batch_size": 4, "pool_size": 8},
        train={"iterations": iterations},
        checkpoint={"every": 5, "keep_last": 3},
    )
    script = [sys.executable, "train_realciao.py", "-opt", str(path)]
    whole = launch([*script, "--set", "name=whole"])
    assert whole.wait(timeout=600) == 0, whole.stdout.read()

    killed = launch([*script, "--set", "name=killed"])
    states = tmp_path / "experiments" / "killed" / "states"
    deadline = time.time() + 300
    while not (states / "iter_00000005").is_dir() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    reached = max(int(p.name[5:]) for p in states.glob("iter_*"))
    assert reached < iterations, "the run finished before it could be killed: make it longer"

    resumed = launch([*script, "--set", "name=killed", "--auto-resume"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"resumed from {states / f'iter_{reached:08d}'}" in output
    a = final_weights(tmp_path / "experiments" / "whole", iterations)
    b = final_weights(tmp_path / "experiments" / "killed", iterations)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, worst


@pytest.mark.slow
def test_two_cpu_processes_train_together(tmp_path):
    path = options_file(tmp_path, train={"iterations": 4})
    env = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    process = launch(
        [
            "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "train_realciao.py", "-opt", str(path),
        ],
        env=env,
    )
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    prints = dict(re.findall(r"rank (\d): generator weights fingerprint (\w+)", output))
    assert set(prints) == {"0", "1"} and prints["0"] == prints["1"], output
    run_dir = tmp_path / "experiments" / "run"
    assert sorted(p.name for p in (run_dir / "states").iterdir()) == ["iter_00000002", "iter_00000004"]
    assert {p.name for p in (run_dir / "states" / "iter_00000004").glob("rank_*")} == {
        "rank_0.safetensors", "rank_1.safetensors",
    }
    assert len(list((run_dir / "models").glob("net_g_iter_*.safetensors"))) == 2


# --- reliability: what survives a kill, what is refused --------------------------------------------

CRASH_ITERATIONS = 20


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run that every interrupted-and-resumed run must end equal to."""
    tmp_path = tmp_path_factory.mktemp("reference")
    path = options_file(
        tmp_path, data={"lr_patch": 12, "batch_size": 4, "pool_size": 8},
        train={"iterations": CRASH_ITERATIONS}, checkpoint={"every": 5, "keep_last": 2},
    )
    done = launch([sys.executable, "train_realciao.py", "-opt", str(path), "--set", "name=whole"])
    assert done.wait(timeout=600) == 0, done.stdout.read()
    return path, tmp_path / "experiments" / "whole"


def release_and_final(run_dir: Path) -> dict[str, torch.Tensor]:
    weights = final_weights(run_dir, CRASH_ITERATIONS)
    return {**weights, **{f"release.{k}": v for k, v in load_file(run_dir / "net_g_ema.safetensors").items()}}


def assert_same_run(a: Path, b: Path) -> None:
    first, second = release_and_final(a), release_and_final(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), "the resumed run is not bitwise equal"


@pytest.mark.parametrize(
    "point,iteration",
    [
        ("inside-temporary", 10),  # rank files not written yet, no manifest
        ("before-rename", 10),  # complete in .tmp-iter_00000010, not yet published
        ("prune", 5),  # deleting iter_00000005 while publishing iter_00000015
        ("release", CRASH_ITERATIONS),  # writing net_g_ema.safetensors at the end
    ],
)
def test_a_kill_at_each_point_then_auto_resume_ends_bitwise_equal(tmp_path, reference, point, iteration):
    path, whole = reference
    name = f"killed_{point}"
    script = [
        sys.executable, "train_realciao.py", "-opt", str(path), "--set",
        f"name={name}",
        "--set",
        f"output_dir={tmp_path}",
    ]
    killed = launch(crashing(f"{point}:{iteration}", script))
    assert killed.wait(timeout=600) == -signal.SIGKILL, killed.stdout.read()
    run_dir = tmp_path / name
    if point == "release":
        assert (
            list(run_dir.glob(".net_g_ema.safetensors.*.tmp"))
            and not (run_dir / "net_g_ema.safetensors").exists()
        )
    resumed = launch([*script, "--auto-resume"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert not list(run_dir.glob(".*.tmp")) and not list((run_dir / "states").glob(".tmp-*"))
    assert_same_run(whole, run_dir)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    path, whole = reference
    script = [
        sys.executable, "train_realciao.py", "-opt", str(path), "--set",
        "name=damaged",
        "--set",
        f"output_dir={tmp_path}",
    ]
    killed = launch(crashing("before-rename:15", script))
    assert killed.wait(timeout=600) == -signal.SIGKILL
    states = tmp_path / "damaged" / "states"
    (states / "iter_00000010" / "optimizer_g.safetensors").write_bytes(b"")  # an empty optimizer file
    resumed = launch([*script, "--auto-resume"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "skipping a damaged checkpoint" in output and "optimizer_g.safetensors: 0 bytes" in output
    assert f"resumed from {states / 'iter_00000005'}" in output
    assert "Traceback" not in output
    assert_same_run(whole, tmp_path / "damaged")


def test_a_second_run_into_the_same_experiment_is_refused_and_the_first_stays_exact(tmp_path, reference):
    path, whole = reference
    overrides = ["name=busy", f"output_dir={tmp_path}"]
    script = [
        sys.executable,
        "train_realciao.py",
        "-opt",
        str(path),
        *[a for o in overrides for a in ("--set", o)],
    ]
    first = launch(crashing("inside-temporary:5:20", script))  # holds the folder a while
    states = tmp_path / "busy" / "states"
    deadline = time.time() + 300
    while not list(states.glob(".tmp-iter_00000005/*")) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    with pytest.raises(TrainingError, match=rf"another training run \(PID {first.pid}\) is writing"):
        Trainer(load_config(path, overrides), auto_resume=True)
    second = launch([*script, "--auto-resume"])
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 2 and f"PID {first.pid}" in output and "Traceback" not in output, output
    assert first.wait(timeout=600) == 0
    assert_same_run(whole, tmp_path / "busy")


def test_resume_with_changed_plan_options_is_refused_unless_allowed(tmp_path):
    path = options_file(tmp_path, train={"iterations": 4})
    run_in_process(path)
    with pytest.raises(TrainingError, match=r"data\.batch_size: 2 -> 3.*--allow-changed-options"):
        Trainer(load_config(path, ["data.batch_size=3", "train.iterations=6"]), auto_resume=True)
    with pytest.raises(TrainingError, match=r"generator\.options"):
        Trainer(
            load_config(path, ["generator.options={channels: 12, num_blocks: 1, mlp_hidden: [16]}"]),
            auto_resume=True,
        )
    trainer = Trainer(
        load_config(path, ["data.batch_size=3", "train.iterations=6"]),
        auto_resume=True,
        allow_changed_options=True,
    )
    trainer.run()
    assert "data.batch_size: 2 -> 3" in (trainer.dir / "option_changes.log").read_text()
    # options that do not change the model or the data plan may change freely
    run = Trainer(
        load_config(path, ["train.iterations=7", "data.batch_size=3", "train.optimizer.lr=0.0005"]),
        auto_resume=True,
    )
    run.run()


def test_resume_with_albumentations_and_real_pairs_ends_bitwise_equal(tmp_path):
    """Every albumentations draw comes from the sample's seed: a run killed while writing a
    checkpoint and resumed ends with the uninterrupted run's weights, bit for bit, with a saved
    pipeline on HR crops and on both images of real pairs at two ratios, read by a worker process."""
    import albumentations as A

    iterations = 10
    pipeline_file = tmp_path / "augment.yml"
    A.save(
        A.Compose(
            [
                A.RandomBrightnessContrast(p=0.5),
                A.HueSaturationValue(p=0.5),
                A.GaussNoise(p=0.3),
                A.OneOf([A.Blur(blur_limit=3), A.Sharpen()], p=0.5),
                A.HorizontalFlip(),
            ]
        ),
        str(pipeline_file),
        data_format="yaml",
    )
    lr_dir, hr_dir = write_real_pairs(tmp_path)
    path = options_file(
        tmp_path,
        data={
            "lr_patch": 12,
            "batch_size": 4,
            "pool_size": 8,
            "augment": str(pipeline_file),
            "paired_lr_folder": str(lr_dir),
            "paired_hr_folder": str(hr_dir),
            "paired_probability": 0.5,
            "num_workers": 1,
        },
        train={"iterations": iterations},
        checkpoint={"every": 5, "keep_last": 2},
    )
    script = [sys.executable, "train_realciao.py", "-opt", str(path)]
    whole = launch([*script, "--set", "name=whole"])
    killed = launch(crashing("before-rename:10", [*script, "--set", "name=killed"]))
    assert whole.wait(timeout=600) == 0, whole.stdout.read()
    assert killed.wait(timeout=600) == -signal.SIGKILL, killed.stdout.read()
    resumed = launch([*script, "--set", "name=killed", "--auto-resume"])
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    states = tmp_path / "experiments" / "killed" / "states"
    assert f"resumed from {states / 'iter_00000005'}" in output
    a = final_weights(tmp_path / "experiments" / "whole", iterations)
    b = final_weights(tmp_path / "experiments" / "killed", iterations)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (
        "the resumed run is not bitwise equal"
    )
    # the pipeline file is part of the data plan: edited in place, it stops a resume
    A.save(A.Compose([A.HorizontalFlip()]), str(pipeline_file), data_format="yaml")
    with pytest.raises(TrainingError, match=r"augment file content \(sha256\)"):
        Trainer(load_config(path, ["name=killed", "train.iterations=12"]), auto_resume=True)
