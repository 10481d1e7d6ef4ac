"""Statistics the fit never sees, to check from outside whether a fitted recipe generalises.

``realciao-fit-recipe`` lowers its own distance by construction; whether the recipe looks
like the photos on anything else is the question. These three statistics are computed by
methods unlike any of ``measure.MEASUREMENTS`` and are not used by the fit; the held-out
benchmark (``scripts/bench_fit_recipe.py heldout``) compares photos and recipes on them, on
LR-patch-sized crops taken at any offset (so a JPEG grid need not line up with the crop):

- ``residual_noise``: noise from the residual after a 3 x 3 median filter, the square root
  of a low percentile of its local variance (the flattest places), in 8-bit levels;
- ``grid_peak``: the JPEG grid as a spectral line: the power at 1/8 cycle per pixel in the
  spectrum of the column (and row) profile of absolute steps, over the median power of its
  neighbouring frequencies; any grid phase gives the same line;
- ``high_frequency_share``: the share of the (Hann-windowed, mean-removed) power spectrum
  above 0.25 cycles per pixel: sharpness, noise and ringing raise it, blur lowers it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from realciao.fitting.distance import robust_spread, wasserstein_1d
from realciao.fitting.measure import luminance

STATISTICS = ("residual_noise", "grid_peak", "high_frequency_share")
_LOW_PERCENTILE = 10  # of the local variance of the residual: the flattest tenth of the crop
_NOISE_WINDOW = 5
_MEDIAN_RESIDUAL_GAIN = 1.32  # white noise's sigma over the raw estimate (measured on 64 px crops, sigma 2-20)


def residual_noise(image: np.ndarray) -> float:
    """Noise in 8-bit levels from the 3 x 3 median residual's flattest local variances."""
    y = luminance(image)
    if min(y.shape) < 16:
        return math.nan
    residual = y - cv2.medianBlur(y.astype(np.float32), 3)
    residual = residual[1:-1, 1:-1]
    mean = cv2.blur(residual, (_NOISE_WINDOW, _NOISE_WINDOW))
    square = cv2.blur(residual * residual, (_NOISE_WINDOW, _NOISE_WINDOW))
    variance = np.maximum(square - mean * mean, 0)[2:-2, 2:-2]
    return float(math.sqrt(np.percentile(variance, _LOW_PERCENTILE)) * _MEDIAN_RESIDUAL_GAIN)


def _line_strength(profile: np.ndarray) -> float:
    """Mean over the period-8 harmonics (1/8, 2/8, 3/8 cycles per pixel) of the log of the
    line's power over the geometric mean of the bins 2-4 away on both sides: a spectral line
    stands out against the local level whatever the spectrum's slope."""
    profile = profile[: profile.size // 8 * 8]
    profile = profile - profile.mean()
    power = np.abs(np.fft.rfft(profile * np.hanning(profile.size))) ** 2 + 1e-12
    bins = profile.size // 8  # the bin of 1/8 cycle per pixel: exact for a length that is a multiple of 8
    ratios = []
    for harmonic in (bins, 2 * bins, 3 * bins):
        side = [harmonic + d for d in (-4, -3, -2, 2, 3, 4) if 0 < harmonic + d < power.size]
        ratios.append(np.log(power[harmonic - 1 : harmonic + 2].max()) - np.log(power[side]).mean())
    return float(np.mean(ratios))


def grid_peak(image: np.ndarray) -> float:
    """How far the period-8 lines stand out in the step profiles (``_line_strength`` of the
    columns' and the rows' mean absolute steps, averaged; natural log): about 0.7-1.2 without
    a grid (the maximum over three bins of noise), up to 3.5 with a quality-10 JPEG's blocks."""
    y = luminance(image)
    if min(y.shape) < 32:
        return math.nan
    columns = np.abs(np.diff(y, axis=1)).mean(axis=0)
    rows = np.abs(np.diff(y, axis=0)).mean(axis=1)
    return (_line_strength(columns) + _line_strength(rows)) / 2


def high_frequency_share(image: np.ndarray) -> float:
    """Share of the windowed power spectrum (DC excluded) above 0.25 cycles per pixel."""
    y = luminance(image)
    if min(y.shape) < 16:
        return math.nan
    y = y - y.mean()
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    power = np.abs(np.fft.fft2(y * window)) ** 2
    fy = np.fft.fftfreq(y.shape[0])[:, None]
    fx = np.fft.fftfreq(y.shape[1])[None, :]
    radius = np.sqrt(fy * fy + fx * fx)
    power[0, 0] = 0
    total = float(power.sum())
    return float(power[radius > 0.25].sum()) / total if total > 0 else math.nan


_FUNCTIONS = {"residual_noise": residual_noise, "grid_peak": grid_peak, "high_frequency_share": high_frequency_share}
# compared on the scale where steps weigh alike, as the fit's distance does for its measurements
_TRANSFORMS = {
    "residual_noise": np.log1p,
    "grid_peak": lambda v: v,
    "high_frequency_share": lambda v: np.log(np.maximum(v, 1e-6)),
}
_FLOORS = {"residual_noise": 0.05, "grid_peak": 0.05, "high_frequency_share": 0.03}


def measure(images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Each statistic of each image (NaN where undefined)."""
    return {name: np.asarray([_FUNCTIONS[name](image) for image in images], dtype=np.float64) for name in STATISTICS}


def random_crops(images: Sequence[np.ndarray], side: int, per_image: int, seed: int) -> list[np.ndarray]:
    """``per_image`` crops of ``side`` px at random offsets (any phase) of each image big enough."""
    rng = np.random.default_rng(seed)
    crops = []
    for image in images:
        height, width = image.shape[:2]
        if min(height, width) < side:
            continue
        for _ in range(per_image):
            y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            crops.append(image[y : y + side, x : x + side])
    return crops


def independent_distance(photos: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    """Per statistic, W1 on its scale over the photos' robust spread (the fit's formula, not its
    statistics); plus "total"."""
    terms = {}
    for name in STATISTICS:
        reference = _TRANSFORMS[name](photos[name][np.isfinite(photos[name])])
        values = _TRANSFORMS[name](other[name][np.isfinite(other[name])])
        terms[name] = wasserstein_1d(reference, values) / robust_spread(reference, _FLOORS[name])
    terms["total"] = float(sum(terms.values()))
    return terms
