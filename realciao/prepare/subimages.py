"""Cutting large training images into overlapping sub-images, so that a data loader decodes
480 x 480 files instead of 2K PNGs.

The crops are BasicSR's and Real-ESRGAN's (``extract_subimages.py``): along each axis the
starts are 0, step, 2 step, ... while a whole crop fits, plus one crop flush with the far
edge when the strip left over is wider than ``thresh_size``; sub-images are numbered
row-major from 1 and named ``NAME_s001.png``. Where the scripts fail (a side shorter than
the crop) the side is kept whole when it is longer than ``thresh_size``, and the image is
skipped otherwise. Differences: the images are read upright (EXIF orientation applied),
sub-images are always PNG (lossless; the scripts re-encode a JPEG as JPEG), a source's
sub-folder is kept, and names are not stripped of ``x2``/``x4``.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from realciao.files import atomic_write
from realciao.imageio import encode_with_opencv, png_is_complete, read_image, upright_size
from realciao.prepare.runner import (
    PrepareError,
    RunSummary,
    TaskResult,
    check_png_settings,
    keyed_images,
    read_guarded,
    run_tasks,
)


@dataclass(frozen=True)
class SubimageSettings:
    crop: int = 480
    step: int = 240
    thresh_size: int = 0
    png_level: int = 3  # BasicSR's scripts write level 3
    png_filters: str = "fast"  # BasicSR's scripts: "all" (same pixels, slower; imageio.PNG_FILTERS)


def crop_starts(length: int, crop: int, step: int, thresh_size: int) -> list[int]:
    """Where crops start along an axis of ``length`` pixels; [] when the side is too short to keep."""
    if length < crop:
        return [0] if length > thresh_size else []
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh_size:
        starts.append(length - crop)
    return starts


def crop_boxes(height: int, width: int, settings: SubimageSettings) -> list[tuple[int, int]]:
    """(top, left) of every sub-image, row-major, in the order they are numbered."""
    rows = crop_starts(height, settings.crop, settings.step, settings.thresh_size)
    columns = crop_starts(width, settings.crop, settings.step, settings.thresh_size)
    return [(top, left) for top in rows for left in columns]


def subimage_path(output: Path, relative: Path, index: int) -> Path:
    return output / relative.parent / f"{relative.stem}_s{index:03d}.png"


def _planned(source: Path, folder: Path, output: Path, settings: SubimageSettings) -> list[Path] | None:
    """The sub-image files of ``source`` from its header; None when the header cannot be read."""
    try:
        height, width = upright_size(source)
    except Exception:  # noqa: BLE001 - any decoder failure: decided when the pixels are read
        return None
    relative = source.relative_to(folder)
    return [subimage_path(output, relative, i + 1) for i in range(len(crop_boxes(height, width, settings)))]


def cut_image(item: tuple[Path, Path], output: Path, settings: SubimageSettings) -> TaskResult:
    """Write the sub-images of one image that are not there yet; values: how many it has."""
    source, folder = item
    started = subimage_path(output, source.relative_to(folder), 1).is_file()  # else no header to read
    planned = _planned(source, folder, output, settings) if started else None
    if planned and all(png_is_complete(path) for path in planned):
        return TaskResult(source, len(planned))
    return read_guarded(source, functools.partial(_cut, source, folder, output, settings))


def _cut(source: Path, folder: Path, output: Path, settings: SubimageSettings) -> TaskResult:
    pixels = read_image(source).pixels
    height, width = pixels.shape[:2]
    boxes = crop_boxes(height, width, settings)
    if not boxes:
        return TaskResult(source, 0, (f"skipped {source}: {width}x{height} is smaller than the {settings.crop} px "
                                      f"crop and not larger than --thresh-size {settings.thresh_size}",), skipped=True)
    relative = source.relative_to(folder)
    # a writer thread syncs each file to disk while the next crop is encoded (both release the
    # GIL); a resumed run trusts only files that end with PNG's IEND chunk
    with ThreadPoolExecutor(1) as writer:
        writes = []
        for index, (top, left) in enumerate(boxes, start=1):
            path = subimage_path(output, relative, index)
            if png_is_complete(path):
                continue  # written by an interrupted run
            crop = pixels[top : top + settings.crop, left : left + settings.crop]
            # OpenCV's PNG encoder: faster than Pillow's, and a crop has no metadata to carry
            data = encode_with_opencv(crop, "png", None, None, settings.png_level, settings.png_filters)
            writes.append((path, writer.submit(atomic_write, path, data)))
        _finish(writes)
    return TaskResult(source, len(boxes))


def _finish(writes: list[tuple[Path, Future]]) -> None:
    """Wait for the writes; the first that failed (a full disk) cancels the rest and is raised."""
    for position, (path, future) in enumerate(writes):
        try:
            future.result()
        except OSError as error:
            for _, later in writes[position + 1 :]:
                later.cancel()
            raise PrepareError(f"{path}: cannot write ({error.strerror or error})") from error


def check_settings(settings: SubimageSettings) -> None:
    if settings.crop < 1 or settings.step < 1:
        raise PrepareError(f"--crop and --step must be at least 1, got {settings.crop} and {settings.step}")
    if settings.thresh_size < 0:
        raise PrepareError(f"--thresh-size must be at least 0, got {settings.thresh_size}")
    check_png_settings(settings.png_level, settings.png_filters)


def extract_subimages(images: list[tuple[Path, Path]], output: Path, settings: SubimageSettings, workers: int,
                      progress: bool = True) -> RunSummary:
    """Sub-images of every (image, folder it was found under) into ``output``, keeping the
    image's path below its folder; images already cut (all their files there) are skipped."""
    check_settings(settings)
    keyed_images(images)  # two inputs named alike would write the same files
    task = functools.partial(cut_image, output=output, settings=settings)
    return run_tasks(task, images, workers, "sub-images", progress)
