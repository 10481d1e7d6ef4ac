"""The two evaluation protocols and the run that combines them.

- Real photos (no ground truth): each method upscales every photo by each scale; the
  outputs are scored with no-reference metrics (NIQE, BRISQUE, PIQE, any pyiqa metric).
- Paired benchmarks: the LR is made from the HR by MATLAB bicubic (or by a degradation
  recipe, ``--degrade``, or read from an LR folder); PSNR/SSIM on Y (BT.601) with a border
  shave of ceil(scale), as the literature measures; a single-channel HR file is measured on
  its grey levels, as MATLAB does.

Images are read by ``realciao.imageio`` (upright, any bit depth). CiaoSR's outputs go
through the same tiled code as ``realciao-upscale``, the peers' through ``realciao.peers``;
every output is quantised to 8 bits. Several processes started by ``accelerate launch``
share the images; the first writes the outputs. Progress and notes are logged.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from realciao.bicubic import matlab_resize
from realciao.color import luma_tensor
from realciao.degradations import degrade_image, load_recipe
from realciao.errors import RealciaoError
from realciao.evaluation.crops import detail_places, lr_view, save_crop
from realciao.evaluation.methods import CiaoSRMethod, Method, PeerMethod, RunSettings, load_methods, safe_name
from realciao.evaluation.report import write_outputs
from realciao.evaluation.results import CropEntry, CropPlace, Results, ScoreRow, merge
from realciao.imageio import ImageReadError, is_grey, list_images, read_image, to_float_rgb
from realciao.metrics import iqa, psnr, quantize_8bit, ssim
from realciao.upscaling import target_size

if TYPE_CHECKING:
    from realciao.degradations.specs import Recipe
    from realciao.devices import ThreadChoice, ThreadGovernor

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """A named set of defaults for ``realciao-eval --protocol``; explicit options override it."""

    scales: tuple[float, ...]
    metrics: tuple[str, ...]
    about: str


PROTOCOLS = {
    # CiaoSR (CVPR 2023), real-world comparison: RealSRSet and DPED-style phone photos at x4
    # and x8, no-reference metrics; fixed-scale models by the apply-again convention at x8
    "realworld": Protocol(
        (4.0, 8.0),
        ("niqe", "brisque", "piqe"),
        "the CiaoSR paper's real-world protocol: x4 and x8, NIQE, BRISQUE and PIQE",
    ),
}


class EvaluationError(RealciaoError, ValueError):
    """Inputs that cannot be evaluated at all (missing or empty folder, bad options)."""


@dataclass
class EvaluationSettings:
    """Everything one evaluation run needs; ``realciao-eval`` fills it from its arguments."""

    output: Path
    models: list[str] = field(default_factory=list)  # PATH or NAME=PATH; bicubic is always included
    real: list[Path] = field(default_factory=list)
    paired: list[Path] = field(default_factory=list)
    lr_folders: list[Path] = field(default_factory=list)  # one per paired folder, or none
    scales: list[float] = field(default_factory=lambda: [4.0])
    metrics: list[str] = field(default_factory=lambda: list(iqa.DEFAULT_NR_METRICS))
    metrics_explicit: bool = False  # a missing metric is then an error, not a note
    rgb: bool = False
    lpips: bool = True
    weights_dir: str | None = None
    allow_pickle: bool = False
    device: str = "auto"
    run: RunSettings = field(default_factory=RunSettings)  # precision may be "auto" here
    threads: ThreadChoice | None = None  # what the caller applied, for the start line
    max_images: int = 0
    report_images: int = 3
    crop: int = 128
    degrade: str | None = None  # paired LR made by this recipe (restoration benchmark) instead of bicubic
    degrade_seed: int = 0  # image i of a folder is degraded with seed degrade_seed + i


@dataclass(frozen=True)
class Shard:
    """The images this process evaluates: every ``world``-th one, starting at ``rank``."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None  # this process's device when several share a node

    def mine(self, index: int) -> bool:
        return index % self.world == self.rank

    def gather(self, value) -> list:
        """``value`` from every process, in rank order, on every process."""
        if self.world == 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])


