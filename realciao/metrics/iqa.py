"""Image-quality metrics from pyiqa, usable offline from a local weights folder.

pyiqa (PolyForm Noncommercial 1.0.0) downloads its weight files on first use into
``torch.hub.get_dir()/pyiqa``. GPU clusters often have no internet, so a *weights folder*
can hold those files instead: ``--weights-dir DIR`` or ``$REALCIAO_WEIGHTS_DIR``. Layout:

    DIR/niqe_modelparameters.mat        pyiqa files, flat (DIR/pyiqa/... also accepted)
    DIR/brisque_svm_weights.pth         (or LIVE's libsvm files DIR/allmodel + DIR/allrange)
    DIR/LPIPS_v0.1_alex-df73285e.pth
    DIR/checkpoints/alexnet-owt-7be5be79.pth   torchvision backbones (torch hub layout)

With a weights folder nothing is downloaded: a missing file is a ``WeightsMissing`` error
that names the file, the metric and where to put it. ``prepare_weights`` (``realciao-eval
--download-weights DIR`` or ``python scripts/prepare_weights.py DIR``) fills such a folder
on a machine with internet.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from realciao.errors import RealciaoError

WEIGHTS_ENV = "REALCIAO_WEIGHTS_DIR"
DEFAULT_NR_METRICS = ("niqe", "brisque", "piqe")
# smallest image side each metric can measure: NIQE works on 96x96 blocks (and 48 at the
# half scale), PIQE on 16x16 blocks, BRISQUE needs room for its 7x7 window at half size
MIN_SIZE = {"niqe": 96, "piqe": 16, "brisque": 16, "lpips": 16}


class WeightsMissing(RealciaoError, RuntimeError):
    """A metric's weight file is not available (offline, or the download failed)."""


class WeightsDownloadError(RealciaoError, RuntimeError):
    """``prepare_weights`` could not download a file (usually: no internet here)."""


class NotMeasurable(ValueError):
    """This image cannot be measured by this metric (e.g. smaller than its minimum size)."""


@dataclass(frozen=True)
class WeightFile:
    name: str  # path relative to the weights folder
    url: str


def _pyiqa_url(module: str, key: str) -> str:
    import importlib

    return importlib.import_module(f"pyiqa.archs.{module}").default_model_urls[key]


def known_weight_files(metric: str) -> list[WeightFile] | None:
    """Files the metric needs, or None when realciao does not know (pyiqa will say)."""
    metric = metric.lower()
    if metric in ("piqe", "psnr", "ssim"):
        return []
    if metric == "niqe":
        return [WeightFile("niqe_modelparameters.mat", _pyiqa_url("niqe_arch", "url"))]
    if metric == "brisque":
        return [WeightFile("brisque_svm_weights.pth", _pyiqa_url("brisque_arch", "url"))]
    if metric == "lpips":
        from torchvision.models import AlexNet_Weights

        url = AlexNet_Weights.IMAGENET1K_V1.url
        return [
            WeightFile("LPIPS_v0.1_alex-df73285e.pth", _pyiqa_url("lpips_arch", "0.1_alex")),
            WeightFile(f"checkpoints/{os.path.basename(url)}", url),
        ]
    return None


