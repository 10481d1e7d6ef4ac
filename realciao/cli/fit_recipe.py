"""``realciao-fit-recipe``: fit a degradation recipe's ranges to a folder of your photos.

    realciao-fit-recipe -i phone_photos/ -o degradations/my_photos.yml
    realciao-fit-recipe -i scans/ -o degradations/scans.yml --base phone_camera --hr my_clean_hr/ --scale 2
    realciao-fit-recipe -i phone_photos/ -o degradations/mine.yml --base auto   # the closest shipped base

Writes the recipe (a file ``load_recipe`` and training options accept, with a comment
header saying what it was fitted to and how well) and a report folder (``index.html`` and
PNGs; default: beside the recipe, ``NAME_report/``). The recipe records the scale it was
fitted for (``fitted_scale``; training at scales that leave it out warns). A fit that does
not bring the distance below the base recipe's writes nothing unless ``--force``.
Exit codes: 0 written, 1 the fit did not improve on the base (nothing written), 2 bad usage
or input (one line, before any work).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from realciao.cli import bad_output, exit_process, fail
from realciao.errors import RealciaoError
from realciao.files import output_problem
from realciao.logs import show_messages

PROG = "realciao-fit-recipe"
LOGGER = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    from realciao.fitting.fit import (
        AUTO_BASE,
        DEFAULT_BUDGET,
        DEFAULT_PRIOR,
        DEFAULT_SCALE,
        FIXED_EXTRA_EVALUATIONS,
        planned_evaluations,
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fit the ranges and probabilities of a degradation recipe so that LR images synthesised with "
        "it look like your photos: JPEG quality and blockiness, noise, blur and MSCN statistics, matched as "
        "distributions.",
    )
    parser.add_argument(
        "-i", "--input", nargs="+", action="extend", required=True, metavar="PHOTOS",
        help="folder(s) of photos (searched recursively) or image files",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="the recipe to write (.yml)")
    parser.add_argument(
        "--base", default="realesrgan",
        help=f"recipe whose structure is kept and whose ranges are fitted: a shipped name "
        f"(realesrgan, bsrgan, phone_camera), a .yml path, or {AUTO_BASE}: the shipped recipe closest to the "
        "photos, measured before the search (default: realesrgan)",
    )
    parser.add_argument(
        "--hr", default=None,
        help="folder of clean HR images to synthesise from (default: the built-in photos, no download)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help=f"the training scale the recipe is for, recorded in it as fitted_scale: one inside "
        f"your training's data.scale_min..scale_max (default {DEFAULT_SCALE:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the crops, the draws and the optimiser (default 0)"
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_BUDGET,
        help=f"candidate recipes the optimiser's search evaluates (default {DEFAULT_BUDGET}). "
        f"Choosing among the best, widening ranges the photos cannot pin down and holding out each "
        "measurement family then evaluate at "
        f"most {FIXED_EXTRA_EVALUATIONS} + 2 x (ranges of the base) more "
        f"({planned_evaluations('realesrgan', 0)} for "
        "realesrgan); the progress "
        "bar counts both",
    )
    parser.add_argument(
        "--prior",
        type=float,
        default=DEFAULT_PRIOR,
        help=f"how strongly the fit keeps each value near the base recipe's unless the photos pull it away: "
        f"the search minimises the distance plus PRIOR x the sum of squared moves, each in fractions of its "
        f"search box (default {DEFAULT_PRIOR:g}; 0: no pull, the closest match whatever it takes)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="report folder (default: OUTPUT_STEM_report beside the recipe)",
    )
    parser.add_argument("--name", default=None, help="the recipe's name (default: the output file's stem)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing recipe file")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the recipe even when its distance to the photos is not lower than the base recipe's",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    if args.output.suffix.lower() not in (".yml", ".yaml"):
        parser.error(f"-o {args.output}: the recipe file must end in .yml")
    if args.report is None:  # beside the recipe; an explicit one is checked in main
        args.report = args.output.with_name(f"{args.output.stem}_report")
        problem = output_problem(args.report, folder=True)
        if problem:
            parser.error(f"--report {args.report} (the default): {problem}")
    if args.output.exists() and not args.overwrite:
        parser.error(f"-o {args.output}: exists; pass --overwrite to replace it")
    if args.budget < 1:
        parser.error("--budget must be at least 1")
    if not args.prior >= 0:
        parser.error(f"--prior must be at least 0, got {args.prior:g}")
    if not args.scale >= 1:
        parser.error(f"--scale must be at least 1, got {args.scale:g}")


def main(argv: list[str] | None = None) -> int:
    """Exit code 0: recipe and report written; 1: the fit did not improve on the base (nothing
    written); 2: bad usage or input."""
    show_messages(stream="stderr")  # stdout: the result line
    problem = bad_output(argv, {("-o", "--output"): False, ("--report",): True})  # before torch loads
    if problem:
        return fail(PROG, problem)
    from tqdm import tqdm

    from realciao.degradations import load_recipe
    from realciao.fitting.fit import (
        AUTO_BASE,
        FitSettings,
        base_choice_text,
        fit_recipe,
        planned_evaluations,
        write_recipe,
    )
    from realciao.fitting.report import write_report
    from realciao.fitting.samples import measure_photos

    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    show = not args.no_progress
    start = time.perf_counter()
    try:
        base = args.base if args.base == AUTO_BASE else load_recipe(args.base)
        with tqdm(desc="measuring photos", unit="photo", disable=not show, file=sys.stderr) as bar:

            def on_photo(done: int, total: int, name: str) -> None:
                bar.total = total
                bar.set_postfix_str(name)
                bar.update(done - bar.n)

            photos = measure_photos(args.input, on_photo=on_photo)
        total = None if args.base == AUTO_BASE else planned_evaluations(base, args.budget)  # auto: once chosen
        with tqdm(total=total, desc="fitting", unit="recipe", disable=not show, file=sys.stderr) as bar:

            def on_trial(done: int, total: int, score: float, best: float) -> None:
                bar.total = total
                bar.set_postfix_str(f"best {best:.3f}" if done <= args.budget else "final choice and margins")
                bar.update(done - bar.n)

            result = fit_recipe(
                photos,
                base,
                args.hr,
                FitSettings(scale=args.scale, seed=args.seed, budget=args.budget, prior=args.prior),
                name=args.name or args.output.stem,
                on_trial=on_trial,
            )
        if result.base_choice:
            LOGGER.info(f"base {result.base.name}: {base_choice_text(result.base_choice)}")
        for note in result.notes[len(photos.notes) :]:
            LOGGER.info(f"note: {note}")
        for line in result.on_bounds:
            LOGGER.warning(f"on the search's bounds: {line}")
        distances = f"distance {result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}"
        if not (result.improved or args.force):
            print(
                f"{PROG}: the fitted recipe is no closer to the photos than {result.base.name} ({distances}); nothing "
                f"written. Try a larger --budget, another --base, or pass --force to write it anyway",
                file=sys.stderr,
            )
            return 1
        path = write_recipe(result, args.output)
        report = write_report(result, args.report, path)
    except RealciaoError as error:
        return fail(PROG, error)
    print(
        f"fitted {result.base.name} to {photos.photos} photos ({len(photos)} patches) for x{args.scale:g}: {distances}; "
        f"wrote {path} and {report} in {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    exit_process(main())
