"""A training run's state on disk: its checkpoints, which nothing can corrupt and nothing can
use to run code, the experiment lock, and the checks a start makes (fresh or resumed, the
same plan as the run it resumes).

A checkpoint is a folder ``states/iter_XXXXXXXX``:

- one ``.safetensors`` file per part of the run (generator, EMA, discriminator, each
  optimiser and scheduler, the shared counters) and one per process (``rank_N``: its
  training-pair pool, gradient scalers and RNG state). Tensors are stored as safetensors,
  everything else (optimiser hyper-parameters, scheduler and scaler state, counters) as
  JSON in the file's metadata: reading a checkpoint never unpickles anything;
- ``manifest.json``, written last: every file and its size. A folder is complete only with
  a manifest whose files are all present, of those sizes, and readable.

It is written under ``states/.tmp-iter_XXXXXXXX`` and renamed when complete, so a crash
mid-write never replaces a good checkpoint. Resume takes the newest complete checkpoint and
says which damaged ones it passed over; pruning never deletes the newest complete one.

The experiment folder is locked (``.lock``, an OS lock that dies with its process) by the
run that writes into it, so a second run into the same folder is refused. A resumed run must
have the options that decide the model and the data plan of the run it resumes (recorded in
``options.json`` and ``run.json``), unless the user allows the change (``option_changes.log``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from realciao.checkpoint import save_generator
from realciao.errors import RealciaoError
from realciao.files import TEMPORARY_SUFFIX, default_file_mode, remove_stale, temporary_name
from realciao.train.runlog import get_logger

LOGGER = get_logger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^iter_(\d{8})$")
TEMPORARY_PREFIX = ".tmp-"
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"


class StateError(RealciaoError):
    """A checkpoint or experiment folder that cannot be used; the message names the file."""


class TrainingError(RealciaoError, RuntimeError):
    """Training cannot start or go on (a refused start or resume, losses that stayed
    non-finite); the message says why and what is saved."""


# ---------------------------------------------------------------------------------------
# State trees: nested dicts/lists of tensors and plain values <-> (tensors, JSON)
# ---------------------------------------------------------------------------------------


def flatten(tree: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Tensors of a state tree by name, and the JSON skeleton that refers to them."""
    tensors: dict[str, torch.Tensor] = {}

    def visit(node: Any) -> Any:
        if isinstance(node, torch.Tensor):
            name = str(len(tensors))
            tensors[name] = node.detach().cpu().contiguous().clone()  # safetensors refuses shared storage
            return {"__tensor__": name}
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):
                return {"__map__": {k: visit(v) for k, v in node.items()}}
            return {"__pairs__": [[visit(k), visit(v)] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"__tuple__": [visit(v) for v in node]}
        if isinstance(node, list):
            return [visit(v) for v in node]
        if isinstance(node, float) and not math.isfinite(node):
            return {"__float__": repr(node)}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(
            f"cannot store a {type(node).__name__} in a checkpoint (only tensors and plain values)"
        )

    return tensors, visit(tree)


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__map__" in skeleton:
            return {k: unflatten(v, tensors) for k, v in skeleton["__map__"].items()}
        if "__pairs__" in skeleton:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in skeleton["__pairs__"]}
        if "__tuple__" in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton["__tuple__"])
        if "__float__" in skeleton:
            return float(skeleton["__float__"])
    return skeleton


def save_tree(tree: Any, path: Path) -> None:
    tensors, skeleton = flatten(tree)
    save_file(tensors, str(path), metadata={"realciao.state": json.dumps(skeleton)})
    os.chmod(path, default_file_mode())


def load_tree(path: Path) -> Any:
    try:
        with safe_open(str(path), framework="pt") as handle:
            skeleton = json.loads((handle.metadata() or {})["realciao.state"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors' own error types for damaged files
        raise StateError(f"{path}: not a readable realciao state file ({error})") from error
    return unflatten(skeleton, tensors)


# ---------------------------------------------------------------------------------------
# Checkpoint folders
# ---------------------------------------------------------------------------------------


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:08d}"


def temporary_dir(states_dir: Path, iteration: int) -> Path:
    return states_dir / f"{TEMPORARY_PREFIX}{checkpoint_name(iteration)}"


def checkpoint_folders(states_dir: Path) -> list[tuple[int, Path]]:
    """Published checkpoint folders (temporary ones ignored), oldest first."""
    if not states_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in states_dir.iterdir()
        if (m := CHECKPOINT_PATTERN.match(p.name)) and p.is_dir()
    ]
    return sorted(found)


