"""A quality screen for ground truth: JPEG-compressed, noisy, blurry or tiny "HR" images teach
a model to keep artefacts, so they are named and kept out of the training set.

Every measurement is ``realciao.fitting.measure``'s (the ones recipe fitting matches):
- JPEG quality from the file's quantisation tables (IJG scale, the closest quality for a
  camera's own tables), and the 8 x 8 blockiness of the pixels (a PNG that was once a JPEG);
- noise: ``noise_sigma`` per colour channel, at full and half size (2 x 2 means), keeping
  the part that halves like white noise does: fine texture, which reads as noise at full
  size, keeps its level at half size (natural images are about scale invariant), so
  sigma_white^2 = 4/3 (n_full^2 - n_half^2). On the shipped training photos the plain
  estimate reads up to 17 levels on clean textured images; this one up to 8.4, while
  Gaussian noise of sigma 25 reads 21-26;
- blur: ``blur_sigma`` of the strongest edges (sharp photos 0.5-0.8 px).
Defaults were set on ``../shared/data/train_hr`` (291 clean images): none of them is rejected.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from realciao.files import atomic_write
from realciao.fitting.measure import blur_sigma, fit_jpeg_quality, jpeg_blockiness, noise_sigma
from realciao.fitting.samples import jpeg_tables
from realciao.html_page import escape, write_page
from realciao.imageio import array_to_pil, read_image, to_float_rgb
from realciao.prepare.runner import PrepareError, RunSummary, TaskResult, read_guarded, run_tasks


@dataclass(frozen=True)
class Thresholds:
    """An image is rejected when any measurement crosses its threshold (NaN: not measured)."""

    min_jpeg_quality: float = 70.0  # IJG quality from the tables
    max_blockiness: float = 1.6  # from the pixels; clean images 1.0-1.5, JPEG quality 15 about 1.4-2.5
    max_noise: float = 10.0  # white noise, 8-bit levels, per channel
    max_blur: float = 2.0  # px
    min_side: int = 64  # px


@dataclass(frozen=True)
class ImageQuality:
    path: str
    width: int
    height: int
    jpeg_quality: float
    jpeg_blockiness: float
    noise_sigma: float
    blur_sigma: float
    verdict: str = "keep"
    reasons: str = ""


COLUMNS = [field.name for field in fields(ImageQuality)]


def white_noise_sigma(image: np.ndarray) -> float:
    """The white part of the noise, in 8-bit levels: the largest over the colour channels of
    sqrt(4/3 (n_full^2 - n_half^2)), with n the ``noise_sigma`` of the channel at full size and
    after 2 x 2 averaging (which halves white noise and keeps scale-invariant texture)."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    half = cv2.resize(image[:height, :width], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    half = half[..., None] if half.ndim == 2 else half
    levels = []
    for channel in range(image.shape[2]):
        full_level = noise_sigma(np.ascontiguousarray(image[..., channel]))
        half_level = noise_sigma(np.ascontiguousarray(half[..., channel]))
        levels.append(math.sqrt(max(full_level**2 - half_level**2, 0.0) * 4 / 3))
    return max(levels)


def verdict(quality: ImageQuality, limits: Thresholds) -> ImageQuality:
    reasons = []
    if min(quality.width, quality.height) < limits.min_side:
        reasons.append(f"smaller than {limits.min_side} px")
    if quality.jpeg_quality < limits.min_jpeg_quality:
        reasons.append(f"JPEG quality {quality.jpeg_quality:g} < {limits.min_jpeg_quality:g}")
    if quality.jpeg_blockiness > limits.max_blockiness:
        reasons.append(f"JPEG blockiness {quality.jpeg_blockiness:.2f} > {limits.max_blockiness:g}")
    if quality.noise_sigma > limits.max_noise:
        reasons.append(f"noise {quality.noise_sigma:.1f} > {limits.max_noise:g} levels")
    if quality.blur_sigma > limits.max_blur:
        reasons.append(f"blur {quality.blur_sigma:.2f} > {limits.max_blur:g} px")
    return ImageQuality(
        **{**quality.__dict__, "verdict": "reject" if reasons else "keep", "reasons": "; ".join(reasons)}
    )


