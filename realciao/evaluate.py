"""``realciao-eval``: compare models and bicubic on real photos (no-reference metrics) and on
paired benchmarks (PSNR/SSIM in the SR literature's protocol), with a visual report.

    realciao-eval --model net_g.safetensors --real ../shared/data/RealSRSet --scale 4 \
        --paired ../shared/data/Set5/HR --scale 2 --scale 3 --scale 4 \
        --weights-dir ~/iqa-weights -o eval_out

Every output goes through ``realciao.upscale.upscale_image`` (tiled: bounded memory) and is
quantised to 8 bits, as a saved file would be. Bicubic is MATLAB's imresize (basicsr's port),
per axis, so any scale works. Paired: LR made from the HR by the same bicubic (or read from
``--lr-folder``), PSNR/SSIM on Y (BT.601) with a border shave of ceil(scale); a grey
(single-channel) HR file is measured on its grey levels, as MATLAB's protocol does.
Outputs in OUTDIR: per_image.csv, means.csv, results.json, results.md, report.html (+ crops/).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realciao.bicubic import matlab_resize
from realciao.metrics import iqa
from realciao.metrics import psnr, quantize_8bit, ssim
from realciao.train.data import IMAGE_SUFFIXES, read_image_file

BICUBIC = "bicubic"
LUMA = (0.299, 0.587, 0.114)  # grey level of a colour output, for grey ground truth


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated at all (missing or empty folder, bad options)."""


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def image_files(folder: Path, label: str) -> list[Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{label} folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EvaluationError(
            f"{label} folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}, searched recursively)"
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


def is_grey_file(path: Path) -> bool:
    """Single-channel file (as MATLAB's ``size(im, 3) == 1``); equal RGB channels do not count."""
    try:
        with Image.open(path) as image:
            return image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    except OSError:
        return False


@dataclass
class Method:
    name: str
    model: object = None  # CiaoSR or None for bicubic

    def upscale(self, lr: np.ndarray, size: tuple[int, int], args) -> torch.Tensor:
        """(h, w, 3) float32 -> (1, 3, H, W) on 8-bit levels."""
        if self.model is None:
            out = matlab_resize(torch.from_numpy(lr).permute(2, 0, 1), size)[None]
        else:
            from realciao.upscale import upscale_image

            out = upscale_image(
                self.model, lr, size=size, tile=args.tile, tile_margin=args.tile_margin, precision=args.precision
            )
            out = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None]
        return quantize_8bit(out.float())


def load_methods(models: list[str], allow_pickle: bool, device) -> list[Method]:
    from realciao.checkpoint import load_generator

    methods = [Method(BICUBIC)]
    names = {BICUBIC}
    for spec in models:
        if spec.lower() == BICUBIC:
            continue
        model = load_generator(spec, allow_pickle=allow_pickle, device=device)
        name = Path(spec).stem
        suffix = 2
        while name in names:
            name, suffix = f"{Path(spec).stem}_{suffix}", suffix + 1
        names.add(name)
        methods.append(Method(name, model))
    return methods


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[dict] = field(default_factory=list)  # per image
    notes: list[str] = field(default_factory=list)  # skipped files, unavailable metrics
    crops: list[dict] = field(default_factory=list)  # report entries
    seconds: dict[str, float] = field(default_factory=dict)  # per dataset/scale/method

    def note(self, text: str, echo) -> None:
        self.notes.append(text)
        echo(f"note: {text}")


@dataclass(frozen=True)
class Shard:
    """The images this process evaluates: every ``world``-th one, starting at ``rank``."""

    rank: int = 0
    world: int = 1
    device: object = None  # this process's device when several share a node

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
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return Shard(state.process_index, state.num_processes, state.device)


def merge(parts: list[Results]) -> Results:
    """One ``Results`` from every process's share, rows and crops back in the single-process order."""
    merged = Results()
    for part in parts:
        merged.rows += part.rows
        merged.crops += part.crops
        merged.notes += part.notes
        for key, seconds in part.seconds.items():
            merged.seconds[key] = merged.seconds.get(key, 0.0) + seconds
    merged.rows.sort(key=lambda row: row.pop("_order"))
    merged.crops.sort(key=lambda entry: entry.pop("_order"))
    merged.notes = list(dict.fromkeys(merged.notes))  # notes every process made once
    return merged


def crop_box(size: tuple[int, int], crop: int) -> tuple[int, int, int, int]:
    """Centre crop (top, left, height, width) of an output of ``size``."""
    height, width = min(crop, size[0]), min(crop, size[1])
    return (size[0] - height) // 2, (size[1] - width) // 2, height, width


def save_crop(image: torch.Tensor, box, path: Path) -> str:
    top, left, height, width = box
    pixels = image[0, :, top:top + height, left:left + width].permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(pixels * 255).clip(0, 255).astype(np.uint8)).save(path)
    return path.name