def write_manifest(folder: Path) -> None:
    """Record every file of a finished checkpoint folder and its size; written last."""
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    path = folder / MANIFEST
    path.write_text(json.dumps({"format": "realciao.checkpoint/1", "files": files}, indent=1))
    os.chmod(path, default_file_mode())


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, naming the file; None when complete."""
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{manifest}: missing or unreadable (the checkpoint was not finished)"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{path}: missing"
        if path.stat().st_size != size:
            return f"{path}: {path.stat().st_size} bytes, the manifest records {size}"
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt") as handle:
                    json.loads((handle.metadata() or {}).get("realciao.state", "null"))
            except Exception as error:
                return f"{path}: unreadable ({error})"
    return None


@dataclass(frozen=True)
class Choice:
    """The checkpoint a resume uses, and the newer ones it passed over (with why)."""

    iteration: int
    path: Path
    skipped: tuple[str, ...] = ()


def latest_complete(states_dir: Path) -> Choice | None:
    skipped = []
    for iteration, folder in reversed(checkpoint_folders(states_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return Choice(iteration, folder, tuple(skipped))
        skipped.append(problem)
    return None


def publish(temporary: Path, iteration: int) -> Path:
    final = temporary.parent / checkpoint_name(iteration)
    if final.exists():  # a re-run of the same iteration after a resume: replace it whole
        shutil.rmtree(final)
    temporary.rename(final)
    return final


def prune(states_dir: Path, models_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints (never fewer than one) and their
    generator files. Older ones go, and so do damaged ones older than the newest complete one;
    while no checkpoint is complete nothing is deleted. Temporary folders go too (the
    experiment lock means no other run is writing them)."""
    folders = checkpoint_folders(states_dir)
    complete = [(i, p) for i, p in folders if checkpoint_problem(p) is None]
    if complete:
        kept = {p for _, p in complete[-max(1, keep_last) :]}
        newest = complete[-1][0]
        for iteration, folder in folders:
            if folder not in kept and iteration <= newest:
                remove_checkpoint(folder, models_dir, iteration)
    for leftover in states_dir.glob(f"{TEMPORARY_PREFIX}*"):  # from a crash mid-write
        shutil.rmtree(leftover, ignore_errors=True)


def remove_checkpoint(folder: Path, models_dir: Path, iteration: int) -> None:
    """A checkpoint folder and the generator files of its iteration."""
    shutil.rmtree(folder, ignore_errors=True)
    for model_file in models_dir.glob(f"*_{checkpoint_name(iteration)}.safetensors"):
        model_file.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# The experiment lock
# ---------------------------------------------------------------------------------------


class ExperimentLock:
    """An exclusive OS lock on ``FOLDER/.lock`` for as long as this object lives: it dies with
    the process (a killed run leaves no stale lock), and the file names the holder's PID."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_FILE
        self._handle = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            _lock(handle)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StateError(
                f"{self.folder}: another training run (PID {holder}) is writing into this experiment folder; "
                f"wait for it to finish or stop it, or choose another name (--set name=...)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the lock
            self._handle = None


def _lock(handle) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        # a POSIX record lock, not flock: it belongs to this process alone, so data-loader
        # workers forked from it do not keep holding it after a kill -9 of the trainer
        fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def lock_experiment(accelerator, folder: Path, stale_in: tuple[Path, ...] = ()) -> ExperimentLock:
    """The main process locks the experiment folder before anything is written (and removes the
    temporary files a killed run left in ``stale_in``); every process stops together when
    another run holds it."""
    lock = ExperimentLock(folder)
    problem = ""
    if accelerator.is_main_process:
        try:
            lock.acquire()
            for stale in stale_in:
                remove_stale(stale)
        except StateError as error:
            problem = str(error)
    problem = agree(accelerator, problem)
    if problem:
        raise TrainingError(problem)
    return lock


def agree(accelerator, message: str) -> str:
    """The main process's message, on every process."""
    if accelerator.num_processes == 1:
        return message
    from accelerate.utils import broadcast_object_list

    box = [message]
    broadcast_object_list(box, from_process=0)
    return box[0]