def current_shard() -> Shard:
    """Several processes when started by ``accelerate launch`` (or torchrun), else one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    from accelerate import PartialState

    # like Accelerator, honour ACCELERATE_USE_CPU (PartialState alone does not read it)
    cpu = (
        os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        or not torch.cuda.is_available()
    )
    state = PartialState(cpu=cpu)
    return Shard(state.process_index, state.num_processes, state.device)


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def image_files(folder: Path, label: str) -> list[Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{label} folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        from realciao.imageio import READ_SUFFIXES

        raise EvaluationError(
            f"{label} folder {folder} holds no images ({', '.join(sorted(READ_SUFFIXES))}, searched recursively)"
        )
    return files


def match_lr(hr: Path, lr_files: dict[str, Path], scale: float) -> Path | None:
    """LR for an HR file: same stem, or the stem plus a scale tag (``babyx4``, ``baby_x4``)."""
    if hr.stem in lr_files:
        return lr_files[hr.stem]
    pattern = re.compile(rf"^{re.escape(hr.stem)}[_-]?(x|X|SRF_)?{scale:g}(_LR)?$")
    for stem, path in lr_files.items():
        if pattern.match(stem):
            return path
    return None


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float32 -> (3, H, W)."""
    return torch.from_numpy(pixels).permute(2, 0, 1)


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------


def note(results: Results, text: str) -> None:
    """Keep ``text`` for the report's notes and say it now."""
    results.notes.append(text)
    LOGGER.info(f"note: {text}")


def measure_metric(
    metric: iqa.Metric, sr: torch.Tensor, row: ScoreRow, notes: list[str], hr: torch.Tensor | None = None
) -> None:
    try:
        row.scores[metric.name] = metric(sr, hr) if metric.full_reference else metric(sr)
    except iqa.NotMeasurable as error:
        row.scores[metric.name] = float("nan")
        notes.append(f"not measurable: {error}")


@dataclass
class Progress:
    """Images done of this process's share of the run, for the time left on each progress line."""

    total: int
    done: int = 0
    start: float = field(default_factory=time.perf_counter)

    def step(self) -> str:
        """Count one image; the elapsed time and an estimate of the time left."""
        self.done += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        return f"{duration_text(elapsed)} elapsed, about {duration_text(left)} left"


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Task:
    """One (folder, scale) of a run, and what every image of it shares."""

    index: int
    dataset: str
    scale: float
    methods: list[Method]
    settings: EvaluationSettings
    results: Results
    crop_dir: Path
    progress: Progress
    recipe: Recipe | None = None  # the degradation recipe of a degraded paired benchmark
    governor: ThreadGovernor | None = None  # fewer threads while other processes hold cores


def score_methods(
    task: Task,
    lr: np.ndarray,
    size: tuple[int, int],
    measure: Callable[[torch.Tensor, ScoreRow, list[str]], None],
    image: str,
    index: int,
    kind: str,
    entry: CropEntry | None,
) -> None:
    """Upscale one image with every method, ``measure(sr, row, notes)`` each output, and
    keep its row, its time, how it was made and (with an ``entry``) its report crops."""
    for method_index, method in enumerate(task.methods):
        if task.governor is not None:
            task.governor.adjust()
        start = time.perf_counter()
        # contiguous: outputs are often channels-last views (HWC arrays permuted, MATLAB resize),
        # on which pyiqa's colour conversion (a matmul over a permuted view) runs ~60x slower
        sr = method.upscale(lr, size, task.settings.run).contiguous()
        if tuple(sr.shape[-2:]) != tuple(size):  # every method's promise; a wrong size would score
            raise EvaluationError(
                f"{method.name} made {sr.shape[-1]}x{sr.shape[-2]} for {image}, "
                f"not the {size[1]}x{size[0]} asked for"
            )
        row = ScoreRow(task.dataset, kind, task.scale, method.name, image, f"{size[1]}x{size[0]}",
                       (task.index, index, method_index))  # fmt: skip
        notes: list[str] = []
        measure(sr, row, notes)
        row.note = "; ".join(notes)
        task.results.rows.append(row)
        key = f"{task.dataset}|x{task.scale:g}|{method.name}"
        task.results.seconds[key] = task.results.seconds.get(key, 0.0) + time.perf_counter() - start
        task.results.record_how(method.name, task.scale, method.how)
        if entry is not None:
            save_crops(task, entry, method.name, sr)


def report_entry(
    task: Task, image: str, index: int, lr: np.ndarray, size: tuple[int, int]
) -> CropEntry | None:
    """The report's crops of one image (its first ``report_images``): the most detailed places,
    and the LR under them; every method's crop is added as it is made."""
    if index >= task.settings.report_images or task.settings.crop == 0:
        return None
    entry = CropEntry(task.dataset, task.scale, image, (task.index, index))
    for place, box in enumerate(detail_places(lr, size, task.settings.crop), start=1):
        entry.places.append(CropPlace(list(box)))
        save_crops(task, entry, "LR (nearest)", lr_view(lr, size, box), only=place - 1)
    task.results.crops.append(entry)
    return entry


