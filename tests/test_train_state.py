"""realciao.train.state: checkpoint folders (publish, prune, temporaries, manifests), state
trees stored without pickle, and the experiment lock."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Annotated

import pytest
import torch
from pydantic import Field

from realciao.train.config import PLAN, TrainConfig, plan_fields
from realciao.train.state import (
    ExperimentLock,
    StateError,
    TrainingError,
    check_plan,
    checkpoint_folders,
    checkpoint_problem,
    latest_complete,
    load_tree,
    prune,
    publish,
    save_tree,
    temporary_dir,
    write_manifest,
    write_run_record,
)
from realciao.typed import Typed
from tests.crafted import RunsCode


def make_checkpoint(states, iteration: int, publish_it: bool = True):
    folder = temporary_dir(states, iteration)
    folder.mkdir(parents=True)
    save_tree({"weight": torch.full((3,), float(iteration))}, folder / "generator.safetensors")
    write_manifest(folder)
    return publish(folder, iteration) if publish_it else folder


def test_state_trees_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tree = {"optimizer": optimizer.state_dict(), "odd": {1: "int key", "inf": math.inf, "t": (1, 2.5, None)}}
    save_tree(tree, tmp_path / "s.safetensors")
    back = load_tree(tmp_path / "s.safetensors")
    assert back["odd"] == {1: "int key", "inf": math.inf, "t": (1, 2.5, None)}
    fresh = torch.optim.AdamW(model.parameters(), lr=0.5)
    fresh.load_state_dict(back["optimizer"])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9) and fresh.param_groups[0]["lr"] == 0.01
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert (tmp_path / "s.safetensors").read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle
    with pytest.raises(TypeError, match="cannot store a object"):
        save_tree({"x": object()}, tmp_path / "bad.safetensors")


def test_a_pickle_in_place_of_a_state_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"pool": RunsCode(marker)}, tmp_path / "rank_0.safetensors")
    with pytest.raises(StateError, match="rank_0.safetensors: not a readable realciao state file"):
        load_tree(tmp_path / "rank_0.safetensors")
    assert not marker.exists()


def test_publish_replaces_and_only_manifested_complete_folders_count(tmp_path):
    states = tmp_path / "states"
    make_checkpoint(states, 5)
    make_checkpoint(states, 10)
    unfinished = temporary_dir(states, 15)
    unfinished.mkdir()
    assert [i for i, _ in checkpoint_folders(states)] == [5, 10]  # temporaries ignored
    assert latest_complete(states).iteration == 10
    make_checkpoint(states, 10)  # a re-run of iteration 10 replaces it whole
    assert [i for i, _ in checkpoint_folders(states)] == [5, 10]


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda f: (f / "generator.safetensors").write_bytes(b""),
            "generator.safetensors: 0 bytes, the manifest records",
        ),
        (lambda f: (f / "generator.safetensors").unlink(), "generator.safetensors: missing"),
        (lambda f: (f / "manifest.json").unlink(), "manifest.json: missing or unreadable"),
        (
            lambda f: (f / "generator.safetensors").write_bytes(
                b"x" * (f / "generator.safetensors").stat().st_size
            ),
            "generator.safetensors: unreadable",
        ),
    ],
)
def test_damage_is_found_and_the_previous_complete_checkpoint_is_chosen(tmp_path, damage, message):
    states = tmp_path / "states"
    make_checkpoint(states, 5)
    latest = make_checkpoint(states, 10)
    damage(latest)
    assert message in checkpoint_problem(latest)
    choice = latest_complete(states)
    assert choice.iteration == 5 and len(choice.skipped) == 1 and message in choice.skipped[0]


def test_prune_keeps_the_newest_complete_and_never_the_only_one(tmp_path):
    states, models = tmp_path / "states", tmp_path / "models"
    models.mkdir()
    for iteration in (5, 10, 15):
        make_checkpoint(states, iteration)
        (models / f"net_g_iter_{iteration:08d}.safetensors").write_bytes(b"g")
    (states / "iter_00000015" / "generator.safetensors").write_bytes(b"")  # the newest is damaged
    temporary_dir(states, 20).mkdir()
    prune(states, models, keep_last=1)
    # 10 is the newest complete: kept with its model file; the damaged newer one is kept for inspection
    assert [i for i, _ in checkpoint_folders(states)] == [10, 15]
    assert sorted(p.name for p in models.iterdir()) == [
        "net_g_iter_00000010.safetensors",
        "net_g_iter_00000015.safetensors",
    ]
    assert not list(states.glob(".tmp-*"))
    only_damaged = tmp_path / "alone"
    make_checkpoint(only_damaged, 5)
    (only_damaged / "iter_00000005" / "manifest.json").unlink()
    prune(only_damaged, models, keep_last=1)
    assert [i for i, _ in checkpoint_folders(only_damaged)] == [5]  # nothing complete: nothing deleted


def test_the_lock_refuses_a_second_holder_and_names_the_pid(tmp_path):
    first = ExperimentLock(tmp_path / "run")
    first.acquire()
    holder = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; from realciao.train.state import ExperimentLock, StateError\n"
                f"try: ExperimentLock(Path({str(tmp_path / 'run')!r})).acquire()\n"
                "except StateError as e: print(e); sys.exit(3)\n"
            ),
        ],
        capture_output=True,
        text=True,
    )
    assert holder.returncode == 3 and f"PID {os.getpid()}" in holder.stdout
    first.release()
    again = ExperimentLock(tmp_path / "run")
    again.acquire()  # released: free again
    again.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import time; from pathlib import Path; from realciao.train.state import ExperimentLock\n"
                f"lock = ExperimentLock(Path({str(folder)!r})); lock.acquire(); print('locked', flush=True); time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(StateError, match=f"PID {child.pid}"):
        ExperimentLock(folder).acquire()
    child.kill()
    child.wait()
    time.sleep(0.1)
    lock = ExperimentLock(folder)
    lock.acquire()  # the OS dropped the dead process's lock
    lock.release()


def test_a_killed_holder_with_a_forked_child_still_running_leaves_no_lock(tmp_path):
    """Data-loader workers are forked from the trainer; they outlive a kill -9 of it for a
    few seconds and must not keep the experiment locked meanwhile."""
    folder = tmp_path / "run"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import os, time; from pathlib import Path; from realciao.train.state import ExperimentLock\n"
                f"lock = ExperimentLock(Path({str(folder)!r})); lock.acquire()\n"
                "worker = os.fork()\n"
                "if worker == 0: time.sleep(30); os._exit(0)\n"
                "print(worker, flush=True); time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(child.stdout.readline())
    try:
        child.kill()
        child.wait()
        time.sleep(0.1)
        os.kill(worker, 0)  # the forked child is still alive
        lock = ExperimentLock(folder)
        lock.acquire()
        lock.release()
    finally:
        os.kill(worker, signal.SIGKILL)


# --- the options that decide the plan: marked on the typed config, checked on resume ------------------

# the string list of config fields trainer.py kept before the fields were marked (PLAN_KEYS)
PREVIOUSLY_LISTED = (
    "seed",
    "generator.name",
    "generator.options",
    "generator.pretrained",
    "data.hr_folders",
    "data.builtin_samples",
    "data.meta_info",
    "data.lmdb",
    "data.paired_lr_folder",
    "data.paired_hr_folder",
    "data.paired_probability",
    "data.paired_scale",
    "data.lr_patch",
    "data.scale_min",
    "data.scale_max",
    "data.per_axis_scale",
    "data.batch_size",
    "data.hflip",
    "data.rotate",
    "data.augment",
    "data.paired_max_shift",
    "data.recipe",
    "data.pool_size",
    "data.queries_per_patch",
    "train.stage",
    "train.grad_accumulation",
    "discriminator.channels",
    "discriminator.skip_connection",
)
# marked since: where an rrdb-ciaosr starts and which of its parts train, at which rate
MARKED_SINCE = ("generator.encoder_weights", "train.freeze", "train.encoder_lr")
MAIN_PROCESS = SimpleNamespace(is_main_process=True)  # what check_plan asks of the accelerator
RUN = {"world_size": 1, "recipe_sha256": "0123456789abcdef", "augment_sha256": None}


class Inner(Typed):
    marked: Annotated[int, PLAN] = 1
    free: int = 2


class Outer(Typed):
    inner: Inner = Field(default_factory=Inner)
    top: Annotated[str, PLAN] = "a"


class RenamedConfig(TrainConfig):
    """A plan option under a name the recorded run does not have (renamed, or new)."""

    crop_seed: Annotated[int, PLAN] = 7


def config(model=TrainConfig, **data):
    return model.model_validate({"data": {"builtin_samples": True, "batch_size": 2, **data}})


def test_every_previously_listed_plan_option_is_marked_on_the_config():
    assert set(plan_fields(TrainConfig)) == set(PREVIOUSLY_LISTED + MARKED_SINCE)
    assert len(plan_fields(TrainConfig)) == len(PREVIOUSLY_LISTED + MARKED_SINCE)


def test_marked_fields_are_found_at_any_depth_and_unmarked_ones_left_out():
    assert plan_fields(Outer) == ["inner.marked", "top"]


def test_a_changed_marked_option_refuses_the_resume_by_its_name_and_an_unmarked_one_does_not(tmp_path):
    write_run_record(tmp_path, config(), RUN)
    with pytest.raises(TrainingError, match=r"data\.batch_size: 2 -> 3.*--allow-changed-options"):
        check_plan(MAIN_PROCESS, tmp_path, config(batch_size=3), RUN, allow_changed=False)
    check_plan(
        MAIN_PROCESS, tmp_path, config(num_workers=2), RUN, allow_changed=False
    )  # not marked: free to change
    assert not (tmp_path / "option_changes.log").exists()


def test_a_marked_option_the_recorded_run_lacks_refuses_the_resume_by_its_name(tmp_path):
    write_run_record(tmp_path, config(), RUN)
    with pytest.raises(TrainingError, match=r"crop_seed: None -> 7"):
        check_plan(MAIN_PROCESS, tmp_path, config(RenamedConfig), RUN, allow_changed=False)