def _measure(metric: iqa.Metric, sr: torch.Tensor, row: dict, notes: list[str], hr=None) -> None:
    try:
        row[metric.name] = metric(sr, hr) if metric.full_reference else metric(sr)
    except iqa.NotMeasurable as error:
        row[metric.name] = float("nan")
        notes.append(f"not measurable: {error}")


def score_methods(methods, lr: np.ndarray, size: tuple[int, int], measure, entry: dict, kind: str, box,
                  index: int, task: int, args, results: Results, crop_dir: Path) -> None:
    """Upscale one image with every method, ``measure(sr, row, notes)`` each output, and
    keep its row, its time and (for the first images) its report crop."""
    dataset, scale, image = entry["dataset"], entry["scale"], entry["image"]
    for method_index, method in enumerate(methods):
        start = time.perf_counter()
        sr = method.upscale(lr, size, args)
        row = {"dataset": dataset, "kind": kind, "scale": scale, "method": method.name, "image": image,
               "_order": (task, index, method_index)}
        notes = []
        measure(sr, row, notes)
        row["note"] = "; ".join(notes)
        results.rows.append(row)
        key = f"{dataset}|x{scale:g}|{method.name}"
        results.seconds[key] = results.seconds.get(key, 0.0) + time.perf_counter() - start
        if index < args.report_images:
            entry["crops"][method.name] = save_crop(sr, box, crop_dir / f"{dataset}_x{scale:g}_{image}_{method.name}.png")


def evaluate_real(folder: Path, scale: float, methods, metrics, args, results: Results, echo, crop_dir,
                  task: int = 0, shard: Shard = Shard()) -> None:
    from realciao.upscale import target_size

    dataset = folder.name
    files = image_files(folder, "--real")[: args.max_images or None]
    for index, path in enumerate(files):
        if not shard.mine(index):
            continue
        try:
            lr = read_image_file(path)
        except ValueError as error:
            results.note(f"skipped {path}: {error}", echo)
            continue
        size = target_size(lr.shape[:2], scale=scale)
        entry = {"dataset": dataset, "scale": scale, "image": path.stem, "crops": {}, "_order": (task, index)}
        box = crop_box(size, args.crop)

        def measure(sr, row, notes):
            for metric in metrics:
                _measure(metric, sr, row, notes)

        score_methods(methods, lr, size, measure, entry, "real", box, index, task, args, results, crop_dir)
        if index < args.report_images:
            lr_box = tuple(int(v / scale) for v in box[:2]) + tuple(max(1, int(v / scale)) for v in box[2:])
            lr_crop = torch.from_numpy(lr).permute(2, 0, 1)[None]
            lr_view = torch.nn.functional.interpolate(
                lr_crop[..., lr_box[0]:lr_box[0] + lr_box[2], lr_box[1]:lr_box[1] + lr_box[3]], size=box[2:], mode="nearest"
            )
            entry["crops"] = {"LR (nearest)": save_crop(lr_view, (0, 0, *box[2:]), crop_dir / f"{dataset}_x{scale:g}_{path.stem}_LR.png"),
                              **entry["crops"]}
            results.crops.append(entry)
        echo(f"[{dataset} x{scale:g}] {index + 1}/{len(files)} {path.name}")


