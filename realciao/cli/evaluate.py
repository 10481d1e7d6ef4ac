"""``realciao-eval``: compare models and bicubic on real photos (no-reference metrics) and on
paired benchmarks (PSNR/SSIM in the SR literature's protocol), with a visual report.

    realciao-eval --protocol realworld --real ../shared/data/RealSRSet --weights-dir ../shared/data/iqa_params \\
        --model net_g.safetensors --label Real-ESRGAN=RealESRGAN_x4plus.pth -o eval_realworld
    realciao-eval --model net_g.safetensors --paired ../shared/data/Set5/HR --scale 2 --scale 3 --scale 4 -o eval_out
    accelerate launch -q --num_processes 4 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        -m realciao.cli.evaluate ...   # several processes share the images

Outputs in OUTDIR: per_image.csv, means.csv, results.json, results.md, report.html, overview.png
(+ plots/, crops/).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from realciao.cli import DefaultsHelpFormatter, bad_output, exit_process, fail
from realciao.errors import RealciaoError
from realciao.logs import TerminalHandler, show_messages

if TYPE_CHECKING:
    from realciao.evaluation import EvaluationSettings

# the modules that import torch (seconds) are imported where used, after the output check

PROG = "realciao-eval"


def build_parser() -> argparse.ArgumentParser:
    from realciao.devices import AUTO, PRECISIONS
    from realciao.evaluation.protocols import PROTOCOLS
    from realciao.metrics import iqa

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate super-resolution models against bicubic: no-reference metrics (NIQE, BRISQUE, "
        "PIQE, any pyiqa metric) on real photos, PSNR/SSIM (and LPIPS) on paired benchmarks.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default=None,
        help="a named protocol's defaults; realworld: "
        + PROTOCOLS["realworld"].about
        + " (--scale and --metrics override)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a realciao/official CiaoSR checkpoint or any SR model spandrel loads (Real-ESRGAN, "
        "BSRGAN, RealSR, SwinIR, HAT...: .pth read without unpickling code, or .safetensors); "
        "NAME= names its rows (default: the file's stem); repeatable; 'bicubic' is always included. "
        "A fixed-scale model runs at its scale, again while smaller than the output, then bicubic",
    )
    parser.add_argument(
        "--label", action="append", default=[], metavar="NAME=PATH", help="the same as --model NAME=PATH"
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow checkpoints that need full unpickling (they can run code)",
    )
    parser.add_argument(
        "--real",
        action="append",
        default=[],
        type=Path,
        help="folder of real LR photos (no ground truth); repeatable",
    )
    parser.add_argument(
        "--paired",
        action="append",
        default=[],
        type=Path,
        help="folder of HR images; LR made by MATLAB bicubic unless --lr-folder; repeatable",
    )
    parser.add_argument(
        "--lr-folder",
        action="append",
        default=[],
        type=Path,
        help="LR images for the i-th --paired folder (same stem, or stem + x<scale>)",
    )
    parser.add_argument(
        "--scale",
        action="append",
        type=float,
        default=None,
        help="scale(s), any positive number; repeatable (default 4)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="no-reference metrics for --real (pyiqa names, "
        f"comma-separated; default {','.join(iqa.DEFAULT_NR_METRICS)}, each skipped with a note when "
        "its weights are missing; named ones must be available)",
    )
    parser.add_argument("--rgb", action="store_true", help="PSNR/SSIM on RGB instead of Y")
    parser.add_argument("--no-lpips", action="store_true", help="do not try LPIPS on paired sets")
    parser.add_argument(
        "--weights-dir",
        default=None,
        help=f"local folder of metric weights (offline); default ${iqa.WEIGHTS_ENV}",
    )
    parser.add_argument(
        "--download-weights",
        metavar="DIR",
        default=None,
        help="download the metric weights into DIR (needs internet) and exit",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="output folder")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda[:N] or mps"
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LR tile size (default: from free memory; 0: whole "
        "image); a peer tiles each pass's input, and runs it whole where it fits",
    )
    parser.add_argument(
        "--tile-margin",
        type=int,
        default=None,
        help="LR pixels of context around each tile "
        "(default: a CiaoSR model's encoder reach, at most 48, or 16 with the non-local branch or SwinIR; "
        "a peer's receptive radius when at most 48, else 32)",
    )
    parser.add_argument(
        "--precision",
        default=AUTO,
        choices=(AUTO, *PRECISIONS),
        help="auto: the faster of fp32 and the reduced precisions the device runs, timed once on the "
        "first model at the first scale and cached; a peer that spandrel marks as unable to run in "
        "it then runs in fp32",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch per process (default: "
        "OMP_NUM_THREADS if you set it, else the available cores divided among local processes)",
    )
    parser.add_argument("--max-images", type=int, default=0, help="first N images per folder (0: all)")
    parser.add_argument("--report-images", type=int, default=3, help="images per set shown in report.html")
    parser.add_argument("--crop", type=int, default=128, help="output crop size in the report (0: no crops)")
    parser.add_argument(
        "--degrade",
        metavar="RECIPE",
        default=None,
        help="make the LR of --paired sets with this "
        "degradation recipe (a restoration benchmark: every method sees the same degraded LR) instead "
        "of MATLAB bicubic",
    )
    parser.add_argument(
        "--degrade-seed", type=int, default=0, help="seed of --degrade (image i uses SEED + i)"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only the files written: no progress, notes or means table (the notes are printed "
        "at the end when the run fails)",
    )
    return parser


def split_metrics(text: str) -> list[str]:
    return [m.strip().lower() for m in re.split(r"[,\s]+", text) if m.strip()]


def settings_from(args) -> EvaluationSettings:
    from realciao.devices import configure_threads
    from realciao.evaluation import EvaluationSettings, RunSettings
    from realciao.evaluation.protocols import PROTOCOLS
    from realciao.metrics import iqa

    if args.output is None:
        raise _usage("give an output folder with -o OUTDIR")
    for name in ("tile", "tile_margin", "threads"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise _usage(f"--{name.replace('_', '-')}: expected a number >= 0, got {value}")
    for name in ("max_images", "report_images", "crop"):
        if getattr(args, name) < 0:
            raise _usage(f"--{name.replace('_', '-')}: expected a number >= 0, got {getattr(args, name)}")
    for label in args.label:
        if "=" not in label:
            raise _usage(f"--label: expected NAME=PATH, got {label!r}")
    protocol = PROTOCOLS[args.protocol] if args.protocol else None
    if protocol is not None and args.paired:
        raise _usage(f"--protocol {args.protocol} is for real photos (--real); run paired sets separately")
    if protocol is not None and not args.real:
        raise _usage(
            f"--protocol {args.protocol}: give the photos with --real FOLDER (e.g. ../shared/data/RealSRSet)"
        )
    default_scales = list(protocol.scales) if protocol else [4.0]
    default_metrics = list(protocol.metrics) if protocol else list(iqa.DEFAULT_NR_METRICS)
    return EvaluationSettings(
        output=args.output,
        models=[*args.model, *args.label],
        real=args.real,
        paired=args.paired,
        lr_folders=args.lr_folder,
        scales=args.scale or default_scales,
        metrics=split_metrics(args.metrics) if args.metrics is not None else default_metrics,
        # a protocol's metrics are its definition: a missing one is an error, as a named one is
        metrics_explicit=args.metrics is not None or protocol is not None,
        rgb=args.rgb,
        lpips=not args.no_lpips,
        weights_dir=args.weights_dir,
        allow_pickle=args.allow_pickle,
        device=args.device,
        run=RunSettings(args.tile, args.tile_margin, args.precision),
        threads=configure_threads(args.threads),
        max_images=args.max_images,
        report_images=args.report_images,
        crop=args.crop,
        degrade=args.degrade,
        degrade_seed=args.degrade_seed,
    )


class UsageError(RealciaoError):
    pass


def _usage(message: str) -> UsageError:
    return UsageError(message)


class QuietNotes(logging.Filter):
    """``--quiet`` on the terminal handler: no message of the run reaches the terminal, and its
    notes are kept, for an error that points to them."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("note: "):
            self.notes.append(text)
        return False


