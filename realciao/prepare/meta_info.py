"""Meta-info lists: which images a training set holds, one per line, relative to a root.

A line is ``RELATIVE/PATH.png (H,W,C)``: BasicSR's and Real-ESRGAN's datasets read the
first word of each line, and realciao's ``data.meta_info`` does the same (paths relative to
``data.hr_folders[0]``, so the root here is the folder given there). Paired lists are
Real-ESRGAN's ``GT_PATH, LQ_PATH`` lines (``RealESRGANPairedDataset``). Every image is
decoded once, as Real-ESRGAN's ``--check`` does, so an unreadable file is named and left out
instead of failing a training run later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from realciao.files import atomic_write
from realciao.imageio import read_image
from realciao.prepare.runner import PrepareError, RunSummary, TaskResult, read_guarded, run_tasks


def default_root(folders: Sequence[Path]) -> Path:
    """The folder itself for one input, their common parent for several."""
    if len(folders) == 1:
        return folders[0]
    return Path(os.path.commonpath([str(f.resolve()) for f in folders]))


def relative_name(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise PrepareError(f"{path} is not inside --root {root}") from None


def image_shape(path: Path) -> TaskResult:
    """values: (h, w, c) of the decoded image."""

    def work() -> TaskResult:
        pixels = read_image(path).pixels
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        return TaskResult(path, (*pixels.shape[:2], channels))

    return read_guarded(path, work)


def write_meta_info(images: Sequence[Path], root: Path, output: Path, workers: int, progress: bool = True,
                    lr_images: Sequence[Path] | None = None, lr_root: Path | None = None) -> RunSummary:
    """Decode each image (and its LR partner, by position) and write the list atomically."""
    names = [relative_name(path, root) for path in images]
    summary = run_tasks(image_shape, list(images) + list(lr_images or []), workers, "meta-info", progress)
    shapes = summary.results[: len(images)]
    if lr_images is None:
        lines = [f"{name} ({h},{w},{c})" for name, result in zip(names, shapes) if not result.skipped
                 for h, w, c in [result.values]]
    else:
        lr_names = [relative_name(path, lr_root or root) for path in lr_images]
        lr_shapes = summary.results[len(images):]
        lines = [f"{gt}, {lr}" for gt, lr, a, b in zip(names, lr_names, shapes, lr_shapes) if not (a.skipped or b.skipped)]
    if not lines:
        raise PrepareError(f"{output}: no readable image to list; nothing written")
    atomic_write(output, ("\n".join(lines) + "\n").encode())
    return summary