# ---------------------------------------------------------------------------------------
# A start: fresh or resumed, and the same plan as the run it resumes
# ---------------------------------------------------------------------------------------


def check_fresh_start(folder: Path, auto_resume: bool) -> None:
    """A run into a folder that holds checkpoints must be asked to resume them."""
    folders = checkpoint_folders(folder / "states")
    if folders and not auto_resume:
        raise TrainingError(
            f"{folder} already holds checkpoints (latest {folders[-1][1].name}): pass --auto-resume to continue "
            f"that run, or choose another name (--set name=...)"
        )


def run_facts(config, world: int) -> dict:
    """What decides a run beside its options (``run.json``): the world size and the content of
    the files the options name (a recipe or augment file edited in place changes the plan too)."""
    from realciao.degradations.recipe import resolve_recipe_path

    augment = config.data.augment  # an inline pipeline is in the options already
    return {
        "world_size": world,
        "recipe_sha256": hashlib.sha256(resolve_recipe_path(config.data.recipe).read_bytes()).hexdigest()[
            :16
        ],
        "augment_sha256": hashlib.sha256(Path(augment).read_bytes()).hexdigest()[:16]
        if isinstance(augment, str)
        else None,
    }


def plan_options(options: dict, run: dict, keys: list[str]) -> dict:
    """The values of the plan-deciding ``keys`` (``config.plan_fields``) in an options dump (None
    where it has none), plus the world size and the content of the recipe and augment files."""
    values = {}
    for key in keys:
        node = options
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    values["world size"] = run.get("world_size")
    values["recipe content (sha256)"] = run.get("recipe_sha256")
    values["augment file content (sha256)"] = run.get("augment_sha256")
    return values


def check_plan(accelerator, folder: Path, config, run: dict, allow_changed: bool) -> None:
    """Options that change the model or the data plan (marked ``PLAN`` on the config's type)
    must be those of the checkpointed run; with ``allow_changed`` a change is recorded in
    ``option_changes.log`` instead."""
    from realciao.train.config import plan_fields

    saved_options, saved_run = folder / "options.json", folder / "run.json"
    if not saved_options.is_file():
        return  # nothing was checkpointed yet
    keys = plan_fields(type(config))
    try:
        before = plan_options(
            json.loads(saved_options.read_text()),
            json.loads(saved_run.read_text()) if saved_run.is_file() else {},
            keys,
        )
    except (OSError, ValueError) as error:
        raise TrainingError(
            f"{saved_options}: unreadable ({error}); it records the run being resumed"
        ) from error
    now = plan_options(config.model_dump(), run, keys)
    changed = [
        f"{key}: {before.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key) and key in before
    ]
    if not changed:
        return
    if not allow_changed:
        raise TrainingError(
            f"--auto-resume: options that change the model or the data plan differ from the "
            f"checkpointed run ({'; '.join(changed)}); restore them, or pass "
            f"--allow-changed-options to resume anyway (the change is recorded)"
        )
    if accelerator.is_main_process:
        with open(folder / "option_changes.log", "a") as log:
            log.write(
                f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed with changed options: {'; '.join(changed)}\n"
            )
    LOGGER.info(
        f"resuming with changed options (recorded in {folder / 'option_changes.log'}): {'; '.join(changed)}"
    )


def recorded_precision(folder: Path) -> str | None:
    """The precision the run in ``folder`` trained in (``run.json``), None when unknown."""
    try:
        return json.loads((folder / "run.json").read_text()).get("precision")
    except (OSError, ValueError, AttributeError):
        return None