def main(argv: list[str] | None = None) -> int:
    logger = show_messages()  # progress and notes on stdout, warnings on stderr
    problem = bad_output(argv, {("-o", "--output"): True})  # before torch loads
    if problem:
        return fail(PROG, problem)
    args = build_parser().parse_args(argv)
    quiet = QuietNotes() if args.quiet else None
    terminal = [handler for handler in logger.handlers if isinstance(handler, TerminalHandler)]
    for handler in terminal if quiet else ():
        handler.addFilter(quiet)
    try:
        return run(args, quiet)
    finally:
        for handler in terminal if quiet else ():
            handler.removeFilter(quiet)


def run(args: argparse.Namespace, quiet: QuietNotes | None) -> int:
    from realciao.evaluation import run_evaluation
    from realciao.metrics import iqa

    if args.download_weights:
        named = split_metrics(args.metrics) if args.metrics is not None else list(iqa.DEFAULT_NR_METRICS)
        metrics = list(dict.fromkeys(named + ["lpips"]))
        try:
            iqa.prepare_weights(args.download_weights, metrics)
        except RealciaoError as error:
            return fail(PROG, error)
        print(
            f"weights ready in {args.download_weights}; use --weights-dir {args.download_weights}", flush=True
        )
        return 0
    try:
        paths = run_evaluation(settings_from(args))
    except RealciaoError as error:
        for note in quiet.notes if quiet else ():  # the notes the error points to
            print(note, file=sys.stderr)
        return fail(PROG, error)
    if paths and not quiet:
        print(paths["results.md"].read_text(), flush=True)
    if paths:
        print(f"wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    return 0


if __name__ == "__main__":
    exit_process(main())
