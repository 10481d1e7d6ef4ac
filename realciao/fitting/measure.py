"""Measurements of how degraded an image looks, the building blocks of ``realciao-fit-recipe``.

The command takes the same measurements on a user's photos and on LR images synthesised
with a candidate recipe, and matches them as distributions (1-D Wasserstein per
measurement). So each measurement is a small deterministic function of the pixels, defined
the same way on a 12 MP photo and on a 64 x 64 LR crop, and monotone in the degradation it
tracks; several are statistics rather than physical quantities, which is enough to compare
two sets of images.

Images are numpy arrays, (H, W) grey or (H, W, 3) RGB, float in [0, 1] (uint8 and uint16
are divided by their maximum). Everything but ``chroma_noise`` is measured on luminance
(BT.601 weights for RGB) on the 8-bit scale 0..255. ``measure_image`` takes all of them; a
measurement gets NaN when the image is smaller than its ``Measurement.min_side`` or when it
is undefined there (a flat image has no edges to measure blur on).

Each measurement belongs to a family, the degradation it mostly answers to (``FAMILIES``):
measurements of one family move together, so a check that leaves one out leaves out the
family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from realciao.color import RGB_TO_YCBCR, luma
from realciao.degradations.jpeg import IJG_CHROMA_TABLE, IJG_LUMA_TABLE
from realciao.metrics import brisque

TABLE_ORDERS = ("auto", "natural", "zigzag")


@dataclass(frozen=True)
class Measurement:
    """One key of ``measure_image``'s result."""

    name: str
    family: str  # "jpeg", "noise", "sharpness" or "mscn": what it answers to (``FAMILIES``)
    unit: str
    min_side: int  # smallest image side (px) it is defined on; smaller images get NaN
    description: str


MEASUREMENTS = (
    Measurement(
        "jpeg_quality",
        "jpeg",
        "IJG quality 1..100",
        1,
        "quality that libjpeg would write the file's quantisation tables at; the closest one "
        "for non-IJG (camera) tables; NaN without tables (PNG, synthesised LR)",
    ),
    Measurement(
        "jpeg_blockiness",
        "jpeg",
        "ratio, 1 = no 8x8 grid",
        32,
        "luminance steps across the strongest 8x8 grid over steps inside blocks; rises as JPEG quality falls",
    ),
    Measurement(
        "noise_sigma",
        "noise",
        "8-bit levels",
        16,
        "standard deviation of white noise on luminance (finest diagonal Haar band, "
        "flattest half of the image, sigma-clipped)",
    ),
    Measurement(
        "noise_sigma_flat",
        "noise",
        "8-bit levels",
        16,
        "standard deviation of white noise on luminance from the covariance of 5x5 patches of "
        "weak texture (PCA: the mean of its noise-only eigenvalues)",
    ),
    Measurement(
        "chroma_noise",
        "noise",
        "8-bit levels",
        16,
        "noise on the BT.601 chroma channels Cb and Cr (rms of the two, PCA estimate as "
        "noise_sigma_flat); 0 for grey images, rises with colour noise, not with grey noise",
    ),
    Measurement(
        "blur_sigma",
        "sharpness",
        "pixels",
        32,
        "Gaussian blur of the strongest edges, from how much a re-blur lowers their "
        "gradient; 0.5-0.8 for a sharp photo, rises with blur",
    ),
    Measurement(
        "spectrum_slope",
        "sharpness",
        "log power per log frequency",
        32,
        "slope of the radially averaged log power spectrum at 0.15-0.45 cycles/px: about -2 to -4 "
        "for photos, lower (steeper) with blur, towards 0 with white noise",
    ),
    Measurement(
        "ringing",
        "sharpness",
        "fraction of the edge step",
        32,
        "overshoot beside the strongest step edges (median edge profile): 0 for clean or "
        "Gaussian-blurred steps, rises with sharpening, sinc / Lanczos resizing and JPEG",
    ),
    Measurement(
        "mscn_shape",
        "mscn",
        "GGD shape",
        32,
        "shape of a generalised Gaussian fitted to the MSCN coefficients (BRISQUE's "
        "first feature): 2 = Gaussian; lower (peakier) with blur and JPEG, higher with noise",
    ),
    Measurement(
        "mscn_variance",
        "mscn",
        "MSCN units squared",
        32,
        "mean square of the MSCN coefficients: low for smooth (blurred) images, towards 0.8 for noise",
    ),
    Measurement(
        "mscn_pair_shape",
        "mscn",
        "AGGD shape",
        32,
        "shape of an asymmetric generalised Gaussian fitted to products of horizontally "
        "adjacent MSCN coefficients (BRISQUE's pairwise feature)",
    ),
)


def _families(measurements: tuple[Measurement, ...]) -> dict[str, tuple[str, ...]]:
    families: dict[str, tuple[str, ...]] = {}
    for measurement in measurements:
        families[measurement.family] = families.get(measurement.family, ()) + (measurement.name,)
    return families


# family -> its measurements' names, both in ``MEASUREMENTS`` order
FAMILIES = _families(MEASUREMENTS)
_MIN_SIDE = {measurement.name: measurement.min_side for measurement in MEASUREMENTS}


