"""The targets of ``realciao-fit-recipe``, measured.

    python scripts/bench_fit_recipe.py time       # fit the 20 RealSRSet photos, default base and budget
    python scripts/bench_fit_recipe.py heldout    # fit on one half of RealSRSet + RealSet65, measure on the other
    python scripts/bench_fit_recipe.py recovery   # photos from a known recipe: fitted ranges against the truth
    python scripts/bench_fit_recipe.py endtoend   # a model fine-tuned on the fitted recipe against one on the base

``time`` prints the wall time of the whole fit (measuring the photos, the search, the
final selection) with the load average before and after. ``heldout`` splits the images of
``../shared/data/RealSRSet`` and ``RealSet65`` by name (sorted; every other name fits, the rest is
held out; RealSet65 repeats RealSRSet's photos, and one name's files stay on one side), fits
``--base`` on the fitting half, and prints each recipe's distance to the held-out half:
``realesrgan``, ``phone_camera`` and the fitted recipe, on ``--heldout-samples`` synthesised
patches averaged over ``--heldout-seeds`` seeds; and, for scale, the distance of the fitting
half's photos themselves to the held-out half (what a perfect recipe would get). ``recovery``
makes 40 JPEG photos from a known recipe (colour Gaussian noise sigma in [5, 8], libjpeg quality
60..70), fits a wide base to them and prints the fitted ranges beside the true ones.
``--base`` (every part; default ``realesrgan``, as ``realciao-fit-recipe``'s): a shipped
name, a .yml path, or ``auto`` (the shipped recipe closest to the photos).

``endtoend`` is the proof that matters to users, on a case with ground truth. A hidden camera
(``realciao.fitting.known.camera_lr``: optical blur, area x4, Poisson-Gaussian noise, chroma
smoothing, unsharp mask, one JPEG; plain numpy/OpenCV, not a recipe) photographs the clean HR
images of ``../shared/data/B100`` (sorted names: every other one is a user photo for the fit,
the rest is held out). ``--base`` is fitted to the user photos at x4 (HR to synthesise
from: ``../shared/data/train_hr``, or ``--hr``); a small CiaoSR (edsr-baseline-ciaosr, 32
channels, 4 blocks) is trained on bicubic x1-x4 from ``train_hr``, and fine-tuned from it
twice at x4 (``--finetune-iterations``, default 800) with the same seed, iterations and HR
images (``train_hr``, never B100): once on the fitted recipe, once on the base (with ``--base
auto``: the shipped recipe the fit chose). Each model
(and bicubic, and the start model) upscales the held-out camera photos (fixed seeds) x4 and
is scored against the clean HR: Y-PSNR and SSIM, shave 4. Prints the wall time of every
phase; ``--work`` keeps the photos, the fitted recipe and the experiments (default: a new
temporary folder, kept).
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
from realciao.degradations import load_recipe, parse_recipe
from realciao.devices import describe_cpu
from realciao.fitting import independent
from realciao.fitting.distance import distance, reference
from realciao.fitting.fit import (
    AUTO_BASE,
    DEFAULT_BUDGET,
    DEFAULT_PRIOR,
    FitSettings,
    choose_base,
    fit_recipe,
    recipe_distance,
    recipe_header,
)
from realciao.fitting.known import (
    TRUE_RANGES,
    WIDE_BASE,
    camera_hr,
    camera_lr,
    write_camera_photos,
    write_known_photos,
)
from realciao.fitting.samples import (
    DEFAULT_PATCH,
    DEFAULT_SAMPLES,
    load_hr,
    make_plan,
    measure_photos,
    synthesise,
)
from realciao.fitting.space import quantities
from realciao.imageio import list_images, read_image, to_float_rgb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELDOUT_CROPS_PER_PHOTO = 8


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def progress(done: int, total: int, score: float, best: float) -> None:
    if done % 20 == 0 or done == total:
        print(f"  {done}/{total} candidates, best {best:.3f}", flush=True)


def fitted_base(args, base) -> str:
    """The base a fit started from, and that ``--base auto`` chose it."""
    return f"{base.name} (chosen by --base {AUTO_BASE})" if args.base == AUTO_BASE else base.name


def run_time(args) -> BenchmarkTable:
    folder = SHARED / "RealSRSet"
    print(
        f"fit {args.base} to {folder} (budget {args.budget}, seed {args.seed}); torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; {load()}",
        flush=True,
    )
    start = time.perf_counter()
    photos = measure_photos(folder)
    measured = time.perf_counter()
    result = fit_recipe(
        photos, args.base, args.hr, FitSettings(budget=args.budget, seed=args.seed), on_trial=progress
    )
    seconds = time.perf_counter() - start
    print(
        f"{photos.photos} photos ({len(photos)} patches) measured in {measured - start:.1f} s; fit in "
        f"{seconds:.1f} s total ({seconds / 60:.2f} min); base {fitted_base(args, result.base)}; distance "
        f"{result.base_distance.total:.3f} -> "
        f"{result.fitted_distance.total:.3f}; {load()}"
    )
    row = {
        "photos": f"{folder.name}: {photos.photos} ({len(photos)} patches)",
        "budget": str(args.budget),
        "measuring s": f"{measured - start:.1f}",
        "whole fit s": f"{seconds:.1f}",
        "distance, base -> fitted": f"{result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}",
    }
    return BenchmarkTable(title=f"time: fit {fitted_base(args, result.base)} to the photos", columns=list(row),
                          rows=[row])


def split_files() -> tuple[list[Path], list[Path]]:
    files = list_images(SHARED / "RealSRSet") + list_images(SHARED / "RealSet65")
    names = sorted({f.stem for f in files})
    fitting = set(names[0::2])
    return [f for f in files if f.stem in fitting], [f for f in files if f.stem not in fitting]


def heldout_crops(files: list[Path], seed: int) -> list[np.ndarray]:
    """LR-patch-sized crops of the photos at random offsets (any JPEG grid phase)."""
    images = [to_float_rgb(read_image(path).pixels) for path in files]
    return independent.random_crops(images, DEFAULT_PATCH, HELDOUT_CROPS_PER_PHOTO, seed)


def synthesised_patches(recipe, pool, samples: int, seed: int) -> list[np.ndarray]:
    return list(synthesise(load_recipe(recipe) if isinstance(recipe, str) else recipe,
                           make_plan(pool, 4.0, DEFAULT_PATCH, samples, seed))[0])


def run_heldout(args) -> BenchmarkTable:
    """The fit on one half, then two distances to the other half: the fit's own (its
    measurements) and the independent one (``realciao.fitting.independent``: statistics the fit
    does not use, on crops at random offsets)."""
    fitting_files, held_files = split_files()
    fitting, held = measure_photos(fitting_files), measure_photos(held_files)
    print(
        f"fitting half: {fitting.photos} files ({len(fitting)} patches); held-out half: {held.photos} files "
        f"({len(held)} patches); HR: {args.hr or 'built-in photos'}; {load()}",
        flush=True,
    )
    start = time.perf_counter()
    result = None
    if args.recipe:
        fitted = load_recipe(args.recipe)
        print(f"fitted recipe read from {args.recipe} (no fit)")
    else:
        result = fit_recipe(fitting, args.base, args.hr,
                            FitSettings(budget=args.budget, seed=args.seed, prior=args.prior), on_trial=progress)
        fitted = result.recipe
        print(
            f"fitted {fitted_base(args, result.base)} in {time.perf_counter() - start:.0f} s (prior {args.prior:g}): on the fitting half "
            f"{result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}",
            flush=True,
        )
        for line in recipe_header(result).splitlines():
            if line.startswith(("  ", "Held out", "On the", "Parameters that")):
                print(f"  | {line}")
    seeds = [100 + s for s in range(args.heldout_seeds)]
    pool = load_hr(args.hr, min_side=DEFAULT_PATCH * 4)  # what recipe_distance would load at x4, once
    photo_stats = independent.measure(heldout_crops(held_files, seed=7))
    print(
        f"held-out distances ({args.heldout_samples} synthesised patches, mean over seeds "
        f"{', '.join(map(str, seeds))}); the fit's = its own measurements, independent = "
        f"{', '.join(independent.STATISTICS)} on {len(photo_stats['grid_peak'])} random-offset crops:"
    )
    own, other, table = {}, {}, []
    for label, recipe in (("realesrgan", "realesrgan"), ("phone_camera", "phone_camera"), ("fitted", fitted)):
        runs = [recipe_distance(held, recipe, pool, seed=seed, samples=args.heldout_samples) for seed in seeds]
        own[label] = float(np.mean([r.total for r in runs]))
        checks = [independent.independent_distance(
            photo_stats, independent.measure(synthesised_patches(recipe, pool, args.heldout_samples, seed)))
            for seed in seeds]
        terms = {name: float(np.mean([c[name] for c in checks])) for name in checks[0]}
        other[label] = terms["total"]
        detail = " ".join(f"{k} {v:.2f}" for k, v in terms.items() if k != "total")
        print(f"  {label:13s} fit's {own[label]:.3f}  independent {other[label]:.3f} ({detail})", flush=True)
        table.append({"recipe": label, "fit's distance": f"{own[label]:.3f}",
                      "independent distance": f"{other[label]:.3f}", "independent terms": detail})
    floor = distance(reference(held), fitting)
    floor_other = independent.independent_distance(photo_stats, independent.measure(heldout_crops(fitting_files, 8)))
    detail = " ".join(f"{k} {v:.2f}" for k, v in floor_other.items() if k != "total")
    print(f"  {'photos (fit half)':13s} fit's {floor.total:.3f}  independent {floor_other['total']:.3f} ({detail})")
    table.append({"recipe": "photos (fit half)", "fit's distance": f"{floor.total:.3f}",
                  "independent distance": f"{floor_other['total']:.3f}", "independent terms": detail})
    ratios = (other["fitted"] / other["realesrgan"], other["fitted"] / other["phone_camera"])
    print(
        f"independent: fitted / realesrgan = {ratios[0]:.2f}; fitted / phone_camera = {ratios[1]:.2f} "
        f"(target: at most 0.85 each); fit's own: fitted / realesrgan = {own['fitted'] / own['realesrgan']:.2f}; "
        f"{load()}"
    )
    if args.save and result is not None:
        from realciao.fitting.fit import write_recipe
        from realciao.fitting.report import write_report

        path = write_recipe(result, Path(args.save) / "heldout_fitted.yml")
        print(f"wrote {path} and {write_report(result, Path(args.save) / 'heldout_report', path)}")
    title = (
        f"held out: {fitted_base(args, result.base) if result else 'a recipe'} fitted on one half of RealSRSet + RealSet65 "
        f"(prior {args.prior:g}), distance to the other "
        f"half ({args.heldout_samples} patches, mean over {args.heldout_seeds} seeds); independent / realesrgan "
        f"{ratios[0]:.2f}, / phone_camera {ratios[1]:.2f}"
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


# ----------------------------------------------------------------------------- endtoend
CAMERA_SEED = 1000  # the user photos' camera draws (photo i: seed (CAMERA_SEED, i))
EVAL_SEED = 2000  # the held-out pairs' camera draws (image i: EVAL_SEED + i)
START_LR, FINETUNE_LR = 1e-3, 5e-4  # chosen before any run, never tuned on the held-out images
# Twice the first 400: as long as the 30 min on 2 cores allows (realesrgan: 25 min);
# docs/training/finetuning.md gives the figures at both lengths
FINETUNE_ITERATIONS = 800
SMALL_CIAOSR = {"channels": 32, "num_blocks": 4, "mlp_hidden": [64, 64]}  # options/quickstart.yml's


def split_b100(count: int | None) -> tuple[list[Path], list[Path]]:
    """B100's HR images by sorted name: every other one for the fit, the rest held out; at
    most ``count`` of each."""
    files = list_images(SHARED / "B100" / "HR")
    return files[0::2][:count], files[1::2][:count]


def train_options(
    work: Path, name: str, recipe: str, iterations: int, seed: int, start: Path | None, threads: int | None = 1
) -> dict:
    """One Net-stage run on ``train_hr``: from scratch on bicubic x1-x4 (``start`` None), or a
    fine-tune of ``start`` at x4 (the scale of the fit and of the evaluation)."""
    generator = {"name": "edsr-baseline-ciaosr"}
    if start is None:
        generator["options"] = SMALL_CIAOSR
    else:
        generator["pretrained"] = str(start)
    lr = START_LR if start is None else FINETUNE_LR
    return {
        "name": name,
        "output_dir": str(work / "experiments"),
        "seed": seed,
        "generator": generator,
        "data": {
            "hr_folders": [str(SHARED / "train_hr")],
            "recipe": recipe,
            "lr_patch": 32,
            "scale_min": 1.0 if start is None else 4.0,
            "scale_max": 4.0,
            "batch_size": 8,
            "queries_per_patch": 1024,
            "num_workers": 0,
            "pool_size": 0,
        },
        "train": {
            "stage": "net",
            "iterations": iterations,
            "optimizer": {"lr": lr},
            "schedule": {"milestones": [max(1, iterations * 3 // 4)], "gamma": 0.5},
            "ema_decay": 0.99,
            "mixed_precision": "fp32",
            "threads": threads,
            "log_every": max(1, iterations // 5),
        },
        "checkpoint": {"every": iterations, "keep_last": 1},
        "validation": {"every": iterations},  # no validation set: the evaluation below is the check
        "logging": {"trackers": []},
    }


def train_model(options: dict, work: Path) -> Path:
    """Train as ``train_realciao.py -opt FILE`` would (in this process); the release weights."""
    import yaml

    from realciao.train.config import load_config
    from realciao.train.trainer import Trainer

    path = work / f"{options['name']}.yml"
    path.write_text(yaml.safe_dump(options, sort_keys=False))
    threads = torch.get_num_threads()
    try:
        return Trainer(load_config(path), config_path=str(path)).run()
    finally:
        torch.set_num_threads(threads)  # the trainer sets its own


def evaluate_models(
    models: dict[str, Path | None], held: list[Path], scale: int = 4
) -> dict[str, tuple[float, float]]:
    """Mean Y-PSNR and SSIM (shave ``scale``) of each model's x``scale`` of the camera's held-out
    photos against the clean HR; a model of None is bicubic (MATLAB's) of the same LR."""
    from realciao.bicubic import matlab_resize
    from realciao.checkpoint import load_generator
    from realciao.imageio import read_image
    from realciao.metrics import psnr, quantize_8bit, ssim
    from realciao.upscaling import upscale_image

    def tensor(image: np.ndarray) -> torch.Tensor:
        image = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]

    pairs = []
    for index, path in enumerate(held):
        hr = read_image(path).pixels
        lr, _ = camera_lr(hr, EVAL_SEED + index)
        pairs.append((lr, tensor(camera_hr(hr))))
    scores = {}
    for label, weights in models.items():
        model = None if weights is None else load_generator(weights)
        values = []
        for lr, hr in pairs:
            size = tuple(hr.shape[-2:])
            if model is None:
                sr = quantize_8bit(matlab_resize(tensor(lr), size))
            else:
                sr = tensor(upscale_image(model, lr, size=size, tile=0))
            values.append((psnr(sr, hr, shave=scale), ssim(sr, hr, shave=scale)))
        scores[label] = tuple(float(v) for v in np.mean(values, axis=0))
    return scores