def save_crops(
    task: Task, entry: CropEntry, label: str, image: torch.Tensor, only: int | None = None
) -> None:
    for index, place in enumerate(entry.places):
        if only is not None and index != only:
            continue
        box = (0, 0, *place.box[2:]) if only is not None else place.box  # an LR view is the box itself
        parts = (
            entry.dataset,
            f"x{entry.scale:g}",
            entry.image,
            f"p{index + 1}",
            "LR" if label.startswith("LR") else label,
        )
        name = "_".join(safe_name(part) for part in parts)
        place.crops[label] = save_crop(image, box, task.crop_dir / f"{name}.png")


def evaluate_real(task: Task, folder: Path, metrics: list[iqa.Metric], shard: Shard) -> None:
    files = image_files(folder, "--real")[: task.settings.max_images or None]
    for index, path in enumerate(files):
        if not shard.mine(index):
            continue
        try:
            lr = to_float_rgb(read_image(path).pixels)  # upright: EXIF orientation applied
        except ImageReadError as error:
            note(task.results, f"skipped {error}")
            continue
        size = target_size(lr.shape[:2], scale=task.scale)
        entry = report_entry(task, path.stem, index, lr, size)

        def measure(sr, row, notes):
            for metric in metrics:
                measure_metric(metric, sr, row, notes)

        score_methods(task, lr, size, measure, path.stem, index, "real", entry)
        LOGGER.info(
            f"[{task.dataset} x{task.scale:g}] {index + 1}/{len(files)} {path.name} ({task.progress.step()})"
        )