def measure_file(path: Path, limits: Thresholds) -> TaskResult:
    """values: the file's ``ImageQuality`` with its verdict."""

    def work() -> TaskResult:
        image = to_float_rgb(read_image(path).pixels)
        tables = jpeg_tables(path)
        quality = ImageQuality(
            str(path),
            image.shape[1],
            image.shape[0],
            fit_jpeg_quality(tables).quality if tables is not None else math.nan,
            jpeg_blockiness(image),
            white_noise_sigma(image),
            blur_sigma(image),
        )
        return TaskResult(path, verdict(quality, limits))

    return read_guarded(path, work)


def read_report(path: Path) -> dict[str, ImageQuality]:
    """Rows of an earlier report (a resumed check), by path."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {row["path"]: _row(row) for row in rows}
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise PrepareError(
            f"{path}: cannot resume from this report ({error}); pass --overwrite to start again"
        ) from error


def _row(row: dict[str, str]) -> ImageQuality:
    numbers = {
        name: float(row[name]) for name in ("jpeg_quality", "jpeg_blockiness", "noise_sigma", "blur_sigma")
    }
    return ImageQuality(
        row["path"],
        int(row["width"]),
        int(row["height"]),
        **numbers,
        verdict=row["verdict"],
        reasons=row["reasons"],
    )


def write_report(path: Path, rows: Sequence[ImageQuality]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([f"{v:.4g}" if isinstance(v, float) else v for v in row.__dict__.values()])
    atomic_write(path, buffer.getvalue().encode())


def thumbnail(path: Path, side: int = 256) -> str:
    """A JPEG thumbnail as a data URL (the page stands alone)."""
    import base64

    image = array_to_pil((to_float_rgb(read_image(path).pixels) * 255).round().astype(np.uint8))
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


STYLE = "figure{display:inline-block;width:270px;vertical-align:top;margin:6px}img{max-width:256px}"


def write_html(folder: Path, rows: Sequence[ImageQuality], limits: Thresholds) -> Path:
    """``folder/index.html``: every rejected image with its measurements and why."""
    rejected = [row for row in rows if row.verdict == "reject"]
    items = [
        f'<figure><img src="{escape(thumbnail(Path(row.path)))}" alt=""><figcaption><b>{escape(row.path)}</b><br>'
        f"{row.width}x{row.height}; {escape(row.reasons)}</figcaption></figure>"
        for row in rejected
    ]
    limits_text = ", ".join(f"{field.name} {getattr(limits, field.name):g}" for field in fields(limits))
    heading = (
        f"<h1>GT check: {len(rejected)} of {len(rows)} rejected</h1><p>Thresholds: {escape(limits_text)}</p>"
    )
    return write_page(folder / "index.html", "GT check", STYLE, [heading, *items])


def move_rejects(rows: Sequence[ImageQuality], folders: Sequence[tuple[Path, Path]], target: Path) -> int:
    """Move rejected files into ``target``, keeping their path below their input folder."""
    origin = {str(path): folder for path, folder in folders}
    moved = 0
    for row in rows:
        source = Path(row.path)
        if row.verdict != "reject" or not source.is_file():
            continue
        destination = target / source.relative_to(origin.get(row.path, source.parent))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), destination)
        moved += 1
    return moved


def check_images(
    images: list[tuple[Path, Path]],
    limits: Thresholds,
    workers: int,
    done: dict[str, ImageQuality],
    progress: bool = True,
) -> tuple[list[ImageQuality], RunSummary]:
    """Measure the images not in ``done`` (an earlier report) and give every row in input order."""
    todo = [path for path, _ in images if str(path) not in done]
    summary = run_tasks(functools.partial(measure_file, limits=limits), todo, workers, "check", progress)
    measured = {str(result.source): result.values for result in summary.done}
    rows = [verdict(done[str(p)], limits) if str(p) in done else measured.get(str(p)) for p, _ in images]
    return [row for row in rows if row is not None], summary
