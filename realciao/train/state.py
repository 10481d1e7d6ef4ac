"""Training checkpoints that nothing can corrupt and nothing can use to run code.

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
run that writes into it, so a second run into the same folder is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from realciao.errors import RealciaoError
from realciao.files import default_file_mode

CHECKPOINT_PATTERN = re.compile(r"^iter_(\d{8})$")
TEMPORARY_PREFIX = ".tmp-"
MANIFEST = "manifest.json"
LOCK_FILE = ".lock"
# test hooks: "POINT:ITERATION" kills the process there (SIGKILL); "POINT:ITERATION:SECONDS" pauses it
CRASH_ENV = "REALCIAO_CRASH_AT"
PAUSE_ENV = "REALCIAO_PAUSE_AT"


class StateError(RealciaoError):
    """A checkpoint or experiment folder that cannot be used; the message names the file."""


def crash_point(point: str, iteration: int) -> None:
    """Where the tests kill a run (``REALCIAO_CRASH_AT=POINT:ITERATION``) to prove what survives,
    or pause it (``REALCIAO_PAUSE_AT=POINT:ITERATION:SECONDS``) to try a second run beside it."""
    if os.environ.get(CRASH_ENV) == f"{point}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(PAUSE_ENV, "").rsplit(":", 1)
    if len(pause) == 2 and pause[0] == f"{point}:{iteration}":
        import time

        time.sleep(float(pause[1]))


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
        raise TypeError(f"cannot store a {type(node).__name__} in a checkpoint (only tensors and plain values)")

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
    found = [(int(m.group(1)), p) for p in states_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name)) and p.is_dir()]
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
        kept = {p for _, p in complete[-max(1, keep_last):]}
        newest = complete[-1][0]
        for iteration, folder in folders:
            if folder in kept or iteration > newest:
                continue
            crash_point("prune", iteration)
            shutil.rmtree(folder, ignore_errors=True)
            for model_file in models_dir.glob(f"*_{checkpoint_name(iteration)}.safetensors"):
                model_file.unlink(missing_ok=True)
    for leftover in states_dir.glob(f"{TEMPORARY_PREFIX}*"):  # from a crash mid-write
        shutil.rmtree(leftover, ignore_errors=True)


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