def plain_target(recipe, path: Path) -> Path:
    """``recipe`` without its GT sharpening, written to ``path`` (the same degradations)."""
    from realciao.degradations.recipe import dump_recipe

    plain = recipe.model_copy(update={"gt_sharpening": None, "degrade_sharpened_gt": False})
    path.write_text(dump_recipe(plain, f"{recipe.name} without gt_sharpening: trains towards the plain HR"))
    return path


def run_endtoend(args) -> BenchmarkTable:
    fit_files, held = split_b100(args.endtoend_images)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fit_endtoend_"))
    work.mkdir(parents=True, exist_ok=True)
    hr = args.hr or SHARED / "train_hr"
    iterations, start_iterations, threads = args.finetune_iterations, args.start_iterations, args.threads
    print(
        f"endtoend in {work}: {len(fit_files)} B100 photos to fit, {len(held)} held out; budget {args.budget}, "
        f"{args.fit_samples} samples; start {start_iterations} iterations, fine-tunes {iterations}; "
        f"torch threads for training and evaluation {threads or 'as the trainer chooses'}; {load()}",
        flush=True,
    )
    phases: dict[str, float] = {}
    begin = clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = now - clock
        clock = now
        print(f"[{name}: {phases[name]:.0f} s; {load()}]", flush=True)

    written = write_camera_photos(work / "photos", fit_files, CAMERA_SEED)
    photos = measure_photos(work / "photos")
    qualities = [quality for _, quality, _ in written]
    print(f"{photos.photos} camera photos ({len(photos)} patches), JPEG quality "
          f"{min(qualities)}..{max(qualities)}")
    phase("photos")
    from realciao.fitting.fit import write_recipe

    settings = FitSettings(scale=4, seed=args.seed, budget=args.budget, samples=args.fit_samples, prior=args.prior)
    if args.fitted:  # a fit made before (the same photos and settings: the fit is deterministic)
        base = load_recipe(args.base) if args.base != AUTO_BASE else choose_base(photos, hr, settings)[0]
        recipe = Path(args.fitted)
        fit_text = f"fit reused from {recipe}"
        print(f"{fit_text} (not fitted again)")
        for quantity in quantities(load_recipe(recipe)):
            print(f"  {quantity.label}: {quantity.text()}")
    else:
        result = fit_recipe(photos, args.base, hr, settings, on_trial=progress)
        base = result.base
        recipe = write_recipe(result, work / "fitted.yml")
        fit_text = (f"fit: {len(fit_files)} photos, base {fitted_base(args, base)}, budget {args.budget}, distance "
                    f"{result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}")
        print(f"fitted: distance {result.base_distance.total:.3f} -> {result.fitted_distance.total:.3f}; "
              f"wrote {recipe}")
        for quantity in quantities(result.recipe):
            print(f"  {quantity.label}: {quantity.text()}")
    phase("fit")
    # Both arms train towards the plain HR, which the evaluation scores against: realesrgan (and
    # so the fitted recipe, which keeps it) otherwise trains towards an unsharp-masked GT
    base_recipe, recipe = (plain_target(source, work / f"{label}_plain_gt.yml")
                           for source, label in ((base, "base"), (load_recipe(recipe), "fitted")))
    start = train_model(
        train_options(work, "start", "bicubic", start_iterations, args.seed, None, threads), work
    )
    phase("start model")
    # the two arms: the same start, seed, iterations and HR images; only data.recipe differs
    base_model = train_model(
        train_options(work, "finetune_base", str(base_recipe), iterations, args.seed, start, threads), work
    )
    phase(f"fine-tune on {base.name}")
    fitted = train_model(
        train_options(work, "finetune_fitted", str(recipe), iterations, args.seed, start, threads), work
    )
    phase("fine-tune on the fitted recipe")
    models = {"bicubic": None, "start (bicubic-trained)": start, f"fine-tuned on {base.name} (base)": base_model,
              "fine-tuned on the fitted recipe": fitted}
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        scores = evaluate_models(models, held)
    finally:
        torch.set_num_threads(before)
    phase("evaluation")
    total = time.perf_counter() - begin
    print(f"held-out camera photos x4 ({len(held)} B100 images), against the clean HR:")
    print(f"  {'':34s} Y-PSNR   SSIM")
    for label, (value, structure) in scores.items():
        print(f"  {label:34s} {value:6.2f}  {structure:.4f}")
    fitted_scores, base_scores = scores["fine-tuned on the fitted recipe"], scores[f"fine-tuned on {base.name} (base)"]
    gain = [f - b for f, b in zip(fitted_scores, base_scores)]
    print(f"fitted - base: {gain[0]:+.2f} dB Y-PSNR, {gain[1]:+.4f} SSIM "
          "(target: at least +0.3 dB and a higher SSIM)")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
          + f"; total {total:.0f} s ({total / 60:.1f} min); {load()}")
    rows = [{"model": label, "Y-PSNR (dB)": f"{value:.2f}", "SSIM": f"{structure:.4f}"}
            for label, (value, structure) in scores.items()]
    rows.append({"model": "fitted - base", "Y-PSNR (dB)": f"{gain[0]:+.2f}", "SSIM": f"{gain[1]:+.4f}"})
    title = (
        f"end to end: fine-tuned on the fitted recipe against {base.name}, {len(held)} held-out B100 images "
        f"photographed by a hidden camera, x4 ({fit_text}; start {start_iterations} "
        f"iterations on bicubic, fine-tunes {iterations}; {threads or 'default'} torch threads; wall time "
        + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + f", total {total / 60:.1f} min)"
    )
    return BenchmarkTable(title=title, columns=list(rows[0]), rows=rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "what", nargs="*", default=["time"], choices=["time", "heldout", "recovery", "endtoend", "all"],
        help="all: time, heldout and recovery (endtoend, about 20-30 minutes on 2 cores, only by name)",
    )
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hr", default=None, help="HR folder for the fits to synthesise from (default: the "
                        "built-in photos; endtoend: ../shared/data/train_hr)")
    parser.add_argument("--heldout-samples", type=int, default=256)
    parser.add_argument("--heldout-seeds", type=int, default=2)
    parser.add_argument("--recovery-photos", type=int, default=40)
    parser.add_argument("--save", default=None, help="folder for the held-out fit's recipe and report")
    parser.add_argument("--prior", type=float, default=DEFAULT_PRIOR, help="the fit's --prior (heldout, endtoend)")
    parser.add_argument("--base", default="realesrgan", help="the recipe fitted (time, heldout, endtoend) and "
                        f"the other arm (endtoend), as realciao-fit-recipe's --base ({AUTO_BASE}: the shipped recipe "
                        "closest to the photos)")
    parser.add_argument("--recipe", default=None, help="heldout: evaluate this fitted recipe instead of fitting")
    parser.add_argument("--endtoend-images", type=int, default=None,
                        help="endtoend: B100 images on each side at most (default: all, 50 and 50)")
    parser.add_argument("--fit-samples", type=int, default=DEFAULT_SAMPLES,
                        help="endtoend: LR patches a fit synthesises per candidate")
    parser.add_argument("--start-iterations", type=int, default=400, help="endtoend: the bicubic start model's")
    parser.add_argument("--finetune-iterations", type=int, default=FINETUNE_ITERATIONS,
                        help="endtoend: each fine-tune's")
    parser.add_argument("--threads", type=int, default=1,
                        help="endtoend: torch threads for training and evaluation (default 1: on a shared machine 2 "
                        "threads were 10x slower, 8.4 against 0.78 s/iteration; 0: the trainer's choice)")
    parser.add_argument("--fitted", default=None, help="endtoend: a recipe an earlier endtoend fitted to the same "
                        "photos with the same settings (its work/fitted.yml), used instead of fitting again")
    parser.add_argument("--work", default=None, help="endtoend: folder for its photos, recipe and experiments "
                        "(default: a new temporary folder, kept)")
    add_json_argument(parser)
    args = parser.parse_args(argv)
    what = ["time", "heldout", "recovery"] if "all" in args.what else args.what
    print(describe_cpu())
    if not SHARED.is_dir() and ("time" in what or "heldout" in what or "endtoend" in what):
        sys.exit(f"needs {SHARED} (the shared data beside the checkout)")
    tables = [
        {"time": run_time, "heldout": run_heldout, "recovery": run_recovery, "endtoend": run_endtoend}[name](
            args
        )
        for name in what
    ]
    if args.json:
        notes = [
            f"budget {args.budget}, seed {args.seed}; HR: {args.hr or 'the built-in photos'}; "
            f"torch threads {torch.get_num_threads()}"
        ]
        if "endtoend" in what:
            notes.append(
                f"endtoend: fit HR {args.hr or SHARED / 'train_hr'}; {args.fit_samples} fit samples; training HR "
                f"{SHARED / 'train_hr'}; camera seeds {CAMERA_SEED} (user photos) and {EVAL_SEED} + i (held out)"
            )
        print(f"wrote {write_results(args.json, 'fit_recipe', tables, notes)}")


if __name__ == "__main__":
    main()
