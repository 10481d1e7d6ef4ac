"""The targets of ``realciao-fit-recipe``, measured.

    python scripts/bench_fit_recipe.py time       # fit realesrgan to the 20 RealSRSet photos, default budget
    python scripts/bench_fit_recipe.py heldout    # fit on one half of RealSRSet + RealSet65, measure on the other
    python scripts/bench_fit_recipe.py recovery   # photos from a known recipe: fitted ranges against the truth

``time`` prints the wall time of the whole fit (measuring the photos, the search, the
final selection) with the load average before and after. ``heldout`` splits the images of
``../shared/data/RealSRSet`` and ``RealSet65`` by name (sorted; every other name fits, the rest is
held out; RealSet65 repeats RealSRSet's photos, and one name's files stay on one side), fits
``realesrgan`` on the fitting half, and prints each recipe's distance to the held-out half:
``realesrgan``, ``phone_camera`` and the fitted recipe, on ``--heldout-samples`` synthesised
patches averaged over ``--heldout-seeds`` seeds; and, for scale, the distance of the fitting
half's photos themselves to the held-out half (what a perfect recipe would get). ``recovery``
makes 40 JPEG photos from a known recipe (colour Gaussian noise sigma in [5, 8], libjpeg quality
60..70), fits a wide base to them and prints the fitted ranges beside the true ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.degradations import parse_recipe
from realciao.devices import describe_cpu
from realciao.fitting.distance import distance, reference
from realciao.fitting.fit import DEFAULT_BUDGET, FitSettings, fit_recipe, recipe_distance
from realciao.fitting.known import TRUE_RANGES, WIDE_BASE, write_known_photos
from realciao.fitting.samples import measure_photos
from realciao.fitting.space import quantities
from realciao.imageio import list_images

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def progress(done: int, total: int, score: float, best: float) -> None:
    if done % 20 == 0 or done == total:
        print(f"  {done}/{total} candidates, best {best:.3f}", flush=True)


def run_time(args) -> BenchmarkTable:
    folder = SHARED / "RealSRSet"
    print(
        f"fit realesrgan to {folder} (budget {args.budget}, seed {args.seed}); torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; {load()}",
        flush=True,
    )
    start = time.perf_counter()
    photos = measure_photos(folder)
    measured = time.perf_counter()
    result = fit_recipe(
        photos, "realesrgan", args.hr, FitSettings(budget=args.budget, seed=args.seed), on_trial=progress
    )
    seconds = time.perf_counter() - start
    print(
        f"{photos.photos} photos ({len(photos)} patches) measured in {measured - start:.1f} s; fit in "
        f"{seconds:.1f} s total ({seconds / 60:.2f} min); distance {result.base_distance.total:.3f} -> "
        f"{result.fitted_distance.total:.3f}; {load()}"
    )
    row = {
        "photos": f"{folder.name}: {photos.photos} ({len(photos)} patches)",
        "budget": str(args.budget),
        "measuring s": f"{measured - start:.1f}",
        "whole fit s": f"{seconds:.1f}",
        "distance, base -> fitted": f"{result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}",
    }
    return BenchmarkTable(title="time: fit realesrgan to the photos", columns=list(row), rows=[row])


def split_files() -> tuple[list[Path], list[Path]]:
    files = list_images(SHARED / "RealSRSet") + list_images(SHARED / "RealSet65")
    names = sorted({f.stem for f in files})
    fitting = set(names[0::2])
    return [f for f in files if f.stem in fitting], [f for f in files if f.stem not in fitting]


def run_heldout(args) -> BenchmarkTable:
    fitting_files, held_files = split_files()
    fitting, held = measure_photos(fitting_files), measure_photos(held_files)
    print(
        f"fitting half: {fitting.photos} files ({len(fitting)} patches); held-out half: {held.photos} files "
        f"({len(held)} patches); HR: {args.hr or 'built-in photos'}; {load()}",
        flush=True,
    )
    start = time.perf_counter()
    result = fit_recipe(
        fitting, "realesrgan", args.hr, FitSettings(budget=args.budget, seed=args.seed), on_trial=progress
    )
    print(
        f"fitted in {time.perf_counter() - start:.0f} s: on the fitting half {result.base_distance.total:.3f} -> "
        f"{result.fitted_distance.total:.3f}",
        flush=True,
    )
    print(
        f"held-out distance ({args.heldout_samples} patches, mean over seeds "
        f"{', '.join(str(100 + s) for s in range(args.heldout_seeds))}):"
    )
    rows, table = {}, []
    for label, recipe in (
        ("realesrgan", "realesrgan"),
        ("phone_camera", "phone_camera"),
        ("fitted", result.recipe),
    ):
        runs = [
            recipe_distance(held, recipe, args.hr, seed=100 + s, samples=args.heldout_samples)
            for s in range(args.heldout_seeds)
        ]
        rows[label] = float(np.mean([r.total for r in runs]))
        terms = {name: np.mean([r.terms[name] for r in runs]) for name in runs[0].terms}
        print(
            f"  {label:13s} {rows[label]:.3f}  " + " ".join(f"{k} {v:.2f}" for k, v in terms.items()),
            flush=True,
        )
        table.append(
            {
                "recipe": label,
                "held-out distance": f"{rows[label]:.3f}",
                "terms": " ".join(f"{k} {v:.2f}" for k, v in terms.items()),
            }
        )
    floor = distance(reference(held), fitting)
    table.append(
        {
            "recipe": "photos (fit half)",
            "held-out distance": f"{floor.total:.3f}",
            "terms": " ".join(f"{k} {v:.2f}" for k, v in floor.terms.items()),
        }
    )
    print(
        f"  {'photos (fit half)':13s} {floor.total:.3f}  "
        + " ".join(f"{k} {v:.2f}" for k, v in floor.terms.items())
    )
    print(
        f"fitted / realesrgan = {rows['fitted'] / rows['realesrgan']:.2f}; "
        f"fitted / phone_camera = {rows['fitted'] / rows['phone_camera']:.2f} (target: at most 0.5 each); {load()}"
    )
    if args.save:
        from realciao.fitting.fit import write_recipe
        from realciao.fitting.report import write_report

        path = write_recipe(result, Path(args.save) / "heldout_fitted.yml")
        print(f"wrote {path} and {write_report(result, Path(args.save) / 'heldout_report', path)}")
    title = (
        f"held out: fitted on one half of RealSRSet + RealSet65, distance to the other half "
        f"({args.heldout_samples} patches, mean over {args.heldout_seeds} seeds)"
    )
    return BenchmarkTable(title=title, columns=list(table[0]), rows=table)


def run_recovery(args) -> BenchmarkTable:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        qualities, sigmas = write_known_photos(folder, args.recovery_photos)
        photos = measure_photos(folder)
        read = dict(zip((Path(s).name for s in photos.sources), photos.values["jpeg_quality"]))
        exact = sum(read[f"p{i:02d}.jpg"] == q for i, q in enumerate(qualities))
        print(
            f"{len(qualities)} photos of 128 px; truth: colour Gaussian noise sigma {sigmas.min():.2f}..{sigmas.max():.2f} "
            f"(in [5, 8]), libjpeg quality 60..70; qualities read from the tables exact for {exact}/{len(qualities)}"
        )
        start = time.perf_counter()
        result = fit_recipe(
            photos, parse_recipe(WIDE_BASE), args.hr, FitSettings(budget=args.budget, seed=args.seed)
        )
        print(
            f"fitted in {time.perf_counter() - start:.0f} s (budget {args.budget}); distance "
            f"{result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}"
        )
        table = []
        for quantity in quantities(result.recipe):
            low, high = TRUE_RANGES[quantity.name]
            contains = quantity.value[0] <= low and quantity.value[1] >= high
            print(
                f"  {quantity.label}: fitted {quantity.text()} (margin {result.widened.get(quantity.name, 0):.1%} of "
                f"its bounds), true [{low}, {high}]: {'contains it' if contains else 'DOES NOT contain it'}"
            )
            table.append(
                {
                    "range": quantity.label,
                    "fitted": quantity.text(),
                    "true": f"[{low}, {high}]",
                    "contains the true range": "yes" if contains else "no",
                }
            )
        print(load())
    title = (
        f"recovery: {len(qualities)} photos from a known recipe; JPEG qualities read exactly for "
        f"{exact}/{len(qualities)}"
    )
    return BenchmarkTable(title=title, columns=list(table[0]), rows=table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", default=["time"], choices=["time", "heldout", "recovery", "all"])
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hr", default=None, help="HR folder (default: the built-in photos)")
    parser.add_argument("--heldout-samples", type=int, default=256)
    parser.add_argument("--heldout-seeds", type=int, default=2)
    parser.add_argument("--recovery-photos", type=int, default=40)
    parser.add_argument("--save", default=None, help="folder for the held-out fit's recipe and report")
    add_json_argument(parser)
    args = parser.parse_args()
    what = ["time", "heldout", "recovery"] if "all" in args.what else args.what
    print(describe_cpu())
    if not SHARED.is_dir() and ("time" in what or "heldout" in what):
        sys.exit(f"needs {SHARED} (the shared data beside the checkout)")
    tables = [
        {"time": run_time, "heldout": run_heldout, "recovery": run_recovery}[name](args) for name in what
    ]
    if args.json:
        notes = [
            f"budget {args.budget}, seed {args.seed}; HR: {args.hr or 'the built-in photos'}; "
            f"torch threads {torch.get_num_threads()}"
        ]
        print(f"wrote {write_results(args.json, 'fit_recipe', tables, notes)}")


if __name__ == "__main__":
    main()
