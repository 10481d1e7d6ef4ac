"""How far a recipe's LR patches are from the photos: one number, stated once.

    distance = sum over measurements m of  W1(t(photos_m), t(synthetic_m)) / spread_m

W1 is the 1-D Wasserstein (earth mover's) distance between the two empirical
distributions of measurement m (patches where it is defined; each patch weighs the same),
taken on a scale t where the measurement's steps weigh alike: log for the positive
statistics (blockiness, blur, MSCN shapes and variance), log(1 + sigma) for the noise
sigmas, log(101 - quality) for JPEG quality (the strength of compression: 95 and 85 differ
more than 40 and 30), and as measured for the spectrum slope (already a log-log quantity,
negative) and ringing (a fraction of the step, 0 for most clean edges). spread_m is the
photos' robust standard deviation of t(m) (interquartile range / 1.349, the standard
deviation for a Gaussian), floored at ``SPREAD_FLOORS[m]`` so that a measurement all photos
share (one JPEG quality) does not weigh without bound. So each term is in units of "photo
spreads", 0 when the distributions are equal; heavy tails (a flat patch's blockiness of 20)
do not outweigh the bulk.

``jpeg_quality`` compares the quality of the last compression: photos that are JPEG files
(their tables) against synthesised patches whose last op is a JPEG (their records). A
synthesised patch that does not end in a JPEG counts as quality 100 (uncompressed), except
as many as there are photo patches that are not JPEG files (a PNG may or may not have been
compressed before; its blockiness, measured on every patch, says how much). So a folder of
JPEGs asks every synthesised patch to end in a JPEG, and a folder of PNGs leaves the term
out. A measurement no photo gives is left out, and one the photos give but no synthesised
patch does costs ``MISSING_PENALTY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from realciao.fitting.measure import MEASUREMENTS
from realciao.fitting.samples import MeasuredSet

_TINY = 1e-3  # positive statistics are clipped here before the log


def _log(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, _TINY))


def _log1p(sigma: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(sigma, 0.0))


def _as_measured(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# the scale each measurement is compared on (see the module's docstring)
TRANSFORMS = {
    "jpeg_quality": lambda q: np.log(101.0 - np.clip(q, 1.0, 100.0)),
    "jpeg_blockiness": _log,
    "noise_sigma": _log1p,
    "noise_sigma_flat": _log1p,
    "chroma_noise": _log1p,
    "blur_sigma": _log,
    "spectrum_slope": _as_measured,
    "ringing": _as_measured,
    "mscn_shape": _log,
    "mscn_variance": _log,
    "mscn_pair_shape": _log,
}
# the smallest spread a measurement is normalised by (on its scale): about its resolution
SPREAD_FLOORS = {
    "jpeg_quality": 0.05,
    "jpeg_blockiness": 0.01,
    "noise_sigma": 0.05,
    "noise_sigma_flat": 0.05,
    "chroma_noise": 0.05,
    "blur_sigma": 0.03,
    "spectrum_slope": 0.1,
    "ringing": 0.01,
    "mscn_shape": 0.02,
    "mscn_variance": 0.03,
    "mscn_pair_shape": 0.02,
}
MISSING_PENALTY = 10.0
_IQR_TO_SIGMA = 1.349


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> float:
    """Exact W1 between the empirical distributions of ``u`` and ``v`` (the area between
    their CDFs)."""
    u, v = np.sort(np.asarray(u, dtype=np.float64)), np.sort(np.asarray(v, dtype=np.float64))
    if u.size == 0 or v.size == 0:
        raise ValueError("W1 needs values on both sides")
    points = np.sort(np.concatenate([u, v]))
    cdf_u = np.searchsorted(u, points[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, points[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(points)))


def robust_spread(values: np.ndarray, floor: float) -> float:
    """Interquartile range / 1.349 (the sigma of a Gaussian), at least ``floor``."""
    if values.size < 2:
        return floor
    low, high = np.percentile(values, [25, 75])
    return max(float(high - low) / _IQR_TO_SIGMA, floor)


@dataclass(frozen=True)
class Reference:
    """The photos' side of the distance: each measurement's values and spread."""

    values: dict[str, np.ndarray]  # as measured
    scaled: dict[str, np.ndarray]  # on the scale they are compared on
    spreads: dict[str, float]
    notes: tuple[str, ...] = ()
    jpeg_fraction: float = 0.0  # of the photo patches, those from JPEG files

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)


def reference(photos: MeasuredSet) -> Reference:
    values, scaled, spreads, notes = {}, {}, {}, []
    for measurement in MEASUREMENTS:
        name = measurement.name
        valid = photos.valid(name)
        if valid.size == 0:
            why = ("no photo is a JPEG file with quantisation tables; JPEG strength is fitted from "
                   "jpeg_blockiness (pixels)" if name == "jpeg_quality"
                   else f"no photo is large enough ({measurement.min_side} px)")
            notes.append(f"{name} left out of the distance: {why}")
            continue
        values[name] = valid
        scaled[name] = TRANSFORMS[name](valid)
        spreads[name] = robust_spread(scaled[name], SPREAD_FLOORS[name])
    if not values:
        raise ValueError("no measurement is defined on any photo")
    jpeg_fraction = float(np.isfinite(photos.values["jpeg_quality"]).mean()) if len(photos) else 0.0
    return Reference(values, scaled, spreads, tuple(notes), jpeg_fraction)


@dataclass(frozen=True)
class Distance:
    total: float
    terms: dict[str, float] = field(default_factory=dict)

    def __float__(self) -> float:
        return self.total


def _uncompressed_as_100(qualities: np.ndarray, count: int, jpeg_fraction: float) -> np.ndarray:
    """Final-JPEG qualities plus 100 for each patch without one beyond the photos' share of
    non-JPEG files."""
    excused = int(round((1 - jpeg_fraction) * count))
    uncompressed = max(0, count - qualities.size - excused)
    return np.concatenate([qualities, np.full(uncompressed, 100.0)])


def distance(ref: Reference, synthetic: MeasuredSet) -> Distance:
    """The stated distance between the photos (``ref``) and a synthesised set."""
    terms = {}
    for name, photo_values in ref.scaled.items():
        synthetic_values = synthetic.valid(name)
        if name == "jpeg_quality":
            synthetic_values = _uncompressed_as_100(synthetic_values, len(synthetic), ref.jpeg_fraction)
        if synthetic_values.size == 0:
            terms[name] = MISSING_PENALTY
        else:
            terms[name] = wasserstein_1d(photo_values, TRANSFORMS[name](synthetic_values)) / ref.spreads[name]
    return Distance(float(sum(terms.values())), terms)