def resolve_weights_dir(value: str | os.PathLike | None = None) -> Path | None:
    """The weights folder from the argument, else ``$REALCIAO_WEIGHTS_DIR``, else None."""
    value = value or os.environ.get(WEIGHTS_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise WeightsMissing(f"weights folder {path} does not exist (from --weights-dir or ${WEIGHTS_ENV})")
    return path


def find_weight(weights_dir: Path, name: str) -> Path | None:
    for candidate in (weights_dir / name, weights_dir / "pyiqa" / name):
        if candidate.is_file():
            return candidate
    return None


def missing_message(metric: str, name: str, weights_dir: Path | None, url: str | None = None, reason: str = "") -> str:
    where = weights_dir if weights_dir is not None else Path(torch.hub.get_dir()) / "pyiqa"
    text = (
        f"metric '{metric}' needs the weight file '{name}', which is not in {where}. "
        f"Put it at {where / name}"
    )
    text += f" (download: {url})" if url else ""
    text += (
        f"; or run `realciao-eval --download-weights DIR` on a machine with internet and pass "
        f"--weights-dir DIR (or set ${WEIGHTS_ENV})."
    )
    return text + (f" Cause: {reason}" if reason else "")


@contextlib.contextmanager
def _pyiqa_files(metric: str, weights_dir: Path | None, allow_download: bool):
    """pyiqa and torchvision look for files in ``weights_dir`` (when given) and download
    only when allowed; a refused or failed download becomes ``WeightsMissing``."""
    import pyiqa.utils.download_util as download_util

    original_download = download_util.download_url_to_file
    original_hub_download = torch.hub.download_url_to_file
    original_cache = download_util.DEFAULT_CACHE_DIR
    original_hub_dir = torch.hub.get_dir()

    def guarded(url, dst, *args, **kwargs):
        name = os.path.basename(str(dst))
        if weights_dir is not None and Path(dst).resolve().is_relative_to(weights_dir.resolve()):
            name = Path(dst).resolve().relative_to(weights_dir.resolve()).as_posix()
        if not allow_download:
            raise WeightsMissing(missing_message(metric, name, weights_dir, url))
        try:
            return original_download(url, dst, *args, **kwargs)
        except Exception as error:  # network errors come in many types
            raise WeightsMissing(missing_message(metric, name, weights_dir, url, f"download failed: {error}")) from error

    download_util.download_url_to_file = guarded
    torch.hub.download_url_to_file = guarded
    try:
        if weights_dir is not None:
            nested = weights_dir / "pyiqa"
            download_util.DEFAULT_CACHE_DIR = str(nested if nested.is_dir() else weights_dir)
            torch.hub.set_dir(str(weights_dir))
        yield
    finally:
        download_util.download_url_to_file = original_download
        torch.hub.download_url_to_file = original_hub_download
        download_util.DEFAULT_CACHE_DIR = original_cache
        torch.hub.set_dir(original_hub_dir)


def create_pyiqa_metric(
    metric: str, weights_dir: Path | None = None, device: str | torch.device = "cpu", allow_download: bool | None = None
):
    """``pyiqa.create_metric`` with weights from ``weights_dir`` (no download then), or
    pyiqa's usual download when ``weights_dir`` is None. Raises ``WeightsMissing``."""
    import pyiqa

    metric = metric.lower()
    if allow_download is None:
        allow_download = weights_dir is None
    options = {}
    known = known_weight_files(metric)
    if weights_dir is not None and metric in ("niqe", "brisque"):
        # the files pyiqa would download, passed explicitly (MATLAB NIQE parameters work as is)
        file = known[0]
        path = find_weight(weights_dir, file.name)
        if path is None:
            raise WeightsMissing(missing_message(metric, file.name, weights_dir, file.url))
        options["pretrained_model_path"] = str(path)
    if metric not in pyiqa.list_models():
        raise ValueError(f"unknown metric '{metric}'; pyiqa offers: {', '.join(pyiqa.list_models())}")
    with _pyiqa_files(metric, weights_dir, allow_download), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pyiqa.create_metric(metric, device=torch.device(device), **options)
        except WeightsMissing:
            raise
        except (OSError, RuntimeError, ValueError) as error:
            if weights_dir is not None and known is None:
                raise WeightsMissing(
                    f"metric '{metric}' could not be created from the weights folder {weights_dir}: {error}. "
                    f"Run `realciao-eval --download-weights {weights_dir} --metrics {metric}` on a machine "
                    "with internet to fetch what it needs."
                ) from error
            raise


@dataclass
class Metric:
    """One image-quality metric: ``metric(image)`` -> float for a (1, 3, H, W) tensor in
    [0, 1] (and a reference for full-reference ones)."""

    name: str
    function: Callable
    min_size: int = 0
    lower_better: bool = True
    full_reference: bool = False

    def check_size(self, image: torch.Tensor) -> None:
        height, width = image.shape[-2:]
        if min(height, width) < self.min_size:
            raise NotMeasurable(
                f"{self.name}: image is {width}x{height}, smaller than the {self.min_size} px this metric needs"
            )

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> float:
        self.check_size(image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = self.function(image, reference) if self.full_reference else self.function(image)
            except (RuntimeError, ValueError, IndexError, AssertionError) as error:
                raise NotMeasurable(f"{self.name}: {error}") from error
        value = float(torch.as_tensor(value).float().mean())
        if not math.isfinite(value):
            raise NotMeasurable(f"{self.name}: value is {value}")
        return value


def create_brisque_metric(weights_dir: Path | None = None) -> Metric:
    """BRISQUE computed by realciao (``realciao.metrics.brisque``: numpy features and SVR,
    no libsvm) from the LIVE model, the one pyiqa's default ``brisque`` uses: pyiqa's
    ``brisque_svm_weights.pth`` read as plain tensors (pyiqa itself would unpickle it with
    ``weights_only=False``), or the LIVE release's ``allmodel`` + ``allrange``. Without a
    weights folder the file comes from pyiqa's cache, downloaded there as pyiqa would.
    The PyPI brisque package's model is not used: it does not reproduce LIVE's values."""
    from realciao.metrics import brisque

    file = known_weight_files("brisque")[0]
    path = find_weight(weights_dir, file.name) if weights_dir is not None else None
    libsvm_folders = () if weights_dir is None or path else (weights_dir, weights_dir / "pyiqa")
    try:
        for folder in libsvm_folders:
            if (folder / "allmodel").is_file() and (folder / "allrange").is_file():
                model = brisque.load_svr(folder / "allmodel", folder / "allrange")
                return Metric("brisque", brisque.BrisqueScorer(model), MIN_SIZE["brisque"])
        if path is None and weights_dir is not None:
            raise WeightsMissing(missing_message("brisque", file.name, weights_dir, file.url))
        if path is None:
            from pyiqa.utils.download_util import load_file_from_url

            with _pyiqa_files("brisque", None, allow_download=True):
                path = Path(load_file_from_url(file.url))
        model = brisque.load_live_model(path)
    except brisque.BrisqueModelError as error:
        raise WeightsMissing(missing_message("brisque", file.name, weights_dir, file.url, str(error))) from error
    return Metric("brisque", brisque.BrisqueScorer(model), MIN_SIZE["brisque"])


def create_metric(name: str, weights_dir: Path | None = None, device: str | torch.device = "cpu") -> Metric:
    """A ``Metric`` for a pyiqa metric name (niqe, brisque, piqe, lpips, musiq, ...);
    BRISQUE is realciao's own (``create_brisque_metric``)."""
    if name.lower() == "brisque":
        return create_brisque_metric(weights_dir)
    metric = create_pyiqa_metric(name, weights_dir, device)
    return Metric(
        name=name.lower(),
        function=metric,
        min_size=MIN_SIZE.get(name.lower(), 0),
        lower_better=bool(getattr(metric, "lower_better", True)),
        full_reference=getattr(metric, "metric_mode", "NR") == "FR",
    )


# ---------------------------------------------------------------------------------------
# Filling a weights folder (on a connected machine)
# ---------------------------------------------------------------------------------------


def _download(url: str, path: Path) -> None:
    torch.hub.download_url_to_file(url, str(path), progress=True)


def prepare_weights(
    dest: str | os.PathLike,
    metrics: list[str] | tuple[str, ...] = (*DEFAULT_NR_METRICS, "lpips"),
    downloader: Callable[[str, Path], None] | None = None,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Download every file the metrics need into ``dest`` (a weights folder); files already
    there are kept. ``downloader(url, path)`` defaults to torch.hub's. Metrics realciao
    does not know are created once through pyiqa with ``dest`` as its cache, which fetches
    whatever they use. Raises ``WeightsDownloadError`` naming the file when a download fails."""
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    downloader = downloader or _download
    files = []
    for metric in metrics:
        known = known_weight_files(metric)
        if known is None:
            echo(f"{metric}: letting pyiqa fetch its files into {dest}")
            try:
                create_pyiqa_metric(metric, dest, "cpu", allow_download=True)
            except WeightsMissing as error:
                raise WeightsDownloadError(
                    f"{error}\nThis command needs internet: run it on a connected machine and copy {dest} over."
                ) from error
            continue
        for file in known:
            path = dest / file.name
            files.append(path)
            if find_weight(dest, file.name):
                echo(f"{metric}: {file.name} already present")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            echo(f"{metric}: downloading {file.url} -> {path}")
            try:
                downloader(file.url, partial)
            except Exception as error:
                partial.unlink(missing_ok=True)
                raise WeightsDownloadError(
                    f"could not download '{file.name}' for metric '{metric}' from {file.url}: {error}\n"
                    f"This command needs internet: run it on a connected machine, then copy {dest} to the "
                    f"offline one and pass --weights-dir (or set ${WEIGHTS_ENV})."
                ) from error
            partial.replace(path)
    return files


def prepare_main(argv: list[str] | None = None) -> int:
    """``python scripts/prepare_weights.py DIR [--metrics niqe,brisque,piqe,lpips]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="prepare_weights", description="Download the metric weights realciao-eval needs into a folder."
    )
    parser.add_argument("dest", help="weights folder to fill (then use --weights-dir DEST offline)")
    parser.add_argument("--metrics", default="niqe,brisque,piqe,lpips", help="comma-separated metric names")
    args = parser.parse_args(argv)
    try:
        files = prepare_weights(args.dest, [m.strip() for m in args.metrics.split(",") if m.strip()])
    except WeightsDownloadError as error:
        print(f"error: {error}", flush=True)
        return 2
    print(f"{len(files)} file(s) ready in {args.dest}; use --weights-dir {args.dest} or ${WEIGHTS_ENV}")
    return 0
