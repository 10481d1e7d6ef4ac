"""BasicSR-style LMDB training data, written with basicsr's own ``LmdbMaker``.

The folder holds ``data.mdb``/``lock.mdb`` and ``meta_info.txt``, one line per image in
BasicSR's format ``KEY.png (H,W,C) LEVEL``; a value is the image as a PNG that OpenCV
decodes to the pixels ``cv2.imread(..., IMREAD_UNCHANGED)`` gives (BGR, 16 bits kept), so
BasicSR's ``FileClient('lmdb')`` + ``imfrombytes`` and realciao's ``data.lmdb`` both read
it. The key is the image's path below its folder without the suffix (BasicSR's scripts use
the file name without ``.png``, the same for a flat folder of PNGs). For paired data the LR
images go into a second LMDB under the same keys (BasicSR's layout: one LMDB per folder).

Resumable: entries are committed in batches; ``meta_info.txt``, which readers need, is
written (atomically) only when every entry is in, so a killed build is never mistaken for
a finished one, and ``--resume`` adds what is missing.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from realciao.compat import import_basicsr
from realciao.files import atomic_write
from realciao.imageio import opencv_layout, png_header, png_params, read_image
from realciao.prepare.runner import (
    PrepareError,
    RunSummary,
    TaskResult,
    check_png_settings,
    claim_output_folder,
    keyed_images,
    match_pairs,
    read_guarded,
    run_tasks,
)

META_INFO = "meta_info.txt"
MAP_SIZE = 1 << 40  # address space LMDB may grow into (LmdbMaker's default); the file grows as needed
PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels


@dataclass(frozen=True)
class LmdbEntry:
    """One key and its files: the GT, and the LR for paired data."""

    key: str
    gt: Path
    lr: Path | None = None


@dataclass(frozen=True)
class LmdbSettings:
    png_level: int = 1  # BasicSR's default compress_level
    png_filters: str = "fast"  # basicsr's make_lmdb_from_imgs: "all" (same pixels; imageio.PNG_FILTERS)
    batch: int = 500  # entries per commit: what a killed run can lose


def plan_entries(images: Sequence[tuple[Path, Path]], lr_images: Sequence[tuple[Path, Path]] | None = None
                 ) -> tuple[list[LmdbEntry], list[str]]:
    """Entries keyed by path below their folder without the suffix, and a note per image left
    out: a key that is not ASCII (LMDB keys here are ASCII, as BasicSR encodes them), a GT
    without LR or an LR without GT."""
    if lr_images is None:
        entries, notes = [LmdbEntry(key, path) for key, path in keyed_images(images).items()], []
    else:
        pairs, notes = match_pairs(images, lr_images)
        entries = [LmdbEntry(key, gt, lr) for key, gt, lr in pairs]
    notes += [f"skipped {entry.gt}: LMDB keys must be ASCII, got {entry.key!r}" for entry in entries if not entry.key.isascii()]
    return [entry for entry in entries if entry.key.isascii()], notes


def encode(path: Path, level: int, filters: str) -> tuple[bytes, tuple[int, int, int]]:
    """A PNG that OpenCV decodes to what it reads from ``path``, and its (h, w, c)."""
    pixels = opencv_layout(read_image(path).pixels)
    ok, data = cv2.imencode(".png", pixels, png_params(level, filters))
    if not ok:
        raise PrepareError(f"{path}: OpenCV could not encode it as PNG")
    height, width = pixels.shape[:2]
    return data.tobytes(), (height, width, 1 if pixels.ndim == 2 else pixels.shape[2])


def encode_entry(entry: LmdbEntry, level: int, filters: str) -> TaskResult:
    """values: (key, [(png, shape) of the GT, and of the LR for pairs])."""

    def work() -> TaskResult:
        values = [encode(entry.gt, level, filters)]
        if entry.lr is not None:
            values.append(encode(entry.lr, level, filters))  # an unreadable LR skips the pair, named in the note
        return TaskResult(entry.gt, (entry.key, values))

    return read_guarded(entry.gt, work)


def png_shape(data: bytes) -> tuple[int, int, int]:
    """(h, w, c) of a stored PNG from its header, as meta_info.txt records it."""
    header = png_header(data)
    if header is None:
        raise PrepareError("an LMDB value is not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return height, width, PNG_CHANNELS.get(header[1], 3)


def meta_line(key: str, shape: tuple[int, int, int], level: int) -> str:
    """One line of BasicSR's meta_info.txt."""
    return f"{key}.png ({shape[0]},{shape[1]},{shape[2]}) {level}"


