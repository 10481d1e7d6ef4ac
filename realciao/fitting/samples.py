"""The two sets a fit compares: patches of the user's photos, and LR patches a recipe makes.

Both are measured the same way (``measure.measure_image``) on patches of the same size, so
that a measurement's spread from content and from its own estimation noise is alike on the
two sides and only the degradation differs. A photo gives up to ``patches_per_photo``
patches on a grid (offsets multiples of 8, keeping a JPEG's block grid); a photo smaller
than the patch is measured whole. Synthesised samples are LR patches of the same side made
from random crops (``scale`` x the patch side) of clean HR images, with a fixed seed: every
candidate recipe sees the same crops and the same random numbers (common random numbers),
so two candidates' distances differ by their recipes, not by chance.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from realciao.degradations.pipeline import degrade
from realciao.degradations.sampling import make_generator
from realciao.degradations.specs import Recipe
from realciao.errors import RealciaoError
from realciao.fitting.measure import MEASUREMENTS, measure_image
from realciao.imageio import READ_SUFFIXES, ImageReadError, list_images, read_image, to_float_rgb

LOGGER = logging.getLogger(__name__)
NAMES = tuple(m.name for m in MEASUREMENTS)
DEFAULT_PATCH = 64  # LR side: Real-ESRGAN's training LR patch at x4
DEFAULT_PATCHES_PER_PHOTO = 4
DEFAULT_SAMPLES = 128  # LR patches per candidate: fewer let the search fit the draws rather than the recipe
_JPEG_FORMATS = ("JPEG", "MPO")
_PASS_THROUGH = ("quantize",)  # ops after the last JPEG that leave its blocks (and tables) as they are


class FitError(RealciaoError, ValueError):
    """Inputs a recipe cannot be fitted to (missing or empty folder, nothing readable)."""


@dataclass
class MeasuredSet:
    """One value per patch and measurement (NaN: not measured), and where each patch came from."""

    values: dict[str, np.ndarray]
    sources: list[str]
    patches: list[np.ndarray] = field(default_factory=list)  # uint8 (P, P, 3): a few, for the report
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sources)

    def valid(self, name: str) -> np.ndarray:
        column = self.values[name]
        return column[np.isfinite(column)]


@dataclass
class PhotoSet(MeasuredSet):
    folder: str = ""
    photos: int = 0  # photos measured (files read)
    patch: int = DEFAULT_PATCH  # the patch side they were measured at


def _stack(rows: Sequence[dict[str, float]]) -> dict[str, np.ndarray]:
    return {name: np.asarray([row[name] for row in rows], dtype=np.float64) for name in NAMES}


def as_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- photos
def photo_files(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """Image files in the given folders (recursively) and files; plus a note for every other
    file met in a folder (not an image by its suffix). A missing path or a folder without
    images is a ``FitError``."""
    files: list[Path] = []
    notes: list[str] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = list_images(path)
            images = set(found)
            others = sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and p not in images
            )
            notes += [f"skipped {p}: not an image file ({', '.join(sorted(READ_SUFFIXES))})" for p in others]
            if not found:
                raise FitError(
                    f"photo folder {path} holds no images ({', '.join(sorted(READ_SUFFIXES))}, "
                    "searched recursively)"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FitError(f"{path}: no such photo file or folder")
    return list(dict.fromkeys(files)), notes


def patch_corners(height: int, width: int, patch: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` patch corners spread over the image on a grid, offsets multiples of 8."""
    if min(height, width) < patch:
        return []
    rows = max(1, round(math.sqrt(count * height / width)))
    cols = max(1, count // rows)
    ys = sorted({int(y) // 8 * 8 for y in np.linspace(0, height - patch, rows)})
    xs = sorted({int(x) // 8 * 8 for x in np.linspace(0, width - patch, cols)})
    return [(y, x) for y in ys for x in xs][:count]


def jpeg_tables(path: Path):
    """A JPEG file's quantisation tables (Pillow's dict), or None for other files."""
    from PIL import Image

    with Image.open(path) as file:
        return (
            file.quantization
            if file.format in _JPEG_FORMATS and getattr(file, "quantization", None)
            else None
        )


def measure_photos(
    inputs: Sequence[str | Path] | str | Path,
    patch: int = DEFAULT_PATCH,
    patches_per_photo: int = DEFAULT_PATCHES_PER_PHOTO,
    keep_patches: int = 16,
    on_photo: Callable[[int, int, str], None] | None = None,
) -> PhotoSet:
    """Measure every photo in ``inputs`` (folders, searched recursively, and files).

    Unreadable files and files that are not images are named in ``notes`` and skipped;
    when nothing is left, a ``FitError``. A photo smaller than a measurement needs is
    measured whole, and skipped for that measurement with a note. ``on_photo(done, total,
    name)`` follows progress; each note is logged (a warning) as it comes."""
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files, notes = photo_files(inputs)
    for note in notes:
        LOGGER.warning(note)
    rows: list[dict[str, float]] = []
    sources: list[str] = []
    kept: list[list[np.ndarray]] = []  # per photo, for the report
    per_photo = -(-keep_patches // max(1, len(files)))  # enough to fill the report's rows with few photos
    photos = 0
    for index, path in enumerate(files):
        try:
            image = to_float_rgb(read_image(path).pixels)
            tables = jpeg_tables(path)
        except (ImageReadError, OSError, ValueError) as error:
            note = f"skipped {error}" if str(path) in str(error) else f"skipped {path}: {error}"
            notes.append(note)
            LOGGER.warning(note)
            continue
        finally:
            on_photo and on_photo(index + 1, len(files), path.name)
        photos += 1
        height, width = image.shape[:2]
        corners = patch_corners(height, width, patch, patches_per_photo)
        crops = [image[y : y + patch, x : x + patch] for y, x in corners] or [image]
        if not corners:
            small = [m for m in MEASUREMENTS if min(height, width) < m.min_side]
            if small:
                sides = " or ".join(str(side) for side in sorted({m.min_side for m in small}))
                note = (
                    f"{path}: {width}x{height} is smaller than the {sides} px that "
                    f"{', '.join(m.name for m in small)} need; skipped for those"
                )
                notes.append(note)
                LOGGER.warning(note)
        for crop in crops:
            rows.append(measure_image(crop, tables))
            sources.append(str(path))
        kept.append(report_patches(crops, patch, per_photo))
    label = describe_inputs(inputs)
    if not rows:
        skipped = [note.removeprefix("skipped ") for note in notes if note.startswith("skipped")]
        raise FitError(
            f"no photo could be read from {label}: {len(files)} file(s) skipped ({skipped[0]}"
            f"{f'; and {len(skipped) - 1} more' if len(skipped) > 1 else ''})"
        )
    return PhotoSet(
        _stack(rows),
        sources,
        interleave(kept)[:keep_patches],
        notes,
        folder=label,
        photos=photos,
        patch=patch,
    )


def report_patches(crops: list[np.ndarray], patch: int, count: int) -> list[np.ndarray]:
    """Up to ``count`` whole ``patch``-sized crops of one photo, as uint8, nearest the middle first."""
    whole = [crop for crop in crops if crop.shape[:2] == (patch, patch)]
    middle = (len(whole) - 1) / 2
    order = sorted(range(len(whole)), key=lambda i: abs(i - middle))
    return [as_uint8(whole[i]) for i in order[:count]]


def interleave(groups: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The first item of every group, then the second of every group...: every photo shows
    before any shows twice."""
    longest = max((len(group) for group in groups), default=0)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]


def describe_inputs(inputs: Sequence[str | Path]) -> str:
    """The inputs as a header or report names them: as given, or their count and common folder."""
    if len(inputs) <= 3:
        return ", ".join(str(i) for i in inputs)
    try:
        common = os.path.commonpath([str(Path(i).resolve()) for i in inputs])
    except ValueError:  # different drives
        common = "several folders"
    return f"{len(inputs)} files and folders in {common}"


# ----------------------------------------------------------------------------- HR images
@dataclass
class HRPool:
    """Clean HR images to synthesise from, (H, W, 3) float32 each."""

    names: list[str]
    images: list[np.ndarray]
    notes: list[str] = field(default_factory=list)
    label: str = "built-in photos"


def load_hr(hr: str | Path | None = None, min_side: int = 1) -> HRPool:
    """``hr``: a folder of clean HR images, or None for the built-in photos (scikit-image's,
    no download). Images with a side below ``min_side`` (the HR crop) are skipped with a note."""
    if hr is None or str(hr) == "builtin":
        from realciao.train.data import BUILTIN_TRAIN, builtin_image

        names, images = list(BUILTIN_TRAIN), [builtin_image(name) for name in BUILTIN_TRAIN]
        label, notes = "built-in photos", []
    else:
        folder = Path(hr)
        if not folder.is_dir():
            raise FitError(f"--hr folder {folder} does not exist")
        files = list_images(folder)
        if not files:
            raise FitError(
                f"--hr folder {folder} holds no images ({', '.join(sorted(READ_SUFFIXES))}, "
                "searched recursively)"
            )
        names, images, notes = [], [], []
        for path in files:
            try:
                images.append(to_float_rgb(read_image(path).pixels))
                names.append(str(path))
            except (ImageReadError, OSError, ValueError) as error:
                notes.append(f"skipped {error}" if str(path) in str(error) else f"skipped {path}: {error}")
        label = str(folder)
    big = [i for i, image in enumerate(images) if min(image.shape[:2]) >= min_side]
    for i in sorted(set(range(len(images))) - set(big)):
        h, w = images[i].shape[:2]
        notes.append(f"skipped HR {names[i]}: {w}x{h} is smaller than the {min_side} px crop")
    if not big:
        raise FitError(
            f"no HR image in {label} is at least {min_side} px on each side "
            f"(the crop that makes one LR patch at this scale)"
        )
    return HRPool([names[i] for i in big], [images[i] for i in big], notes, label)


def hr_crops(pool: HRPool, count: int, side: int, seed: int) -> torch.Tensor:
    """(count, 3, side, side) crops: images in turn, corners drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        image = pool.images[index % len(pool.images)]
        height, width = image.shape[:2]
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = image[y : y + side, x : x + side]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops))).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- synthesis
@dataclass(frozen=True)
class SynthesisPlan:
    """What every candidate recipe is evaluated on: the same HR crops, LR size and seed."""

    gt: torch.Tensor  # (N, 3, scale * patch, scale * patch)
    patch: int
    seed: int
    chunk: int = 32


def make_plan(
    pool: HRPool, scale: float, patch: int = DEFAULT_PATCH, samples: int = DEFAULT_SAMPLES, seed: int = 0
) -> SynthesisPlan:
    side = max(patch, round(patch * scale))
    return SynthesisPlan(hr_crops(pool, samples, side, seed), patch, seed)


def final_jpeg_quality(records: list[dict]) -> float:
    """The quality of the sample's JPEG when it is the last op that changed its pixels (what a
    JPEG file's tables would tell); NaN otherwise (a PNG of it would have no tables)."""
    for position in range(len(records) - 1, -1, -1):
        record = records[position]
        if record["kind"] == "jpeg":
            return float(record["quality"])
        if record["kind"] in _PASS_THROUGH:
            continue
        before = records[position - 1]["out_size"] if position else None
        if record["kind"] == "resize" and before is not None and tuple(record["out_size"]) == tuple(before):
            continue  # a resize to the size it already has
        return math.nan
    return math.nan


def synthesise(
    recipe: Recipe, plan: SynthesisPlan, seed_offset: int = 0
) -> tuple[np.ndarray, list[list[dict]]]:
    """LR patches (N, P, P, 3) float32 of ``recipe`` on the plan's crops, and their parameter
    records. The same plan and seed give the same patches."""
    generator = make_generator("cpu", plan.seed + 1_000_003 * seed_offset)
    outputs, records = [], []
    for start in range(0, plan.gt.shape[0], plan.chunk):
        result = degrade(plan.gt[start : start + plan.chunk], recipe, plan.patch, generator)
        outputs.append(result.lq.permute(0, 2, 3, 1).numpy())
        records += result.parameters
    return np.concatenate(outputs), records


def measure_synthetic(
    recipe: Recipe, plan: SynthesisPlan, keep_patches: int = 16, seed_offset: int = 0
) -> MeasuredSet:
    """The measurements of ``recipe``'s LR patches; ``jpeg_quality`` is the final JPEG's
    quality (the synthesised images have no file tables, but their records say it)."""
    lq, records = synthesise(recipe, plan, seed_offset)
    rows = []
    for image, sample in zip(lq, records):
        row = measure_image(image)
        row["jpeg_quality"] = final_jpeg_quality(sample)
        rows.append(row)
    kept = [as_uint8(image) for image in lq[:keep_patches]]
    return MeasuredSet(_stack(rows), [f"{recipe.name}[{i}]" for i in range(len(rows))], kept)