def evaluate_paired(
    task: Task, hr_folder: Path, lr_folder: Path | None, fr_metrics: list[iqa.Metric], shard: Shard
) -> None:
    settings = task.settings
    files = image_files(hr_folder, "--paired")[: settings.max_images or None]
    lr_files = {p.stem: p for p in image_files(lr_folder, "--lr-folder")} if lr_folder is not None else None
    scale = task.scale
    shave = math.ceil(scale)
    y_channel = not settings.rgb
    suffix = "" if y_channel else "_rgb"
    for index, path in enumerate(files):
        if not shard.mine(index):
            continue
        try:
            picture = read_image(path)
            hr_full = as_tensor(to_float_rgb(picture.pixels))
            if lr_files is None:
                lr_size = (int(hr_full.shape[-2] // scale), int(hr_full.shape[-1] // scale))
                lr_t = None
            else:
                lr_path = match_lr(path, lr_files, scale)
                if lr_path is None:
                    raise ImageReadError(f"{path}: no LR image for it in {lr_folder}")
                lr_t = as_tensor(to_float_rgb(read_image(lr_path).pixels))
                lr_size = tuple(lr_t.shape[-2:])
        except ImageReadError as error:
            note(task.results, f"skipped {error}")
            continue
        hr_size = (round(lr_size[0] * scale), round(lr_size[1] * scale))
        if min(lr_size) < 1 or hr_size[0] > hr_full.shape[-2] or hr_size[1] > hr_full.shape[-1]:
            note(
                task.results,
                f"skipped {path}: HR {tuple(hr_full.shape[-2:])} too small for LR {lr_size} at x{scale:g}",
            )
            continue
        hr = hr_full[:, : hr_size[0], : hr_size[1]]
        if lr_t is None:
            if task.recipe is not None:  # a degraded benchmark: the same LR for every method and run
                lr_t = degrade_image(hr, task.recipe, lr_size, settings.degrade_seed + index)
            else:
                lr_t = quantize_8bit(matlab_resize(hr, lr_size))
        lr = lr_t.permute(1, 2, 0).contiguous().numpy()
        hr = hr[None]
        grey = is_grey(picture.pixels)
        entry = report_entry(task, path.stem, index, lr, hr_size)
        if entry is not None:
            save_crops(task, entry, "HR", hr)

        def measure(sr, row, notes, hr=hr, hr_size=hr_size, grey=grey):  # this image's values, bound now
            if min(hr_size) - 2 * shave < 11:  # SSIM's 11x11 window on the shaved image
                row.scores[f"psnr{suffix}"] = row.scores[f"ssim{suffix}"] = float("nan")
                notes.append(
                    f"not measurable: psnr/ssim: image {hr_size[1]}x{hr_size[0]} too small for shave {shave}"
                )
            elif y_channel and grey:
                # MATLAB's protocol measures a grey image on its own levels (no rgb2ycbcr)
                sr_grey = quantize_8bit(luma_tensor(sr))  # a colour output's grey levels
                row.scores["psnr"] = psnr(sr_grey, hr[:, :1], shave, y_channel=False)
                row.scores["ssim"] = ssim(sr_grey, hr[:, :1], shave, y_channel=False)
            else:
                row.scores[f"psnr{suffix}"] = psnr(sr, hr, shave, y_channel)
                row.scores[f"ssim{suffix}"] = ssim(sr, hr, shave, y_channel)
            for metric in fr_metrics:
                measure_metric(metric, sr, row, notes, hr)

        score_methods(task, lr, hr_size, measure, path.stem, index, "paired", entry)
        LOGGER.info(
            f"[{task.dataset} x{scale:g}] {index + 1}/{len(files)} {path.name} ({task.progress.step()})"
        )


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def check_settings(settings: EvaluationSettings) -> None:
    if not settings.real and not settings.paired:
        raise EvaluationError("nothing to evaluate: give --real FOLDER and/or --paired HR_FOLDER")
    if settings.degrade and (not settings.paired or settings.lr_folders):
        raise EvaluationError("--degrade makes the LR of --paired folders: give --paired and no --lr-folder")
    if settings.degrade:
        load_recipe(settings.degrade)  # a bad recipe file stops the run before any work
    if settings.lr_folders and len(settings.lr_folders) != len(settings.paired):
        raise EvaluationError("give one --lr-folder per --paired folder (in the same order), or none")
    for scale in settings.scales:
        if not (scale > 0 and math.isfinite(scale)):
            raise EvaluationError(f"--scale: expected a positive number, got {scale:g}")
    for label, folders in (
        ("--real", settings.real),
        ("--paired", settings.paired),
        ("--lr-folder", settings.lr_folders),
    ):
        for folder in folders:
            image_files(folder, label)  # a missing or empty folder is an error before any work


def create_metrics(
    settings: EvaluationSettings, weights_dir: Path | None, results: Results
) -> tuple[list[iqa.Metric], list[iqa.Metric]]:
    nr_metrics = []
    if settings.real:
        for name in settings.metrics:
            try:
                nr_metrics.append(iqa.create_metric(name, weights_dir, "cpu", settings.allow_pickle))
            except iqa.WeightsMissing as error:
                if settings.metrics_explicit:
                    raise
                note(results, f"{name} unavailable: {error}")
        if not nr_metrics:
            raise EvaluationError(
                "no no-reference metric is available; see the notes above (weights missing)"
            )
    fr_metrics = []
    if settings.paired and settings.lpips:
        try:
            fr_metrics.append(iqa.create_metric("lpips", weights_dir, "cpu", settings.allow_pickle))
        except iqa.WeightsMissing as error:
            note(results, f"lpips unavailable: {error}")
    return nr_metrics, fr_metrics


def start_line(device, decision, threads, processes: int) -> str:
    """What runs where, said once: device, precision (and why), threads (and why)."""
    count = threads.count if threads is not None else torch.get_num_threads()
    reason = f" ({threads.reason})" if threads is not None else ""
    each = f"{processes} processes, each " if processes > 1 else ""
    return f"realciao-eval: {each}{device}, {decision.describe()}, {count} thread(s){reason}"


def precision_probe(methods: list, scale: float):
    """``auto`` precision's probe: the first CiaoSR model at the first scale, else the first
    peer on a small image; None for bicubic alone (fp32)."""
    from realciao.inference import inference_probe

    for method in methods:
        if isinstance(method, CiaoSRMethod):
            return inference_probe(method.model, scale)
    for method in methods:
        if isinstance(method, PeerMethod):
            return peer_probe(method)
    return None


def peer_probe(method: PeerMethod):
    """A peer run on a 32x32 image at its own scale, in the precision it would run in."""
    from realciao.autoprecision import PrecisionProbe, model_digest

    peer = method.peer
    lr = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    size = (32 * peer.scale, 32 * peer.scale)

    def run(precision: str) -> None:
        peer.upscale(lr, size, tile=0, margin=None, precision=method.precision_for(precision, True))

    return PrecisionProbe(
        f"peer {peer.name} x{peer.scale}, model {model_digest(peer.descriptor.model)}, 32x32", run
    )


def share_of_images(
    folders: list[tuple[Path, Path | None, str]], settings: EvaluationSettings, shard: Shard
) -> int:
    """Images this process evaluates, over every folder and scale."""
    count = 0
    for folder, _, kind in folders:
        files = len(
            image_files(folder, "--real" if kind == "real" else "--paired")[: settings.max_images or None]
        )
        count += sum(shard.mine(index) for index in range(files))
    return count * len(settings.scales)


def run_evaluation(settings: EvaluationSettings) -> dict[str, Path]:
    """Evaluate every method on every folder and scale; the first process writes OUTDIR and gets
    the paths written (``results.md`` holds the means), the others an empty dict. Progress, notes
    and the start line are logged (``realciao.logs``)."""
    from dataclasses import replace

    from realciao.allocator import keep_freed_memory
    from realciao.autoprecision import decide_precision
    from realciao.devices import AUTO, ThreadGovernor, choose_device

    check_settings(settings)
    weights_dir = iqa.resolve_weights_dir(settings.weights_dir)
    shard = current_shard()
    device = shard.device if shard.world > 1 and settings.device == "auto" else choose_device(settings.device)
    if device.type == "cpu":
        keep_freed_memory()  # the same chunk buffers every image: no page faults on them, see allocator.py
    methods = load_methods(
        settings.models, settings.allow_pickle, device
    )  # an unusable model: before any weights
    asked = settings.run.precision
    probe = precision_probe(methods, settings.scales[0]) if asked == AUTO else None
    decision = decide_precision(asked, device, probe)
    precision = decision.precision
    settings = replace(
        settings, run=replace(settings.run, precision=precision, precision_fallback=asked == AUTO)
    )
    if shard.rank == 0:
        LOGGER.info(start_line(device, decision, settings.threads, shard.world))
    results = Results()
    nr_metrics, fr_metrics = create_metrics(settings, weights_dir, results)
    for method in methods:  # an explicit precision a peer cannot run in fails before any work
        if isinstance(method, PeerMethod):
            method.precision_for(precision, settings.run.precision_fallback)
    crop_dir = settings.output / "crops"
    recipe = load_recipe(settings.degrade) if settings.degrade else None
    folders = [(folder, None, "real") for folder in settings.real]
    folders += [
        (folder, settings.lr_folders[i] if settings.lr_folders else None, "paired")
        for i, folder in enumerate(settings.paired)
    ]
    progress = Progress(share_of_images(folders, settings, shard))
    index = 0
    governor = ThreadGovernor(settings.threads) if settings.threads is not None and shard.world == 1 else None
    with torch.no_grad():
        for folder, lr_folder, kind in folders:
            dataset = folder.parent.name if kind == "paired" and folder.name.upper() == "HR" else folder.name
            if kind == "paired" and recipe is not None:
                dataset = f"{dataset}-{recipe.name}"
            for scale in settings.scales:
                task = Task(
                    index,
                    dataset,
                    scale,
                    methods,
                    settings,
                    results,
                    crop_dir,
                    progress,
                    recipe if kind == "paired" else None,
                    governor,
                )
                if kind == "real":
                    evaluate_real(task, folder, nr_metrics, shard)
                else:
                    evaluate_paired(task, folder, lr_folder, fr_metrics, shard)
                index += 1
    results = merge(shard.gather(results))
    if shard.rank != 0:
        return {}  # the first process writes the outputs
    if not results.rows:
        raise EvaluationError("no image could be evaluated; see the notes above")
    config = {
        "models": {m.name: m.description for m in methods},
        "real": [str(p) for p in settings.real],
        "paired": [str(p) for p in settings.paired],
        "lr_folders": [str(p) for p in settings.lr_folders],
        "scales": settings.scales,
        "nr_metrics": [m.name for m in nr_metrics],
        "fr_metrics": ["psnr", "ssim", *[m.name for m in fr_metrics]],
        "y_channel": not settings.rgb,
        "weights_dir": str(weights_dir) if weights_dir else None,
        "tile": settings.run.tile,
        "precision": precision,
        "precision_asked": asked,
        "device": str(device),
        "processes": shard.world,
        "threads": settings.threads.count if settings.threads is not None else torch.get_num_threads(),
        "made": results.made,
    }
    lower_better = {m.name: m.lower_better for m in nr_metrics + fr_metrics}
    return write_outputs(settings.output, results, config, lower_better, methods)
