"""What every preparation step shares: finding the inputs, claiming the output, and running
one task per input over several processes with a progress bar.

A task is a picklable function of one input that returns a ``TaskResult``; an unreadable
input is a note (one line, the input skipped), while a ``PrepareError`` (a full disk, an
output that cannot be written) stops the run. Outputs are written atomically, so a killed
run leaves finished files and nothing half-written; ``--resume`` then skips what is done.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realciao.devices import available_cores
from realciao.errors import RealciaoError
from realciao.files import remove_stale
from realciao.imageio import READ_SUFFIXES, ImageReadError, is_image_file, list_images

LOGGER = logging.getLogger(__name__)


class PrepareError(RealciaoError):
    """Bad input or an output that cannot be written; the message names the file or folder."""


@dataclass(frozen=True)
class TaskResult:
    """What one input gave: values for the caller (sizes, measurements), notes to print."""

    source: Path
    values: Any = None
    notes: tuple[str, ...] = ()
    skipped: bool = False  # unreadable: nothing was written for it


@dataclass
class RunSummary:
    results: list[TaskResult] = field(default_factory=list)

    @property
    def done(self) -> list[TaskResult]:
        return [r for r in self.results if not r.skipped]

    @property
    def skipped(self) -> list[TaskResult]:
        return [r for r in self.results if r.skipped]


def skipped(source: Path, error: Exception) -> TaskResult:
    """The result of an input that cannot be read, with one line naming it."""
    text = " ".join(str(error).split())
    line = f"skipped {text}" if str(source) in text else f"skipped {source}: {text}"
    return TaskResult(source, notes=(line,), skipped=True)


def read_guarded(source: Path, work: Callable[[], TaskResult]) -> TaskResult:
    """Run ``work``; a decoding failure of ``source`` becomes a skipped result."""
    try:
        return work()
    except ImageReadError as error:
        return skipped(source, error)


def gather_images(
    inputs: Sequence[str | os.PathLike], recursive: bool = True
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, folder it was found under) for every image in the input folders and files, plus a
    note for each other file met (not an image by its suffix). A missing input or a folder
    without images is a ``PrepareError``."""
    found: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            images = list_images(path, recursive=recursive)
            if not images:
                raise PrepareError(
                    f"{path}: no images ({', '.join(sorted(READ_SUFFIXES))}) found"
                    f"{', searched recursively' if recursive else ''}"
                )
            listed = set(images)
            walk = path.rglob("*") if recursive else path.iterdir()
            notes += [
                f"skipped {p}: not an image file"
                for p in sorted(walk)
                if p.is_file() and not p.name.startswith(".") and p not in listed
            ]
            found += [(image, path) for image in images]
        elif is_image_file(path):
            found.append((path, path.parent))
        elif path.is_file():
            raise PrepareError(f"{path}: not an image file ({', '.join(sorted(READ_SUFFIXES))})")
        else:
            raise PrepareError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found)), notes


def image_key(path: Path, folder: Path) -> str:
    """An image's name in a data set: its path below its folder without the suffix (how paired
    images are matched, and BasicSR's LMDB key for a flat folder of PNGs)."""
    return path.relative_to(folder).with_suffix("").as_posix()


def keyed_images(images: Sequence[tuple[Path, Path]]) -> dict[str, Path]:
    """Images by key; two files with one key (``a.png`` and ``a.jpg``) are a ``PrepareError``."""
    keyed: dict[str, Path] = {}
    for path, folder in images:
        key = image_key(path, folder)
        if key in keyed:
            raise PrepareError(f"{path} and {keyed[key]} have the same name {key!r}; rename one")
        keyed[key] = path
    return keyed


def match_pairs(
    gt: Sequence[tuple[Path, Path]], lr: Sequence[tuple[Path, Path]]
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(key, GT, LR) for images with the same key in both sets, and a note for each without a partner."""
    gt_keys, lr_keys = keyed_images(gt), keyed_images(lr)
    notes = [
        f"skipped {path}: no LR image named {key!r}" for key, path in gt_keys.items() if key not in lr_keys
    ]
    notes += [
        f"skipped {path}: no GT image named {key!r}" for key, path in lr_keys.items() if key not in gt_keys
    ]
    return [(key, path, lr_keys[key]) for key, path in gt_keys.items() if key in lr_keys], notes


def claim_output_folder(folder: Path, overwrite: bool, resume: bool) -> None:
    """Create ``folder``; an existing non-empty one is refused unless ``overwrite`` (emptied
    first) or ``resume`` (kept; temporary files a killed run left are removed)."""
    if overwrite and resume:
        raise PrepareError("--overwrite and --resume exclude each other")
    if folder.exists() and not folder.is_dir():
        raise PrepareError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if overwrite:
            shutil.rmtree(folder)
        elif resume:
            for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
                remove_stale(sub)
        else:
            raise PrepareError(
                f"{folder}: exists and is not empty; pass --resume to continue an interrupted run "
                "or --overwrite to start again"
            )
    folder.mkdir(parents=True, exist_ok=True)


def check_png_settings(level: int, filters: str) -> None:
    """``--png-level`` and ``--png-filters`` as the steps that write PNGs take them."""
    from realciao.imageio import PNG_FILTERS

    if not 0 <= level <= 9:
        raise PrepareError(f"--png-level must be 0 to 9, got {level}")
    if filters not in PNG_FILTERS:
        raise PrepareError(f"--png-filters must be one of {', '.join(PNG_FILTERS)}, got {filters!r}")


def default_workers() -> int:
    return available_cores()


def run_tasks(
    task: Callable[[Any], TaskResult],
    items: Sequence[Any],
    workers: int,
    description: str,
    progress: bool = True,
    consume: Callable[[TaskResult], TaskResult] | None = None,
) -> RunSummary:
    """``task(item)`` for every item, in ``workers`` processes (in this one for 1), with a progress
    bar; each note is logged (a warning) as it comes. ``consume`` takes each result in this process as it
    arrives (to write it) and returns what to keep. Results come back in the items' order."""
    from tqdm import tqdm

    summary = RunSummary()
    by_item: dict[int, TaskResult] = {}
    with tqdm(total=len(items), desc=description, unit="image", disable=not progress, file=sys.stderr) as bar:
        for index, result in _results(task, items, workers):
            if consume is not None:
                result = consume(result)
            by_item[index] = result
            for note in result.notes:
                LOGGER.warning(note)
            bar.set_postfix_str(result.source.name, refresh=False)
            bar.update(1)
    summary.results = [by_item[i] for i in range(len(items))]
    return summary


def _indexed(task: Callable[[Any], TaskResult], pair: tuple[int, Any]) -> tuple[int, TaskResult]:
    return pair[0], task(pair[1])


def _results(
    task: Callable[[Any], TaskResult], items: Sequence[Any], workers: int
) -> Iterator[tuple[int, TaskResult]]:
    import functools

    indexed: Iterable[tuple[int, Any]] = list(enumerate(items))
    if workers <= 1 or len(items) <= 1:
        yield from (_indexed(task, pair) for pair in indexed)
        return
    with multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(
        min(workers, len(items))
    ) as pool:
        try:
            yield from pool.imap_unordered(functools.partial(_indexed, task), indexed, chunksize=1)
        except BaseException:
            pool.terminate()  # a fatal error or Ctrl-C: stop the other workers mid-file (writes are atomic)
            raise