class _Maker:
    """basicsr's ``LmdbMaker`` (its ``put`` and ``close``), opened on a new or existing LMDB:
    the stock constructor exits the process when the folder exists, which resuming needs."""

    def __new__(cls, path: Path, settings: LmdbSettings):
        import lmdb

        maker_class = import_basicsr("utils.lmdb_util").LmdbMaker
        maker = maker_class.__new__(maker_class)
        maker.lmdb_path, maker.batch, maker.compress_level = str(path), settings.batch, settings.png_level
        maker.env = lmdb.open(str(path), map_size=MAP_SIZE)
        maker.txn = maker.env.begin(write=True)
        maker.txt_file = io.StringIO()  # meta_info.txt is written whole at the end, in input order
        maker.counter = 0
        return maker


def stored_shapes(path: Path) -> dict[str, tuple[int, int, int]]:
    """Keys already committed in an LMDB (a resumed build) and their shapes."""
    import lmdb

    if not (path / "data.mdb").is_file():
        return {}
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {key.decode("ascii"): png_shape(bytes(value)) for key, value in txn.cursor()}
    finally:
        env.close()


def claim_lmdb(path: Path, overwrite: bool, resume: bool) -> None:
    if path.suffix != ".lmdb":
        raise PrepareError(f"{path}: an LMDB folder's name must end in .lmdb (BasicSR's readers require it)")
    claim_output_folder(path, overwrite, resume)


def build_lmdb(entries: list[LmdbEntry], output: Path, settings: LmdbSettings, workers: int,
               lr_output: Path | None = None, progress: bool = True) -> RunSummary:
    """Write every entry's GT (and LR) into ``output`` (and ``lr_output``), then meta_info.txt."""
    check_png_settings(settings.png_level, settings.png_filters)
    outputs = [output] + ([lr_output] if lr_output is not None else [])
    for path in outputs:  # not complete until this build ends
        (path / META_INFO).unlink(missing_ok=True)
    shapes = [stored_shapes(path) for path in outputs]
    done = set.intersection(*(set(s) for s in shapes))
    makers = [_Maker(path, settings) for path in outputs]

    def consume(result: TaskResult) -> TaskResult:
        if result.skipped:
            return result
        key, encoded = result.values
        for maker, path, known, (data, shape) in zip(makers, outputs, shapes, encoded):
            try:
                maker.put(data, key, shape)
            except Exception as error:  # lmdb.Error: a full disk or map; the message names the LMDB
                raise PrepareError(f"{path}: cannot write key {key!r} ({error}); the LMDB is incomplete (no "
                                   f"{META_INFO}): free space and rerun with --resume") from error
            known[key] = shape
        return TaskResult(result.source, key, result.notes)

    todo = [entry for entry in entries if entry.key not in done]
    try:
        encode_one = functools.partial(encode_entry, level=settings.png_level, filters=settings.png_filters)
        summary = run_tasks(encode_one, todo, workers, "lmdb", progress, consume)
    finally:
        for maker in makers:
            _close(maker)
    stored = set.intersection(*(set(s) for s in shapes))
    for path, known in zip(outputs, shapes):
        lines = [meta_line(e.key, known[e.key], settings.png_level) for e in entries if e.key in stored]
        atomic_write(path / META_INFO, ("\n".join(lines) + "\n").encode() if lines else b"")
    return summary


def _close(maker) -> None:
    try:
        maker.close()
    except Exception:  # noqa: BLE001 - closing after a failed write: the committed batches stay
        maker.env.close()
