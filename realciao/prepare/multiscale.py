"""Multiscale ground truth, Real-ESRGAN's way (``generate_multiscale_DF2K.py``): Lanczos
downscales of every HR image by each scale (sizes truncated: ``int(width * scale)``), plus
one whose shortest edge is ``shortest`` pixels (the other side ``int(shortest * ratio)``),
named ``NAMET0.png``, ``NAMET1.png``, ... in that order. Downscaled GT keeps textures at
several sizes in the training set. 8-bit images go through Pillow's Lanczos as in the
script; 16-bit images are resized per channel in float with the same filter, so they stay
16-bit. Images are read upright (EXIF orientation applied), which the script does not do.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from realciao.imageio import array_to_pil, pil_to_array, read_image, upright_size, write_image
from realciao.prepare.runner import (
    PrepareError,
    RunSummary,
    TaskResult,
    keyed_images,
    read_guarded,
    run_tasks,
)


@dataclass(frozen=True)
class MultiscaleSettings:
    scales: tuple[float, ...] = (0.75, 0.5, 1 / 3)
    shortest: int | None = 400  # None: no shortest-edge version
    png_level: int | None = None


def target_sizes(height: int, width: int, settings: MultiscaleSettings) -> list[tuple[int, int]]:
    """(width, height) of each output, in naming order."""
    sizes = [(int(width * scale), int(height * scale)) for scale in settings.scales]
    if settings.shortest is not None:
        if width < height:
            sizes.append((settings.shortest, int(settings.shortest * (height / width))))
        else:
            sizes.append((int(settings.shortest * (width / height)), settings.shortest))
    return sizes


def lanczos(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's Lanczos resize to (width, height); 16-bit per channel in float."""
    if pixels.dtype == np.uint8:
        return pil_to_array(array_to_pil(pixels).resize(size, resample=Image.LANCZOS))
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    out = np.stack([np.asarray(Image.fromarray(planes[..., c].astype(np.float32)).resize(size, Image.LANCZOS))
                    for c in range(planes.shape[2])], axis=2)
    if pixels.dtype == np.uint16:
        out = np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    else:
        out = np.clip(out, 0, 1)
    return out[..., 0] if pixels.ndim == 2 else out


def output_paths(source: Path, folder: Path, output: Path, count: int) -> list[Path]:
    relative = source.relative_to(folder)
    return [output / relative.parent / f"{relative.stem}T{index}.png" for index in range(count)]


def scale_image(item: tuple[Path, Path], output: Path, settings: MultiscaleSettings) -> TaskResult:
    """Write the missing downscales of one image; values: how many it has."""
    source, folder = item
    try:
        planned = output_paths(source, folder, output, len(target_sizes(*upright_size(source), settings)))
    except Exception:  # noqa: BLE001 - any decoder failure: decided when the pixels are read
        planned = []
    if planned and all(path.is_file() for path in planned):
        return TaskResult(source, len(planned))
    return read_guarded(source, functools.partial(_scale, source, folder, output, settings))


def _scale(source: Path, folder: Path, output: Path, settings: MultiscaleSettings) -> TaskResult:
    pixels = read_image(source).pixels
    sizes = target_sizes(*pixels.shape[:2], settings)
    notes = []
    for path, size in zip(output_paths(source, folder, output, len(sizes)), sizes):
        if path.is_file():
            continue
        if min(size) < 1:
            notes.append(f"{source}: {pixels.shape[1]}x{pixels.shape[0]} gives an empty {size[0]}x{size[1]} image; "
                         f"{path.name} not written")
            continue
        try:
            write_image(path, lanczos(pixels, size), png_level=settings.png_level)
        except OSError as error:
            raise PrepareError(f"{path}: cannot write ({error.strerror or error})") from error
    return TaskResult(source, len(sizes), tuple(notes))


def check_settings(settings: MultiscaleSettings) -> None:
    bad = [s for s in settings.scales if not 0 < s <= 1]
    if bad:
        raise PrepareError(f"--scales must lie in (0, 1], got {', '.join(f'{s:g}' for s in bad)}")
    if settings.shortest is not None and settings.shortest < 1:
        raise PrepareError(f"--shortest must be at least 1, got {settings.shortest}")
    if not settings.scales and settings.shortest is None:
        raise PrepareError("nothing to write: give --scales or --shortest")


def make_multiscale(images: list[tuple[Path, Path]], output: Path, settings: MultiscaleSettings, workers: int,
                    progress: bool = True) -> RunSummary:
    check_settings(settings)
    keyed_images(images)  # two inputs named alike would write the same files
    task = functools.partial(scale_image, output=output, settings=settings)
    return run_tasks(task, images, workers, "multiscale", progress)