def write_run_record(folder: Path, config, run: dict) -> None:
    """``options.json`` and ``run.json``: what the next resume checks its plan against."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "options.json").write_text(config.model_dump_json(indent=2))
    (folder / "run.json").write_text(json.dumps(run, indent=2))


# ---------------------------------------------------------------------------------------
# A run's checkpoints: what they hold, writing, resuming, the release weights
# ---------------------------------------------------------------------------------------


class Counters:
    """Progress checkpointed with the models: iteration and bad-step streak."""

    def __init__(self):
        self.iteration = 0
        self.bad_steps = 0

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "bad_steps": self.bad_steps}

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.bad_steps = state["iteration"], state["bad_steps"]


@dataclass
class RunState:
    """What a checkpoint holds. Written once, by the main process: the generator (unwrapped
    from its DDP wrapper), its EMA, the optimisers, the discriminator, the schedulers and the
    counters. Written by every process, its own ``rank_N``: its pair pool, gradient scalers
    and RNG state."""

    generator: torch.nn.Module
    ema: Any
    optimizer_g: torch.optim.Optimizer
    schedulers: list
    counters: Counters
    pool: Any
    scalers: list
    discriminator: torch.nn.Module | None = None
    optimizer_d: torch.optim.Optimizer | None = None

    def shared(self) -> dict[str, Any]:
        """The main process's parts by file name, in the order they are written and read."""
        parts = {"generator": self.generator, "ema": self.ema, "optimizer_g": self.optimizer_g}
        if self.discriminator is not None:
            parts.update(discriminator=self.discriminator, optimizer_d=self.optimizer_d)
        return {**parts, "schedulers": self.schedulers, "counters": self.counters}


def save_checkpoint(accelerator, run: RunState, states_dir: Path, models_dir: Path, keep_last: int) -> None:
    """Checkpoint ``run`` at its iteration: every file under a temporary name, the manifest last,
    then published (and the generator's weights of the iteration beside, in ``models_dir``)."""
    iteration = run.counters.iteration
    temporary = temporary_dir(states_dir, iteration)
    main = accelerator.is_main_process
    accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if main:
        for name, part in run.shared().items():
            state = [p.state_dict() for p in part] if isinstance(part, list) else part.state_dict()
            save_tree(state, temporary / f"{name}.safetensors")
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    own = {"pool": run.pool.state_dict(), "scalers": [s.state_dict() for s in run.scalers], "rng": rng}
    save_tree(own, temporary / f"rank_{accelerator.process_index}.safetensors")
    accelerator.wait_for_everyone()
    if main:
        write_manifest(temporary)
        name = checkpoint_name(iteration)
        save_generator(run.generator, models_dir / f"net_g_{name}.safetensors")
        save_generator(run.ema.module, models_dir / f"net_g_ema_{name}.safetensors")
        publish(temporary, iteration)
        prune(states_dir, models_dir, keep_last)
    accelerator.wait_for_everyone()


def resume(accelerator, run: RunState, states_dir: Path, device: torch.device) -> None:
    """Load the newest complete checkpoint into ``run`` (saying which damaged ones it passed
    over); without one the run starts from scratch."""
    choice = latest_complete(states_dir)
    damaged = (
        choice.skipped
        if choice
        else [p for _, f in checkpoint_folders(states_dir) if (p := checkpoint_problem(f))]
    )
    for problem in damaged:
        LOGGER.info(f"--auto-resume: skipping a damaged checkpoint: {problem}")
    if choice is None:
        LOGGER.info(f"--auto-resume: no complete checkpoint in {states_dir}, starting from scratch")
        return
    path = choice.path
    for name, part in run.shared().items():
        state = load_tree(path / f"{name}.safetensors")
        for one, one_state in zip(part, state) if isinstance(part, list) else [(part, state)]:
            one.load_state_dict(one_state)
    own = path / f"rank_{accelerator.process_index}.safetensors"
    if not own.is_file():
        raise TrainingError(
            f"{own}: missing; the checkpoint was written by {len(list(path.glob('rank_*')))} "
            f"process(es), this run has {accelerator.num_processes}"
        )
    extras = load_tree(own)
    run.pool.load_state_dict(extras["pool"], device)
    for scaler, scaler_state in zip(run.scalers, extras["scalers"]):
        scaler.load_state_dict(scaler_state)
    torch.set_rng_state(extras["rng"]["torch"])
    if torch.cuda.is_available() and extras["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(extras["rng"]["cuda"])
    LOGGER.info(f"resumed from {path} (iteration {run.counters.iteration})")


def write_release(model: torch.nn.Module, path: Path) -> Path:
    """The release weights: written beside, then renamed, so a kill leaves a hidden .tmp file
    (removed at the next start), never a half-written release."""
    pending = path.with_name(f"{temporary_name(path)}release{TEMPORARY_SUFFIX}")
    save_generator(model, pending)
    os.replace(pending, path)
    return path
