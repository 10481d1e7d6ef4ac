"""Training checkpoints: written atomically, the last N kept, the latest found for resume.

A checkpoint is a folder ``states/iter_XXXXXXXX`` written by Accelerate (models,
optimisers, per-rank RNG states, registered objects) plus one ``rank_N.pt`` per process
(data-independent extras that differ per rank, such as the training-pair pool). It is
written under a temporary name and renamed when complete, so a crash mid-write never
replaces a good checkpoint; resume ignores the temporary names.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^iter_(\d{8})$")


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:08d}"


def temporary_dir(states_dir: Path, iteration: int) -> Path:
    return states_dir / f".tmp-{checkpoint_name(iteration)}"


def completed_checkpoints(states_dir: Path) -> list[tuple[int, Path]]:
    if not states_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in states_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(states_dir: Path) -> tuple[int, Path] | None:
    found = completed_checkpoints(states_dir)
    return found[-1] if found else None


def publish(temporary: Path, iteration: int) -> Path:
    final = temporary.parent / checkpoint_name(iteration)
    if final.exists():  # a re-run of the same iteration after a resume: replace it whole
        shutil.rmtree(final)
    temporary.rename(final)
    return final


def prune(states_dir: Path, models_dir: Path, keep_last: int) -> None:
    """Drop all but the newest ``keep_last`` checkpoints and their generator files."""
    found = completed_checkpoints(states_dir)
    for iteration, path in found[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
        for model_file in models_dir.glob(f"*_{checkpoint_name(iteration)}.safetensors"):
            model_file.unlink(missing_ok=True)
    for leftover in states_dir.glob(".tmp-*"):  # from a crash mid-write
        shutil.rmtree(leftover, ignore_errors=True)