def evaluate_paired(hr_folder: Path, lr_folder: Path | None, scale: float, methods, fr_metrics, args,
                    results: Results, echo, crop_dir, task: int = 0, shard: Shard = Shard()) -> None:
    dataset = hr_folder.parent.name if hr_folder.name.upper() == "HR" else hr_folder.name
    files = image_files(hr_folder, "--paired")[: args.max_images or None]
    lr_files = None
    if lr_folder is not None:
        lr_files = {p.stem: p for p in image_files(lr_folder, "--lr-folder")}
    shave = math.ceil(scale)
    y_channel = not args.rgb
    suffix = "" if y_channel else "_rgb"
    for index, path in enumerate(files):
        if not shard.mine(index):
            continue
        try:
            hr_full = torch.from_numpy(read_image_file(path)).permute(2, 0, 1)
            if lr_files is None:
                lr_size = (int(hr_full.shape[-2] // scale), int(hr_full.shape[-1] // scale))
                lr_t = None
            else:
                lr_path = match_lr(path, lr_files, scale)
                if lr_path is None:
                    raise ValueError(f"no LR image for {path.name} in {lr_folder}")
                lr_t = torch.from_numpy(read_image_file(lr_path)).permute(2, 0, 1)
                lr_size = tuple(lr_t.shape[-2:])
        except ValueError as error:
            results.note(f"skipped {path}: {error}", echo)
            continue
        hr_size = (round(lr_size[0] * scale), round(lr_size[1] * scale))
        if min(lr_size) < 1 or hr_size[0] > hr_full.shape[-2] or hr_size[1] > hr_full.shape[-1]:
            results.note(f"skipped {path}: HR {tuple(hr_full.shape[-2:])} too small for LR {lr_size} at x{scale:g}", echo)
            continue
        hr = hr_full[:, : hr_size[0], : hr_size[1]]
        if lr_t is None:
            lr_t = quantize_8bit(matlab_resize(hr, lr_size))
        lr = lr_t.permute(1, 2, 0).contiguous().numpy()
        hr = hr[None]
        grey = is_grey_file(path)
        entry = {"dataset": dataset, "scale": scale, "image": path.stem, "crops": {}, "_order": (task, index)}
        box = crop_box(hr_size, args.crop)

        def measure(sr, row, notes, hr=hr, hr_size=hr_size, grey=grey):  # this image's values, bound now
            if min(hr_size) - 2 * shave < 11:  # SSIM's 11x11 window on the shaved image
                row[f"psnr{suffix}"] = row[f"ssim{suffix}"] = float("nan")
                notes.append(f"not measurable: psnr/ssim: image {hr_size[1]}x{hr_size[0]} too small for shave {shave}")
            elif y_channel and grey:
                # MATLAB's protocol measures a grey image on its own levels (no rgb2ycbcr)
                sr_grey = quantize_8bit((sr * sr.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True))
                row["psnr"] = psnr(sr_grey, hr[:, :1], shave, y_channel=False)
                row["ssim"] = ssim(sr_grey, hr[:, :1], shave, y_channel=False)
            else:
                row[f"psnr{suffix}"] = psnr(sr, hr, shave, y_channel)
                row[f"ssim{suffix}"] = ssim(sr, hr, shave, y_channel)
            for metric in fr_metrics:
                _measure(metric, sr, row, notes, hr)

        score_methods(methods, lr, hr_size, measure, entry, "paired", box, index, task, args, results, crop_dir)
        if index < args.report_images:
            entry["crops"]["HR"] = save_crop(hr, box, crop_dir / f"{dataset}_x{scale:g}_{path.stem}_HR.png")
            results.crops.append(entry)
        echo(f"[{dataset} x{scale:g}] {index + 1}/{len(files)} {path.name}")


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------

ID_COLUMNS = ("dataset", "kind", "scale", "method", "image")


def metric_columns(rows: list[dict]) -> list[str]:
    columns = []
    for row in rows:
        for key in row:
            if key not in ID_COLUMNS and key != "note" and key not in columns:
                columns.append(key)
    return columns


def mean_rows(rows: list[dict]) -> list[dict]:
    """Mean of each metric per (dataset, scale, method), over the images it could measure."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["kind"], row["scale"], row["method"]), []).append(row)
    means = []
    for (dataset, kind, scale, method), members in groups.items():
        mean = {"dataset": dataset, "kind": kind, "scale": scale, "method": method, "images": len(members)}
        for column in metric_columns(members):
            values = [r[column] for r in members if column in r and math.isfinite(r[column])]
            mean[column] = float(np.mean(values)) if values else float("nan")
            if len(values) < len(members):
                mean[f"{column}_n"] = len(values)
        means.append(mean)
    return means


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        return f"{value:.4f}"
    return str(value)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _fmt(row.get(c, "")) if row.get(c, "") != "" else "" for c in columns})


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(means: list[dict], metrics_lower_better: dict[str, bool]) -> str:
    lines = []
    for dataset, kind, scale in dict.fromkeys((m["dataset"], m["kind"], m["scale"]) for m in means):
        group = [m for m in means if (m["dataset"], m["kind"], m["scale"]) == (dataset, kind, scale)]
        columns = [c for c in metric_columns(group) if c != "images" and not c.endswith("_n")]
        arrows = [" (lower better)" if metrics_lower_better.get(c, c not in ("psnr", "ssim", "psnr_rgb", "ssim_rgb"))
                  else " (higher better)" for c in columns]
        lines.append(f"### {dataset} x{scale:g} ({kind}, {group[0]['images']} images)\n")
        lines.append("| method | " + " | ".join(c.upper() + a for c, a in zip(columns, arrows)) + " |")
        lines.append("| --- |" + " --- |" * len(columns))
        for m in group:
            cells = []
            for c in columns:
                cell = f"{m[c]:.2f}" if c.startswith("psnr") else f"{m[c]:.4f}" if c.startswith("ssim") else f"{m[c]:.3f}"
                cell = "n/a" if not math.isfinite(m[c]) else cell
                if f"{c}_n" in m:
                    cell += f" ({m[f'{c}_n']}/{m['images']})"
                cells.append(cell)
            lines.append(f"| {m['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_html(path: Path, results: Results, means_md: str) -> None:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>realciao-eval report</title>",
        "<style>body{font-family:sans-serif} figure{display:inline-block;margin:4px;text-align:center}"
        " img{width:256px;image-rendering:pixelated} pre{background:#f4f4f4;padding:8px}</style></head><body>",
        "<h1>realciao-eval report</h1><h2>Means</h2><pre>", html.escape(means_md), "</pre>",
    ]
    for entry in results.crops:
        parts.append(f"<h3>{html.escape(entry['dataset'])} x{entry['scale']:g} — {html.escape(entry['image'])}</h3><div>")
        for method, name in entry["crops"].items():
            parts.append(f"<figure><img src='crops/{html.escape(name)}'><figcaption>{html.escape(method)}</figcaption></figure>")
        parts.append("</div>")
    if results.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in results.notes) + "</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))


def write_outputs(outdir: Path, results: Results, config: dict, lower_better: dict[str, bool]) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    means = mean_rows(results.rows)
    metric_cols = metric_columns(results.rows)
    paths = {name: outdir / name for name in ("per_image.csv", "means.csv", "results.json", "results.md", "report.html")}
    write_csv(paths["per_image.csv"], results.rows, [*ID_COLUMNS, *metric_cols, "note"])
    mean_cols = ["dataset", "kind", "scale", "method", "images"] + [
        c for c in metric_columns(means) if c != "images"
    ]
    write_csv(paths["means.csv"], means, mean_cols)
    document = {
        "config": config,
        "means": [{k: _json_value(v) for k, v in m.items()} for m in means],
        "per_image": [{k: _json_value(v) for k, v in r.items()} for r in results.rows],
        "seconds": results.seconds,
        "notes": results.notes,
    }
    paths["results.json"].write_text(json.dumps(document, indent=2))
    table = markdown_table(means, lower_better)
    notes = "".join(f"- {n}\n" for n in results.notes)
    paths["results.md"].write_text("# realciao-eval results\n\n" + table + ("\n## Notes\n\n" + notes if notes else ""))
    write_html(paths["report.html"], results, table)
    return paths


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realciao-eval",
        description="Evaluate super-resolution models against bicubic: no-reference metrics (NIQE, BRISQUE, "
        "PIQE, any pyiqa metric) on real photos, PSNR/SSIM (and LPIPS) on paired benchmarks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", action="append", default=[], help="checkpoint (realciao .safetensors or official "
                        "CiaoSR); repeatable; 'bicubic' is always included")
    parser.add_argument("--allow-pickle", action="store_true", help="allow loading pickled (.pth) checkpoints")
    parser.add_argument("--real", action="append", default=[], type=Path, help="folder of real LR photos (no ground truth); repeatable")
    parser.add_argument("--paired", action="append", default=[], type=Path, help="folder of HR images; LR made by "
                        "MATLAB bicubic unless --lr-folder; repeatable")
    parser.add_argument("--lr-folder", action="append", default=[], type=Path, help="LR images for the i-th --paired "
                        "folder (same stem, or stem + x<scale>)")
    parser.add_argument("--scale", action="append", type=float, default=None, help="scale(s), any positive number; "
                        "repeatable (default 4)")
    parser.add_argument("--metrics", default=",".join(iqa.DEFAULT_NR_METRICS), help="no-reference metrics for --real "
                        "(pyiqa names, comma-separated)")
    parser.add_argument("--rgb", action="store_true", help="PSNR/SSIM on RGB instead of Y")
    parser.add_argument("--no-lpips", action="store_true", help="do not try LPIPS on paired sets")
    parser.add_argument("--weights-dir", default=None, help=f"local folder of metric weights (offline); "
                        f"default ${iqa.WEIGHTS_ENV}")
    parser.add_argument("--download-weights", metavar="DIR", default=None, help="download the metric weights into "
                        "DIR (needs internet) and exit")
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=None, help="LR tile size (default: from free memory; 0: whole image)")
    parser.add_argument("--tile-margin", type=int, default=None)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--max-images", type=int, default=0, help="first N images per folder (0: all)")
    parser.add_argument("--report-images", type=int, default=3, help="images per set shown in report.html")
    parser.add_argument("--crop", type=int, default=128, help="output crop size in the report")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _split_metrics(text: str) -> list[str]:
    return [m.strip().lower() for m in re.split(r"[,\s]+", text) if m.strip()]


def run(args, echo=print) -> dict[str, Path]:
    from realciao.upscale import choose_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.real and not args.paired:
        raise EvaluationError("nothing to evaluate: give --real FOLDER and/or --paired HR_FOLDER")
    if args.output is None:
        raise EvaluationError("give an output folder with -o OUTDIR")
    if args.lr_folder and len(args.lr_folder) != len(args.paired):
        raise EvaluationError("give one --lr-folder per --paired folder (in the same order), or none")
    scales = args.scale or [4.0]
    for scale in scales:
        if not (scale > 0 and math.isfinite(scale)):
            raise EvaluationError(f"--scale must be a positive number, got {scale}")
    weights_dir = iqa.resolve_weights_dir(args.weights_dir)
    shard = current_shard()
    device = shard.device if shard.world > 1 and args.device == "auto" else choose_device(args.device)
    results = Results()
    requested = _split_metrics(args.metrics)
    explicit = args.metrics != ",".join(iqa.DEFAULT_NR_METRICS)
    nr_metrics = []
    if args.real:
        for name in requested:
            try:
                nr_metrics.append(iqa.create_metric(name, weights_dir, device="cpu"))
            except iqa.WeightsMissing as error:
                if explicit:
                    raise
                results.note(f"{name} unavailable: {error}", echo)
        if not nr_metrics:
            raise EvaluationError("no no-reference metric is available; see the notes above (weights missing)")
    fr_metrics = []
    if args.paired and not args.no_lpips:
        try:
            fr_metrics.append(iqa.create_metric("lpips", weights_dir, device="cpu"))
        except iqa.WeightsMissing as error:
            results.note(f"lpips unavailable: {error}", echo)
    methods = load_methods(args.model, args.allow_pickle, device)
    crop_dir = args.output / "crops"
    tasks = [(folder, None, scale) for folder in args.real for scale in scales]
    tasks += [(folder, args.lr_folder[i] if args.lr_folder else None, scale)
              for i, folder in enumerate(args.paired) for scale in scales]
    with torch.no_grad():
        for task, (folder, lr_folder, scale) in enumerate(tasks):
            if task < len(args.real) * len(scales):
                evaluate_real(folder, scale, methods, nr_metrics, args, results, echo, crop_dir, task, shard)
            else:
                evaluate_paired(folder, lr_folder, scale, methods, fr_metrics, args, results, echo, crop_dir, task, shard)
    results = merge(shard.gather(results))
    if shard.rank != 0:
        return {}  # the first process writes the outputs
    if not results.rows:
        raise EvaluationError("no image could be evaluated; see the notes above")
    config = {
        "models": [m.name for m in methods],
        "real": [str(p) for p in args.real],
        "paired": [str(p) for p in args.paired],
        "lr_folders": [str(p) for p in args.lr_folder],
        "scales": scales,
        "nr_metrics": [m.name for m in nr_metrics],
        "fr_metrics": ["psnr", "ssim", *[m.name for m in fr_metrics]],
        "y_channel": not args.rgb,
        "weights_dir": str(weights_dir) if weights_dir else None,
        "tile": args.tile,
        "precision": args.precision,
    }
    lower_better = {m.name: m.lower_better for m in nr_metrics + fr_metrics}
    paths = write_outputs(args.output, results, config, lower_better)
    echo(paths["results.md"].read_text())
    return paths


def main(argv: list[str] | None = None) -> int:
    from realciao.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    echo = (lambda *_: None) if args.quiet else (lambda text: print(text, flush=True))
    if args.download_weights:
        metrics = list(dict.fromkeys(_split_metrics(args.metrics) + ["lpips"]))
        try:
            iqa.prepare_weights(args.download_weights, metrics, echo=echo)
        except iqa.WeightsDownloadError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 2
        print(f"weights ready in {args.download_weights}; use --weights-dir {args.download_weights}", flush=True)
        return 0
    try:
        paths = run(args, echo)
    except (EvaluationError, iqa.WeightsMissing, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    if paths:
        print(f"wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
