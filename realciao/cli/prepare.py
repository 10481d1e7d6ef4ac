"""``realciao-prepare``: make training data the way BasicSR and Real-ESRGAN users do, and screen it.

    realciao-prepare subimages -i DF2K_HR -o DF2K_HR_sub --crop 480 --step 240
    realciao-prepare multiscale -i DF2K_HR -o DF2K_multiscale
    realciao-prepare lmdb -i DF2K_HR_sub -o DF2K_HR_sub.lmdb
    realciao-prepare meta-info -i DF2K_HR_sub -o meta_info.txt
    realciao-prepare check -i my_photos --report check.csv --html check_html

Every subcommand runs ``--workers`` processes (default: the available cores) with a progress
bar, prints one line per unreadable input and skips it, writes files atomically, and
continues an interrupted run with ``--resume``. Exit codes: 0 done, 1 ``check`` rejected
some image, 2 bad usage or input (one line), 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from pathlib import Path

from realciao.cli import exit_process, fail
from realciao.errors import RealciaoError
from realciao.files import output_problem
from realciao.logs import show_messages

PROG = "realciao-prepare"
LOGGER = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser, output_help: str | None) -> None:
    from realciao.prepare.runner import default_workers

    parser.add_argument(
        "-i", "--input", nargs="+", action="extend", required=True, metavar="IMAGES",
        help="folder(s) (searched recursively) or image files",
    )
    if output_help:
        parser.add_argument("-o", "--output", required=True, type=Path, help=output_help)
    parser.add_argument(
        "--workers", type=int, default=default_workers(),
        help=f"processes (default: the available cores, {default_workers()} here)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run; finished files are kept"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _png_filters(parser: argparse.ArgumentParser) -> None:
    from realciao.imageio import PNG_FILTERS

    parser.add_argument(
        "--png-filters", choices=PNG_FILTERS, default="fast",
        help="libpng row filters tried: fast (None, Sub, Up: about the same size, faster to write and "
        "to read) or all (as BasicSR's scripts); the pixels are the same (default fast)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Prepare and screen super-resolution training data."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("subimages", help="cut images into overlapping sub-images (BasicSR's crops)")
    _common(sub, "folder of sub-images")
    sub.add_argument("--crop", type=int, default=480, help="sub-image side (default 480)")
    sub.add_argument("--step", type=int, default=240, help="distance between crops (default 240)")
    sub.add_argument(
        "--thresh-size",
        type=int,
        default=0,
        help="an edge strip wider than this gets one more crop flush with the edge; a side shorter "
        "than the crop is kept whole when longer than this, else the image is skipped (default 0)",
    )
    sub.add_argument("--png-level", type=int, default=3, help="PNG compression 0-9 (default 3, as BasicSR)")
    _png_filters(sub)

    multi = commands.add_parser(
        "multiscale", help="Lanczos downscales plus a shortest-edge version (Real-ESRGAN)"
    )
    _common(multi, "folder of downscaled images")
    multi.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.75, 0.5, 1 / 3],
        help="scale factors (default 0.75 0.5 0.3333)",
    )
    multi.add_argument(
        "--shortest",
        type=int,
        default=400,
        help="also write a version whose shortest edge is this many px; 0 for none (default 400)",
    )

    lmdb = commands.add_parser("lmdb", help="pack images into a BasicSR LMDB (data.mdb + meta_info.txt)")
    _common(lmdb, "the LMDB folder to write (NAME.lmdb)")
    lmdb.add_argument(
        "--paired-lr",
        default=None,
        metavar="LRFOLDER",
        help="LR images with the same names: written to a second LMDB under the same keys",
    )
    lmdb.add_argument(
        "--lr-output",
        type=Path,
        default=None,
        help="the LR LMDB (default: LRFOLDER's name + .lmdb beside OUTPUT)",
    )
    lmdb.add_argument(
        "--png-level", type=int, default=1, help="PNG compression 0-9 of the values (default 1, as BasicSR)"
    )
    _png_filters(lmdb)
    lmdb.add_argument(
        "--commit-every",
        type=int,
        default=500,
        help="images per LMDB transaction: what a killed build may have to redo (default 500)",
    )

    meta = commands.add_parser(
        "meta-info", help="write a meta-info list (BasicSR / Real-ESRGAN / data.meta_info)"
    )
    _common(meta, "the meta-info file to write")
    meta.add_argument(
        "--root",
        type=Path,
        default=None,
        help="paths are written relative to this (default: the input folder; the common parent "
        "of several); give realciao's data.hr_folders[0] the same folder",
    )
    meta.add_argument(
        "--paired-lr",
        default=None,
        metavar="LRFOLDER",
        help="write Real-ESRGAN paired lines 'GT, LQ' (matched by name; LQ relative to LRFOLDER's parent)",
    )

    check = commands.add_parser("check", help="screen GT for JPEG artefacts, noise, blur and size")
    _common(check, None)
    check.add_argument("--report", required=True, type=Path, help="CSV with every measurement and verdict")
    check.add_argument(
        "--html", type=Path, default=None, metavar="DIR", help="write DIR/index.html with the rejected images"
    )
    check.add_argument(
        "--move-rejects",
        type=Path,
        default=None,
        metavar="DIR",
        help="move rejected images here (path below the input folder kept)",
    )
    from realciao.prepare.quality import Thresholds

    defaults = Thresholds()
    for flag, kind, field, what in (
        ("--min-jpeg-quality", float, "min_jpeg_quality", "reject JPEGs whose tables say a lower quality"),
        ("--max-blockiness", float, "max_blockiness", "reject 8x8 blockiness above this"),
        ("--max-noise", float, "max_noise", "reject white noise above this many 8-bit levels"),
        ("--max-blur", float, "max_blur", "reject edge blur above this many px"),
        ("--min-side", int, "min_side", "reject images with a side shorter than this"),
    ):
        default = getattr(defaults, field)
        check.add_argument(flag, type=kind, default=default, help=f"{what} (default {default:g})")
    return parser


# each subcommand's outputs: (option, attribute, whether a folder), checked before any work
OUTPUTS = {
    "subimages": [("-o", "output", True)],
    "multiscale": [("-o", "output", True)],
    "lmdb": [("-o", "output", True), ("--lr-output", "lr_output", True)],
    "meta-info": [("-o", "output", False)],
    "check": [("--report", "report", False), ("--html", "html", True)],
}


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    for option, name, folder in OUTPUTS[args.command]:
        path = getattr(args, name)
        problem = output_problem(path, folder) if path else None
        if problem:
            parser.error(f"{option} {path}: {problem}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.overwrite and args.resume:
        parser.error("--overwrite and --resume exclude each other")
    if not 0 <= getattr(args, "png_level", 0) <= 9:
        parser.error(f"--png-level must be 0 to 9, got {args.png_level}")


def log_notes(notes: list[str]) -> None:
    for note in notes:
        LOGGER.warning(note)


def run(args) -> int:
    from realciao.prepare.runner import gather_images

    images, notes = gather_images(args.input)
    start = time.perf_counter()
    summary, message, code = COMMANDS[args.command](args, images, notes)
    skipped = len(summary.skipped) + len(notes)
    print(
        f"{message}{f'; {skipped} input(s) skipped (named above)' if skipped else ''} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return code


def run_subimages(args, images, notes):
    from realciao.prepare.subimages import SubimageSettings, check_settings, extract_subimages

    settings = SubimageSettings(args.crop, args.step, args.thresh_size, args.png_level, args.png_filters)
    check_settings(settings)
    return run_into_folder(
        args, images, notes, functools.partial(extract_subimages, settings=settings), "sub-images"
    )


def run_multiscale(args, images, notes):
    from realciao.prepare.multiscale import MultiscaleSettings, check_settings, make_multiscale

    settings = MultiscaleSettings(tuple(args.scales), args.shortest or None)
    check_settings(settings)
    return run_into_folder(
        args, images, notes, functools.partial(make_multiscale, settings=settings), "downscaled images"
    )


def run_into_folder(args, images, notes, make, noun: str):
    """A step that writes files into the output folder: claim it, then ``make`` what is missing."""
    from realciao.prepare.runner import claim_output_folder, keyed_images

    keyed_images(images)  # names that would collide: refused before the output is touched
    claim_output_folder(args.output, args.overwrite, args.resume)
    log_notes(notes)
    summary = make(images, args.output, workers=args.workers, progress=not args.no_progress)
    count = sum(result.values or 0 for result in summary.done)
    return summary, f"{count} {noun} of {len(summary.done)} images in {args.output}", 0


def run_lmdb(args, images, notes):
    from realciao.prepare.lmdb_store import LmdbSettings, build_lmdb, claim_lmdb, plan_entries
    from realciao.prepare.runner import gather_images

    lr_images, lr_output = None, None
    if args.paired_lr:
        lr_images, lr_notes = gather_images([args.paired_lr])
        notes = notes + lr_notes
        lr_output = args.lr_output or args.output.parent / f"{Path(args.paired_lr).name}.lmdb"
    entries, plan_notes = plan_entries(images, lr_images)
    if not entries:
        raise RealciaoError(f"{args.output}: no image to write; nothing written")
    for path in [args.output] + ([lr_output] if lr_output else []):
        claim_lmdb(path, args.overwrite, args.resume)
    log_notes(notes + plan_notes)
    summary = build_lmdb(
        entries,
        args.output,
        LmdbSettings(args.png_level, args.png_filters, max(1, args.commit_every)),
        args.workers,
        lr_output,
        not args.no_progress,
    )
    written = f"{args.output}" + (f" and {lr_output}" if lr_output else "")
    return summary, f"{len(entries) - len(summary.skipped)} images in {written}", 0


def run_meta_info(args, images, notes):
    from realciao.prepare.meta_info import default_root, write_meta_info
    from realciao.prepare.runner import gather_images, match_pairs

    if args.output.exists() and not (args.overwrite or args.resume):
        raise RealciaoError(f"{args.output}: exists; pass --overwrite to replace it")
    folders = list(dict.fromkeys(folder for _, folder in images))
    root = args.root or default_root(folders)
    lr_images = lr_root = None
    log_notes(notes)
    if args.paired_lr:
        lr_found, lr_notes = gather_images([args.paired_lr])
        pairs, pair_notes = match_pairs(images, lr_found)
        log_notes(lr_notes + pair_notes)
        gt = [path for _, path, _ in pairs]
        lr_images, lr_root = [path for _, _, path in pairs], Path(args.paired_lr).resolve().parent
        root = args.root or Path(folders[0]).resolve().parent
    else:
        gt = [path for path, _ in images]
    summary = write_meta_info(gt, root, args.output, args.workers, not args.no_progress, lr_images, lr_root)
    return summary, f"{len(gt) - len(summary.skipped)} lines in {args.output} (paths relative to {root})", 0


def run_check(args, images, notes):
    from realciao.prepare.quality import (
        Thresholds,
        check_images,
        move_rejects,
        read_report,
        write_html,
        write_report,
    )

    if args.report.exists() and not (args.overwrite or args.resume):
        raise RealciaoError(
            f"{args.report}: exists; pass --resume to continue it or --overwrite to replace it"
        )
    limits = Thresholds(
        args.min_jpeg_quality, args.max_blockiness, args.max_noise, args.max_blur, args.min_side
    )
    log_notes(notes)
    done = read_report(args.report) if args.resume and args.report.exists() else {}
    rows, summary = check_images(images, limits, args.workers, done, not args.no_progress)
    write_report(args.report, rows)
    rejected = [row for row in rows if row.verdict == "reject"]
    for row in rejected:
        print(f"reject {row.path}: {row.reasons}")
    extra = ""
    if args.html:
        extra += f"; {write_html(args.html, rows, limits)}"
    if args.move_rejects and rejected:
        extra += f"; {move_rejects(rows, images, args.move_rejects)} moved to {args.move_rejects}"
    return (
        summary,
        f"{len(rejected)} of {len(rows)} images rejected; report {args.report}{extra}",
        1 if rejected else 0,
    )


COMMANDS = {
    "subimages": run_subimages,
    "multiscale": run_multiscale,
    "lmdb": run_lmdb,
    "meta-info": run_meta_info,
    "check": run_check,
}


def main(argv: list[str] | None = None) -> int:
    show_messages(stream="stderr")  # stdout: the rejects and the summary line
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    try:
        return run(args)
    except RealciaoError as error:
        return fail(PROG, error)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; finished files are kept: rerun with --resume to continue", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    exit_process(main())