def _pixels(image: np.ndarray) -> np.ndarray:
    """The image as (H, W) grey or (H, W, 3) RGB floats in [0, 1] (float input keeps its dtype)."""
    array = np.asarray(image)
    if array.dtype.kind == "u":
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    elif array.dtype.kind != "f":
        raise TypeError(f"expected a float image in [0, 1] (or uint8/uint16), got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        return array
    raise ValueError(f"expected an (H, W) grey or (H, W, 3) RGB image, got shape {array.shape}")


def _luminance(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels.astype(np.float32) * np.float32(255)
    return luma(pixels.astype(np.float32, copy=False), 255)


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance on 8-bit levels 0..255: grey as is, RGB with BT.601 weights."""
    return _luminance(_pixels(image))


def _too_small(y: np.ndarray, name: str) -> bool:
    return min(y.shape) < _MIN_SIDE[name]


# ---------------------------------------------------------------------------------------------
# JPEG quality from the file's quantisation tables


@dataclass(frozen=True)
class JpegTableFit:
    """How well libjpeg's quality scaling explains a file's quantisation tables."""

    quality: float  # the exact quality when ``exact``, else the closest (0.1 steps)
    exact: bool  # every entry equals libjpeg's table at this integer quality
    log_error: float  # rms of log(table / IJG table) over all entries: 0 when exact
    order: str  # "natural" or "zigzag": how the tables were read


def _zigzag_positions() -> np.ndarray:
    """Natural (row-major) index of each coefficient in JPEG's zigzag scan."""
    order = []
    for diagonal in range(15):
        rows = range(max(0, diagonal - 7), min(diagonal, 7) + 1)
        order += [row * 8 + diagonal - row for row in (rows if diagonal % 2 else reversed(rows))]
    return np.asarray(order)


ZIGZAG = _zigzag_positions()
# the standard tables (ITU T.81 Annex K) that libjpeg scales, natural order (rows = vertical frequency)
_BASE_TABLES = tuple(np.asarray(table).ravel() for table in (IJG_LUMA_TABLE, IJG_CHROMA_TABLE))
_FINE_QUALITIES = np.arange(10, 1001) / 10.0  # 1.0, 1.1, ... 100.0


def _scale(quality: np.ndarray, integer: bool) -> np.ndarray:
    """libjpeg's jpeg_quality_scaling, in percent (integer division as in C when ``integer``)."""
    low = 5000 // quality if integer else 5000.0 / quality
    return np.where(quality < 50, low, 200 - 2 * quality)


@lru_cache(maxsize=2)
def _ijg_tables(max_entry: int) -> tuple[np.ndarray, np.ndarray]:
    """(100, 64) luma and chroma tables libjpeg writes at qualities 1..100, natural order.

    Entries are clipped to [1, max_entry]: 255 for baseline files (what Pillow, OpenCV and
    most software write), 32767 for 16-bit tables."""
    scale = _scale(np.arange(1, 101), integer=True)[:, None]
    return tuple(np.clip((base[None] * scale + 50) // 100, 1, max_entry) for base in _BASE_TABLES)


@lru_cache(maxsize=2)
def _ijg_log_tables(max_entry: int) -> tuple[np.ndarray, np.ndarray]:
    """log of libjpeg's tables at fractional qualities (``_FINE_QUALITIES``), without rounding."""
    scale = _scale(_FINE_QUALITIES, integer=False)[:, None]
    return tuple(np.log(np.clip(base[None] * scale / 100, 1, max_entry)) for base in _BASE_TABLES)


def _as_tables(quantization_tables) -> list[np.ndarray]:
    """Tables as given by Pillow (dict {0: luma, 1: chroma, ...}) or a list, each 64 entries."""
    if isinstance(quantization_tables, Mapping):
        items = [quantization_tables[key] for key in sorted(quantization_tables)]
    else:
        array = np.asarray(quantization_tables)
        items = [array] if array.ndim == 1 or array.shape == (8, 8) else list(array)
    tables = [np.asarray(item, dtype=np.int64).ravel() for item in items]
    if not 1 <= len(tables) <= 4 or any(table.size != 64 for table in tables):
        sizes = [table.size for table in tables]
        raise ValueError(f"expected 1 to 4 quantisation tables of 64 entries, got sizes {sizes}")
    if any(table.min() < 1 for table in tables):
        raise ValueError("quantisation table entries must be >= 1")
    return tables


def _fit(tables: list[np.ndarray], order: str) -> JpegTableFit:
    """Fit of natural-order ``tables``: table 0 is luma, the others chroma (one quality for all)."""
    max_entry = 255 if max(int(table.max()) for table in tables) <= 255 else 32767
    luma, chroma = _ijg_tables(max_entry)
    match = np.all(luma == tables[0], axis=1)
    for table in tables[1:]:
        match &= np.all(chroma == table, axis=1)
    if match.any():  # libjpeg's tables differ at every quality, so at most one matches
        return JpegTableFit(float(np.argmax(match) + 1), True, 0.0, order)
    log_luma, log_chroma = _ijg_log_tables(max_entry)
    squares = ((log_luma - np.log(tables[0])) ** 2).sum(axis=1)
    for table in tables[1:]:
        squares = squares + ((log_chroma - np.log(table)) ** 2).sum(axis=1)
    best = int(np.argmin(squares))
    log_error = math.sqrt(squares[best] / (64 * len(tables)))
    return JpegTableFit(float(_FINE_QUALITIES[best]), False, float(log_error), order)


def fit_jpeg_quality(quantization_tables, order: str = "auto") -> JpegTableFit:
    """The libjpeg (IJG) quality that explains a JPEG's quantisation tables, and how well.

    ``quantization_tables``: Pillow's ``Image.open(path).quantization`` (a dict: 0 = luma,
    1 (and 2) = chroma), or a list of tables of 64 entries (or 8 x 8). Pillow gives them in
    natural (row-major) order: it de-zigzags the file's DQT segment when reading
    (python-pillow/Pillow#4989, 2021); older Pillow releases and raw DQT bytes give the
    file's zigzag order. ``order="auto"`` tries natural order first, then zigzag, and keeps
    the better fit.

    The tables are IJG-scaled (``exact``) when every entry equals what libjpeg's
    ``jpeg_set_quality`` writes at some integer quality: the standard Annex K tables scaled
    by 5000 / q (q < 50) or 200 - 2 q percent, rounded, clipped to 1..255 (1..32767 for 16-bit
    tables), one quality for luma and chroma. libjpeg writes distinct tables at each quality,
    so an exact fit is unique. Otherwise (a camera's or another encoder's own tables) the
    quality is the closest one in 0.1 steps: the least squares fit of log(table entries)
    by the unrounded scaled tables, i.e. an effective compression strength on the IJG
    scale; ``log_error`` (rms of the log ratios) says how far the tables' shape is from
    Annex K's.
    """
    if order not in TABLE_ORDERS:
        raise ValueError(f"unknown table order {order!r}; expected one of {TABLE_ORDERS}")
    tables = _as_tables(quantization_tables)
    fits = []
    if order in ("auto", "natural"):
        fits.append(_fit(tables, "natural"))
    if order in ("auto", "zigzag"):
        natural = []
        for stream in tables:
            table = np.empty_like(stream)
            table[ZIGZAG] = stream
            natural.append(table)
        fits.append(_fit(natural, "zigzag"))
    return min(fits, key=lambda fit: (not fit.exact, fit.log_error))


def jpeg_quality_from_tables(quantization_tables, closest: bool = False, order: str = "auto") -> float | None:
    """libjpeg quality 1..100 that wrote these quantisation tables (see ``fit_jpeg_quality``).

    Exact (an integer) for files written by libjpeg at a known quality (Pillow, OpenCV,
    ImageMagick, GIMP...). For tables that are not IJG-scaled: None, or with ``closest=True``
    the closest quality (fractional, 0.1 steps)."""
    fit = fit_jpeg_quality(quantization_tables, order)
    return fit.quality if fit.exact or closest else None


# ---------------------------------------------------------------------------------------------
# JPEG blockiness from pixels


def jpeg_blockiness(image: np.ndarray) -> float:
    """JPEG blockiness of the decoded pixels: a statistic, not a quality.

    The mean absolute luminance step between neighbouring pixels across the 8 x 8 block
    grid, over the mean step inside blocks (horizontal and vertical steps pooled). The grid
    phase per axis is the one with the largest steps, so crops of a JPEG still count. About
    1.0-1.05 for images that were never JPEG-compressed (or were resized afterwards, which
    moves the grid off 8 pixels), rising as quality falls (about 1.1 at quality 90 and 2-3 at
    quality 10 on photos; content shifts it). Noise added after compression lowers it.
    Dimensionless, >= 1 (the strongest phase is the grid); NaN below 32 px or for a flat
    image.
    """
    y = luminance(image)
    return math.nan if _too_small(y, "jpeg_blockiness") else _blockiness(y)


def _blockiness(y: np.ndarray) -> float:
    across, inside = 0.0, 0.0
    for axis in (0, 1):
        steps = np.abs(np.diff(y, axis=axis))
        per_line = steps.mean(axis=1 - axis, dtype=np.float64)  # mean step between line i and i + 1
        phases = np.asarray([per_line[phase::8].mean() for phase in range(8)])
        grid = int(np.argmax(phases))
        across += phases[grid]
        inside += (phases.sum() - phases[grid]) / 7
    return float(across / inside) if inside > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Noise

_MAD_TO_SIGMA = 1 / 0.6744897501960817  # 1 / (Gaussian's 75 % quantile)
_CLIP = 3.0  # sigma clipping of the detail coefficients
_CLIPPED_LEVELS = (0.5, 254.5)  # a 2 x 2 block touching these luminance levels is saturated
# E[x^2 | |x| < k sigma] / sigma^2 for a Gaussian: corrects the clipped second moment
_CLIPPED_VARIANCE = 1 - 2 * _CLIP * math.exp(-(_CLIP**2) / 2) / math.sqrt(2 * math.pi) / math.erf(
    _CLIP / math.sqrt(2)
)


def noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of white noise on luminance, in 8-bit levels (0 = no noise).

    A wavelet estimator (Donoho's MAD on the finest diagonal band), made less sensitive to
    image content: the diagonal Haar coefficients (a - b - c + d) / 2 of 2 x 2 blocks carry
    the noise at its own sigma and little of smooth content; only the flattest half of the
    blocks is used (by the gradient of the neighbouring blocks' means, which is independent
    of the coefficient for white noise), and the sigma is the rms of the coefficients within
    3 sigma (from the MAD, refined three times), corrected for the clipping; 2 x 2 blocks
    touching 0 or 255 (saturated, so with less noise) are left out. Within a few percent for
    Gaussian noise of 2-20 levels on smooth images; on photos fine texture reads as noise
    (0.7-1.4 levels on scikit-image's clean photos) and adds to it roughly in quadrature.
    Noise that JPEG, blur or resizing smoothed afterwards, or correlated (demosaiced,
    chroma) noise, reads lower. Colour noise with independent channels of sigma s reads as
    about 0.67 s on luminance. NaN below 16 px or when every block is saturated.
    """
    y = luminance(image)
    return math.nan if _too_small(y, "noise_sigma") else _noise_sigma(y)


def _noise_sigma(y: np.ndarray) -> float:
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    a, b, c, d = y[0:h:2, 0:w:2], y[0:h:2, 1:w:2], y[1:h:2, 0:w:2], y[1:h:2, 1:w:2]
    detail = ((a - b - c + d) / 2)[1:-1, 1:-1]
    mean = (a + b + c + d) / 4
    activity = np.abs(mean[1:-1, 2:] - mean[1:-1, :-2]) + np.abs(mean[2:, 1:-1] - mean[:-2, 1:-1])
    # clipped (saturated) blocks hold less noise than the rest: leave them out
    low, high = np.minimum(np.minimum(a, b), np.minimum(c, d)), np.maximum(np.maximum(a, b), np.maximum(c, d))
    unclipped = ((low > _CLIPPED_LEVELS[0]) & (high < _CLIPPED_LEVELS[1]))[1:-1, 1:-1]
    if not unclipped.any():
        return math.nan
    activity, detail = activity[unclipped], detail[unclipped]
    detail = detail[activity <= np.median(activity)].astype(np.float64)
    squares = detail * detail
    sigma = float(np.median(np.abs(detail))) * _MAD_TO_SIGMA
    for _ in range(3):
        if sigma == 0:
            break
        inliers = squares < (_CLIP * sigma) ** 2
        sigma = math.sqrt(float(squares[inliers].mean()) / _CLIPPED_VARIANCE)
    return sigma


# The PCA estimate: patches of weak texture lie near a few directions of content plus white
# noise, which adds sigma^2 to every eigenvalue of their covariance; the noise-only eigenvalues
# are the smallest ones, spread (Marchenko-Pastur) around sigma^2 with mean sigma^2.
_PCA_PATCH = 5  # px: 25 dimensions, enough above the ~6 that smooth content takes
_PCA_PATCHES = 900  # about this many patches (all channels): the grid step grows with the image
_PCA_QUANTILE_Z = 2.326  # weak texture: gradient energy below what 99 % of pure-noise patches have
_PCA_FLATTEST = 0.25  # and at least this share of the patches, the flattest, when noise is faint


def _weak_texture_factor(side: int, z: float) -> float:
    """Quantile (z standard normal deviates) of the gradient energy of a side x side patch of
    unit white noise. The energy, the sum of the squared horizontal and vertical differences
    inside the patch, is x^T L x with L the grid's graph Laplacian; it is matched to a gamma
    distribution by its mean tr(L) and variance 2 tr(L^2), whose quantile is Wilson and
    Hilferty's."""
    edges = 2 * side * (side - 1)
    inner = max(side - 2, 0)
    degrees_squared = 4 * 2**2 + 4 * inner * 3**2 + inner * inner * 4**2
    trace, trace_squared = 2 * edges, degrees_squared + 2 * edges
    shape, scale = trace * trace / (2 * trace_squared), 2 * trace_squared / trace
    return shape * scale * (1 - 1 / (9 * shape) + z * math.sqrt(1 / (9 * shape))) ** 3


_PCA_WEAK_TEXTURE = _weak_texture_factor(_PCA_PATCH, _PCA_QUANTILE_Z)


def _noise_eigenvalue_mean(eigenvalues: np.ndarray, patch_count: int) -> float:
    """Mean of the noise-only eigenvalues (ascending input) of a covariance of ``patch_count``
    patches. First the largest m smallest ones whose mean is at most their median (Chen, Zhu
    and Heng 2015: content's eigenvalues stand out above the noise's and pull the mean above
    the median); that also drops the top of the noise's own spread, which is skewed, so the
    set is then widened to every eigenvalue below the Marchenko-Pastur edge of noise at that
    mean, sigma^2 (1 + sqrt(dimensions / patches))^2."""
    values = eigenvalues.tolist()  # 25 of them: plain floats beat numpy's per-call cost
    total, mean = 0.0, values[0]  # m = 1 always qualifies
    for count, value in enumerate(values, start=1):
        total += value
        if (values[(count - 1) // 2] + values[count // 2]) / 2 >= total / count:
            mean = total / count
    edge = (1 + math.sqrt(len(values) / patch_count)) ** 2
    for _ in range(2):
        noise = [value for value in values if value <= edge * mean]
        mean = sum(noise) / len(noise) if noise else mean
    return mean


def _patches(channel: np.ndarray, clipped: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """About ``count`` float64 5 x 5 patches of ``channel`` (n, 25), on a grid, less those holding
    a ``clipped`` pixel (saturated: less noise), and the gradient energy inside each."""
    side = _PCA_PATCH
    height, width = channel.shape[0] - side + 1, channel.shape[1] - side + 1
    step = max(1, round(math.sqrt(height * width / count)))
    rows, cols = slice(0, height, step), slice(0, width, step)
    # pooled channels share a centre, and float64 keeps the covariance's small noise terms
    centred = channel.astype(np.float64) - float(channel.mean(dtype=np.float64))
    shifted = [centred[i : i + height, j : j + width][rows, cols] for i in range(side) for j in range(side)]
    patches = np.stack(shifted, axis=-1).reshape(-1, side * side)

    def patch_sums(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # size: (width, height)
        sums = cv2.boxFilter(values, -1, size, anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT)
        return sums[:height, :width][rows, cols].ravel()

    channel = channel.astype(np.float32, copy=False)  # float32 is plenty to rank patches by energy
    energy = patch_sums(np.square(np.diff(channel, axis=1)), (side - 1, side))
    energy += patch_sums(np.square(np.diff(channel, axis=0)), (side, side - 1))
    if not clipped.any():
        return patches, energy
    usable = patch_sums(clipped.astype(np.float32), (side, side)) < 0.5
    return patches[usable], energy[usable]


# OpenBLAS multiplies blocks of this many patches on one thread; the whole (n, 25) product
# wakes its thread pool, which costs 4-30 times the product itself (measured on 2 busy cores)
_GRAM_ROWS = 256


def _noise_variance(patches: np.ndarray) -> float:
    count = patches.shape[0]
    gram = sum(block.T @ block for block in np.split(patches, range(_GRAM_ROWS, count, _GRAM_ROWS)))
    sums = patches.sum(axis=0)
    covariance = (gram - np.outer(sums, sums) / count) / (count - 1)
    return max(_noise_eigenvalue_mean(np.linalg.eigvalsh(covariance), count), 0.0)


def _pca_noise_sigma(channels: tuple[np.ndarray, ...], clipped: np.ndarray) -> float:
    """White noise sigma (levels) of the patches of ``channels`` pooled (so the rms over the
    channels); NaN with fewer than 50 unsaturated patches."""
    pooled = [_patches(channel, clipped, _PCA_PATCHES // len(channels)) for channel in channels]
    patches = np.concatenate([patches for patches, _ in pooled])
    energy = np.concatenate([energy for _, energy in pooled])
    fewest = 2 * _PCA_PATCH**2  # fewer patches than twice the dimensions: the covariance is mostly noise
    if energy.size < fewest:
        return math.nan
    flattest_count = max(int(_PCA_FLATTEST * energy.size), fewest - 1)
    flattest = np.partition(energy, flattest_count)[flattest_count]
    # all patches first (content only adds eigenvalues above the noise's), then those of weak
    # texture at the noise found; more rounds move it by a few percent at most
    variance = _noise_variance(patches)
    return math.sqrt(_noise_variance(patches[energy <= max(_PCA_WEAK_TEXTURE * variance, flattest)]))


def _clipped_luminance(y: np.ndarray) -> np.ndarray:
    return (y <= _CLIPPED_LEVELS[0]) | (y >= _CLIPPED_LEVELS[1])


def noise_sigma_flat(image: np.ndarray) -> float:
    """Standard deviation of white noise on luminance, in 8-bit levels, by another method than
    ``noise_sigma``: principal components of 5 x 5 patches of weak texture.

    White noise adds sigma^2 to every eigenvalue of the patches' covariance, and smooth content
    fills only a few of its 25 directions. sigma^2 is the mean of the noise-only eigenvalues:
    the smallest ones, as many as keep their mean at most their median (Chen, Zhu and Heng
    2015), widened to the Marchenko-Pastur edge of that noise. The patches (about 900, on a
    grid) are those of weak texture (Liu, Tanaka and Okutomi 2013): gradient energy below the
    99 % quantile that pure noise at a first estimate (from all patches) would have, at least
    the flattest quarter; patches touching 0 or 255 are left out. Within about 5 % for
    Gaussian noise of 3-20 levels on smooth 64 px images (8-bit rounding alone reads 0.26);
    clean photos read about 1-1.5 (texture that fills every direction of a patch reads as
    noise). It answers to the noise's correlation differently from ``noise_sigma``'s finest
    band: noise blurred by 1 px or upscaled 2x reads 0.2-0.3 (``noise_sigma`` 0.7-1.4) of 10
    levels, JPEG at quality 75 leaves 7-8 (``noise_sigma`` 6.7). NaN below 16 px or when
    fewer than 50 patches are unsaturated.
    """
    y = luminance(image)
    return math.nan if _too_small(y, "noise_sigma_flat") else _pca_noise_sigma((y,), _clipped_luminance(y))


_CB_CR = np.asarray(RGB_TO_YCBCR[1:], dtype=np.float32).T * np.float32(255)  # RGB [0, 1] -> Cb, Cr levels


def chroma_noise(image: np.ndarray) -> float:
    """Noise on the chroma channels, in 8-bit levels: the rms of the PCA noise sigma
    (``noise_sigma_flat``'s estimator) of BT.601 Cb and Cr; 0.0 for a grey image.

    Grey (luminance-only) noise leaves it where it was; independent noise of sigma s in each of
    R, G and B reads about 0.64 s (Cb's weights give 0.62 s, Cr's 0.66 s). Chroma subsampling
    (JPEG 4:2:0), demosaicing and chroma denoising, which smooth chroma more than luminance,
    lower it. Pixels with a channel at 0 or 255 are left out. NaN below 16 px or when fewer
    than 50 patches are unsaturated.
    """
    pixels = _pixels(image)
    if min(pixels.shape[:2]) < _MIN_SIDE["chroma_noise"]:
        return math.nan
    return _chroma_noise(pixels)


def _chroma_noise(pixels: np.ndarray) -> float:
    if pixels.ndim == 2:
        return 0.0
    rgb = pixels.astype(np.float32, copy=False)
    clipped = ((rgb <= _CLIPPED_LEVELS[0] / 255) | (rgb >= _CLIPPED_LEVELS[1] / 255)).any(axis=2)
    chroma = rgb @ _CB_CR
    return _pca_noise_sigma((chroma[..., 0], chroma[..., 1]), clipped)


# ---------------------------------------------------------------------------------------------
# Blur

_REBLUR_SIGMA = 1.0
_REBLUR_KERNEL = 9  # radius 4 sigma
_MAX_BLUR = 20.0  # px; what an edge that a re-blur does not weaken reads as
_STRONGEST_EDGES = 0.2  # fraction of the edge pixels measured


def blur_sigma(image: np.ndarray) -> float:
    """Gaussian blur sigma of the image's edges, in pixels (a blur measure: rises with blur).

    The re-blur gradient ratio: a step edge blurred by sigma has a peak gradient
    proportional to 1 / sigma; re-blurring it by sigma0 = 1 px lowers that by
    R = sqrt(sigma^2 + sigma0^2) / sigma, so sigma = sigma0 / sqrt(R^2 - 1). R is the
    median over the strongest 20 % of edge pixels (local maxima of the Sobel gradient
    along its direction, 4 px from the border). The estimate includes the pixel grid and
    the Sobel operator: a sharp step edge reads about 0.8 px (sharp photos 0.5-0.8), and
    Gaussian blur sigma s on step edges reads about sqrt(s^2 + 0.5), up to 10 % lower for s
    >= 3 where edges come close. Neighbouring edges (fine texture) and noise read sharper;
    an image without sharp edges (a smooth texture) reads as its own feature size whatever
    blur is added. Range about 0.5-20 px; NaN below 32 px or without edges (flat image).
    """
    y = luminance(image)
    return math.nan if _too_small(y, "blur_sigma") else _blur_sigma(y, _edges(y))


def _gradient(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradient (levels per pixel, replicated border) and its magnitude. NumPy, not
    cv2.Sobel: OpenCV's SIMD path rounded the same patch differently from one process to the
    next (a thresholded edge set then moved blur_sigma by up to 0.006 px)."""
    p = np.pad(np.asarray(y, dtype=np.float32), 1, mode="edge")
    eighth = np.float32(1 / 8)
    gx = ((p[:-2, 2:] - p[:-2, :-2]) + 2 * (p[1:-1, 2:] - p[1:-1, :-2]) + (p[2:, 2:] - p[2:, :-2])) * eighth
    gy = ((p[2:, :-2] - p[:-2, :-2]) + 2 * (p[2:, 1:-1] - p[:-2, 1:-1]) + (p[2:, 2:] - p[:-2, 2:])) * eighth
    return gx, gy, np.sqrt(gx * gx + gy * gy)


def _edge_maxima(gx: np.ndarray, gy: np.ndarray, magnitude: np.ndarray, margin: int) -> np.ndarray:
    """Mask of pixels whose gradient magnitude is a local maximum along the gradient direction
    (quantised to 0, 45, 90, 135 degrees), ``margin`` px from the border."""
    m = magnitude
    h, w = m.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return m[margin + dy : h - margin + dy, margin + dx : w - margin + dx]

    inner = (slice(margin, h - margin), slice(margin, w - margin))
    centre, gx, gy = shifted(0, 0), gx[inner], gy[inner]
    tan22 = np.float32(math.tan(math.pi / 8))
    horizontal = np.abs(gy) <= tan22 * np.abs(gx)
    vertical = np.abs(gx) <= tan22 * np.abs(gy)
    same_sign = gx * gy > 0
    along_x = (centre >= shifted(0, -1)) & (centre > shifted(0, 1))
    along_y = (centre >= shifted(-1, 0)) & (centre > shifted(1, 0))
    along_main = (centre >= shifted(-1, -1)) & (centre > shifted(1, 1))
    along_anti = (centre >= shifted(-1, 1)) & (centre > shifted(1, -1))
    diagonal = np.where(same_sign, along_main, along_anti)
    peak = np.where(horizontal, along_x, np.where(vertical, along_y, diagonal)) & (centre > 0)
    mask = np.zeros_like(m, dtype=bool)
    mask[inner] = peak
    return mask


_EDGE_MARGIN = _REBLUR_KERNEL // 2  # px: the re-blur reads this far


def _edges(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradient x, y, magnitude and the edge maxima ``_EDGE_MARGIN`` px from the border:
    what ``blur_sigma`` and ``ringing`` both start from."""
    gx, gy, magnitude = _gradient(y)
    return gx, gy, magnitude, _edge_maxima(gx, gy, magnitude, margin=_EDGE_MARGIN)


def _blur_sigma(y: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> float:
    magnitude, edges = edges[2:]
    size = (_REBLUR_KERNEL, _REBLUR_KERNEL)
    reblurred = cv2.GaussianBlur(y, size, _REBLUR_SIGMA, borderType=cv2.BORDER_REPLICATE)
    strength = magnitude[edges]
    if strength.size < 8:
        return math.nan
    strongest = strength >= np.quantile(strength, 1 - _STRONGEST_EDGES)
    weakened = _gradient(reblurred)[2][edges][strongest]
    ratio = float(np.median(strength[strongest] / np.maximum(weakened, 1e-6)))
    return _REBLUR_SIGMA / math.sqrt(max(ratio * ratio - 1, (_REBLUR_SIGMA / _MAX_BLUR) ** 2))


_SLOPE_BAND = (0.15, 0.45)  # cycles per pixel: above most content's shape, below the Nyquist corner


@lru_cache(maxsize=4)  # the fit measures one patch size; a whole photo's layout is large
def _spectrum_layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hann window, ring index of each rfft2 coefficient in the band (-1 outside), the number of
    coefficients per ring, and the least-squares weights that turn log ring powers into the slope
    against log frequency. Rings are 1 / min(H, W) cycles/px wide."""
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    ring_width = 1.0 / min(height, width)
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    first, last = math.ceil(_SLOPE_BAND[0] / ring_width), math.floor(_SLOPE_BAND[1] / ring_width)
    ring = np.rint(radius / ring_width).astype(np.int64) - first
    ring[(ring < 0) | (ring > last - first)] = -1
    counts = np.bincount(ring[ring >= 0], minlength=last - first + 1)
    log_frequency = np.log(np.arange(first, last + 1) * ring_width)
    centred = log_frequency - log_frequency.mean()
    return window, ring.ravel(), counts, centred / (centred @ centred)


def spectrum_slope(image: np.ndarray) -> float:
    """Slope of the luminance's radially averaged log power spectrum against log frequency over
    0.15-0.45 cycles/px (log power per log frequency; least squares over rings 1/min(H, W) wide).

    The mean is removed and a Hann window applied, so the image's borders (a discontinuity for
    the FFT) add no power. Sharp photos read about -2 to -4 on 64 px patches (natural images'
    power falls as about 1 / f^2), Gaussian blur of sigma s multiplies the power by
    exp(-4 pi^2 s^2 f^2), so it reads steeper (about -7 to -9 at s = 1), and white noise is flat,
    so it pulls the slope towards 0 (pure noise reads 0 +- 0.3). Blur strong enough to push
    the band below the noise floor (8-bit rounding included) reads flatter again: the slope
    then measures that floor. JPEG, which quantises high frequencies away, reads steeper (the
    median over photo patches by about 0.3 at quality 90 to 1 at quality 30). NaN below 32 px
    or for a flat image.
    """
    y = luminance(image)
    return math.nan if _too_small(y, "spectrum_slope") else _spectrum_slope(y)


def _spectrum_slope(y: np.ndarray) -> float:
    if float(y.max()) == float(y.min()):
        return math.nan
    window, ring, counts, weights = _spectrum_layout(*y.shape)
    spectrum = np.fft.rfft2((y - y.mean(dtype=np.float64)).astype(np.float32) * window)
    power = (spectrum.real**2 + spectrum.imag**2).ravel()
    inside = ring >= 0
    ring_power = np.bincount(ring[inside], power[inside], minlength=counts.size) / counts
    floor = 1e-12 * float(power.sum())  # an exactly empty ring (none seen in practice) stays finite
    return float(np.log(np.maximum(ring_power, floor)) @ weights)


_PROFILE_REACH = 6  # px sampled on each side of an edge pixel, along the gradient
_PROFILE_OFFSETS = np.arange(-_PROFILE_REACH, _PROFILE_REACH + 1, dtype=np.float32)
_PLATEAU = 2  # the outer 2 samples on each side (5-6 px out) are the levels the edge joins
_NEAR = 4  # the 4 samples inside them on each side (1-4 px out) may overshoot
_STEP_SHARE = 0.6  # a step edge's plateaus span at least this share of its profile's range
_RINGING_MIN_GRADIENT = 2.0  # levels / px: weaker maxima are rounding and noise, not edges


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` interpolated at the positions (x, y), all inside it (cv2.remap would do, but
    takes at most 32766 rows and columns)."""
    width = image.shape[1]
    left = np.minimum(x.astype(np.intp), width - 2)  # positions are >= 0: truncation is floor
    top = np.minimum(y.astype(np.intp), image.shape[0] - 2)
    fx, fy = x - left, y - top
    flat, index = image.ravel(), top * width + left
    upper = flat[index] + (flat[index + 1] - flat[index]) * fx
    lower = flat[index + width] + (flat[index + width + 1] - flat[index + width]) * fx
    return upper + (lower - upper) * fy


def ringing(image: np.ndarray) -> float:
    """Overshoot beside the strongest step edges, as a fraction of the step (0 = none).

    At the strongest 20 % of the edge pixels (local maxima of the Sobel gradient, at least 2
    levels/px, 6 px from the border), the luminance is sampled across the edge along the
    gradient, 6 px each side (bilinear). The plateaus are the mean of the 2 outer samples on
    each side; a profile is a step edge when the plateaus differ by more than the gradient
    and by at least 60 % of the profile's range (lines and texture are not). The profiles are
    scaled to go from 0 to 1 and their median taken at each offset (so noise, symmetric about
    the profile, cancels, and texture beside a few edges does not count); the ringing is the
    mean of the median profile's overshoot above 1 on the bright side and undershoot below 0
    on the dark side, 1-4 px from the edge. A clean or Gaussian-blurred step (a monotone
    profile) reads exactly 0, as do bilinear and area resizing; on 64 px crops of step edges
    a windowed-sinc low-pass or a Lanczos downscale reads about 0.06-0.1, bicubic about 0.04,
    an unsharp mask (sigma 1, amount 1) about 0.17 and JPEG at quality 30 about 0.04. Patches
    of clean photos read 0-0.1 (medians 0.002-0.02). Noise raises it a little (about 0.02 at
    10 levels); blur lowers it. The 60 % rule caps it at about 0.33. NaN below 32 px or without
    step edges (a flat image).
    """
    y = luminance(image)
    return math.nan if _too_small(y, "ringing") else _ringing(y, _edges(y))


def _ringing(y: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> float:
    gx, gy, magnitude, maxima = edges
    reach = _PROFILE_REACH
    inner = (slice(reach, -reach),) * 2  # the profiles stay inside the image
    rows, cols = np.nonzero(maxima[inner] & (magnitude[inner] >= _RINGING_MIN_GRADIENT))
    rows, cols = rows + reach, cols + reach
    strength = magnitude[rows, cols]
    if strength.size == 0:
        return math.nan
    weakest_kept = int((1 - _STRONGEST_EDGES) * (strength.size - 1))
    strongest = strength >= np.partition(strength, weakest_kept)[weakest_kept]
    rows, cols, strength = rows[strongest], cols[strongest], strength[strongest]
    along_x, along_y = gx[rows, cols] / strength, gy[rows, cols] / strength  # towards the bright side
    map_x = (cols[:, None] + along_x[:, None] * _PROFILE_OFFSETS).astype(np.float32)
    map_y = (rows[:, None] + along_y[:, None] * _PROFILE_OFFSETS).astype(np.float32)
    profiles = _bilinear(y, map_x, map_y)
    dark, bright = profiles[:, :_PLATEAU].mean(axis=1), profiles[:, -_PLATEAU:].mean(axis=1)
    step = bright - dark
    span = profiles.max(axis=1) - profiles.min(axis=1)
    is_step = (step > strength) & (step >= _STEP_SHARE * span)
    if not is_step.any():
        return math.nan
    scaled = (profiles[is_step] - dark[is_step, None]) / step[is_step, None]
    median = np.median(scaled, axis=0)
    overshoot = median[reach + 1 : reach + 1 + _NEAR].max() - 1
    undershoot = -median[reach - _NEAR : reach].min()
    return float(max(overshoot, 0.0) + max(undershoot, 0.0)) / 2


# ---------------------------------------------------------------------------------------------
# MSCN statistics: BRISQUE's coefficients and fits (realciao.metrics.brisque), inside the border

# BRISQUE's 7 x 7 window reads up to 3 px into the zero padding around the image (MATLAB's
# filter2), so the coefficients there measure the padding: a 64 px LR crop would have 18 % of
# them. The measurements compare crops of every size, so they keep the interior only.
_MSCN_BORDER = 3
_MSCN_FLAT = 1e-6  # mean |coefficient| below this is float rounding of a flat image: no shape


def _mscn(y: np.ndarray) -> np.ndarray:
    border = _MSCN_BORDER
    return brisque.mscn(y.astype(np.float64))[border:-border, border:-border]


def _ggd_fit(coefficients: np.ndarray) -> tuple[float, float]:
    """(shape, variance) of BRISQUE's GGD fit; no shape (NaN) for a flat image."""
    shape, variance = brisque.fit_ggd(coefficients)
    return (math.nan if float(np.abs(coefficients).mean()) < _MSCN_FLAT else shape), variance


def _aggd_shape(products: np.ndarray) -> float:
    """Shape of BRISQUE's AGGD fit; NaN for a flat image (or products all of one sign)."""
    if float(np.abs(products).mean()) < _MSCN_FLAT**2:
        return math.nan
    return brisque.fit_aggd(products)[0]


def mscn_shape(image: np.ndarray) -> float:
    """Shape of a generalised Gaussian fitted to the MSCN coefficients (BRISQUE's moment
    matching, 0.2..10 in steps of 0.001; 2 = Gaussian, 1 = Laplacian): about 1.4-1.7 for clean photos, lower (peakier)
    with blur and strong JPEG, which flatten many windows, higher (towards 3) with noise,
    which makes every window look alike. NaN below 32 px or for a flat image."""
    y = luminance(image)
    return math.nan if _too_small(y, "mscn_shape") else _ggd_fit(_mscn(y))[0]


def mscn_variance(image: np.ndarray) -> float:
    """Mean square of the MSCN coefficients (BRISQUE's GGD variance), 0..~0.8: about 0.2-0.3
    for clean photos, falling with blur and JPEG (in flat windows the constant 1 dominates the
    local deviation), rising towards 0.7-0.8 with noise. NaN below 32 px."""
    y = luminance(image)
    return math.nan if _too_small(y, "mscn_variance") else _ggd_fit(_mscn(y))[1]


def mscn_pair_shape(image: np.ndarray) -> float:
    """Shape (0.2..10) of an asymmetric generalised Gaussian fitted to the products of
    horizontally adjacent MSCN coefficients (BRISQUE's pairwise feature, without its
    wrap-around from the last column to the first): about 0.55-0.6 for
    clean photos, lower with blur and JPEG, towards 1 with noise. NaN below 32 px or for a
    flat image."""
    y = luminance(image)
    return math.nan if _too_small(y, "mscn_pair_shape") else _aggd_shape(_horizontal_products(_mscn(y)))


def _horizontal_products(coefficients: np.ndarray) -> np.ndarray:
    return coefficients[:, :-1] * coefficients[:, 1:]


# ---------------------------------------------------------------------------------------------


def measure_image(image: np.ndarray, jpeg_tables=None) -> dict[str, float]:
    """All measurements of one image, keyed as ``MEASUREMENTS`` (same order), floats; NaN for a
    measurement the image is too small for or that is undefined on it.

    ``jpeg_tables``: the file's quantisation tables (Pillow's ``Image.open(path).quantization``)
    when it is a JPEG; ``jpeg_quality`` is then the exact IJG quality, or the closest one for
    non-IJG tables (``fit_jpeg_quality`` tells which), and NaN without tables.
    """
    pixels = _pixels(image)
    y = _luminance(pixels)
    values = {"jpeg_quality": math.nan}
    if jpeg_tables is not None:
        values["jpeg_quality"] = fit_jpeg_quality(jpeg_tables).quality
    small = {name for name in _MIN_SIDE if _too_small(y, name)}
    values["jpeg_blockiness"] = math.nan if "jpeg_blockiness" in small else _blockiness(y)
    values["noise_sigma"] = math.nan if "noise_sigma" in small else _noise_sigma(y)
    values["noise_sigma_flat"] = (
        math.nan if "noise_sigma_flat" in small else _pca_noise_sigma((y,), _clipped_luminance(y))
    )
    values["chroma_noise"] = math.nan if "chroma_noise" in small else _chroma_noise(pixels)
    edges = None if small >= {"blur_sigma", "ringing"} else _edges(y)
    values["blur_sigma"] = math.nan if "blur_sigma" in small else _blur_sigma(y, edges)
    values["spectrum_slope"] = math.nan if "spectrum_slope" in small else _spectrum_slope(y)
    values["ringing"] = math.nan if "ringing" in small else _ringing(y, edges)
    shape, variance = math.nan, math.nan
    if not small >= {"mscn_shape", "mscn_variance", "mscn_pair_shape"}:
        coefficients = _mscn(y)
        shape, variance = _ggd_fit(coefficients)
    values["mscn_shape"] = math.nan if "mscn_shape" in small else shape
    values["mscn_variance"] = math.nan if "mscn_variance" in small else variance
    values["mscn_pair_shape"] = (
        math.nan if "mscn_pair_shape" in small else _aggd_shape(_horizontal_products(coefficients))
    )
    return values
