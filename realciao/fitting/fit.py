"""Fitting a recipe's ranges to a set of photos with a black-box optimiser.

The objective is ``distance.distance`` between the photos' measurements and those of LR
patches the candidate recipe makes from a fixed set of HR crops with a fixed seed (common
random numbers: candidates differ by their recipes, not by their luck). The optimiser is
Optuna's TPE sampler (multivariate, seeded), asked for two candidates at a time that run in
parallel threads. TPE is made for expensive, noisy objectives over a few dozen bounded
parameters and a budget of about a hundred evaluations, where CMA-ES would still be in its
first generations; its proposals cost milliseconds (Optuna's GP sampler, tried on the same
fits, reached lower distances on the fitting photos but not on held-out ones, at several
times the wall time); the base recipe is enqueued as its first candidate; and a seeded
run is deterministic (the batch size is fixed, not taken from the machine).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realciao.degradations.recipe import dump_recipe, load_recipe
from realciao.degradations.specs import Recipe
from realciao.files import atomic_write
from realciao.fitting.distance import Distance, Reference, distance, reference
from realciao.fitting.measure import MEASUREMENTS
from realciao.fitting.samples import (
    DEFAULT_SAMPLES,
    FitError,
    HRPool,
    MeasuredSet,
    PhotoSet,
    SynthesisPlan,
    load_hr,
    make_plan,
    measure_synthetic,
)
from realciao.fitting.space import SearchSpace, quantities

DEFAULT_BUDGET = 100
DEFAULT_SCALE = 4.0
DEFAULT_BATCH = 2
FINALISTS = 3  # the search's best candidates evaluated again on check crops
MARGIN = 0.025  # added on both sides of every range, in fractions of its search bounds
EXTRA_MARGIN = 0.05  # tried in addition on each range in turn
WIDEN_TOLERANCE = 0.05  # relative increase of the distance the extra margins may cost, all together


def extra_evaluations(space: SearchSpace) -> int:
    """Evaluations after the search, at most (``_select_and_widen``): the finalists again on
    check crops, the margined recipe on both crop sets, and each range widened on both."""
    return FINALISTS + 2 + 2 * len(space.ranges())


def planned_evaluations(base: Recipe | str | Path, budget: int) -> int:
    """The most candidate evaluations a fit of ``base`` with ``budget`` makes in all."""
    return budget + extra_evaluations(SearchSpace(_as_recipe(base)))


@dataclass(frozen=True)
class FitSettings:
    scale: float = DEFAULT_SCALE
    seed: int = 0
    budget: int = DEFAULT_BUDGET
    samples: int = DEFAULT_SAMPLES
    batch: int = DEFAULT_BATCH  # candidates proposed together and evaluated in parallel threads


@dataclass
class FitResult:
    recipe: Recipe
    base: Recipe
    photos: PhotoSet
    reference: Reference
    base_distance: Distance
    fitted_distance: Distance
    base_set: MeasuredSet
    fitted_set: MeasuredSet
    history: list[float]  # each search candidate's distance, in the order evaluated (0: the base)
    settings: FitSettings
    hr_label: str
    notes: list[str] = field(default_factory=list)
    selected_distance: float = math.nan  # the selected candidate's in the search, before widening
    widened: dict[str, float] = field(default_factory=dict)  # range -> margin (fraction of its bounds)
    check_distance: float = math.nan  # the written recipe's on the check crops (other crops and draws)
    evaluations: int = 0  # candidate evaluations in all: the search's and the final choice's

    @property
    def improved(self) -> bool:
        """Whether the fitted recipe is closer to the photos than the base (worth writing)."""
        return self.fitted_distance.total < self.base_distance.total


def make_sampler(settings: FitSettings):
    import optuna

    startup = min(settings.budget, max(10, settings.budget // 5))
    return optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, n_startup_trials=startup)


@contextmanager
def one_thread_each():
    """torch and OpenCV on one thread while candidates run in parallel threads: OpenMP
    threads that wait for each other (or for other processes) cost more than they give."""
    import cv2
    import torch

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def _as_recipe(recipe: Recipe | str | Path) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def _plan(photos: PhotoSet, hr: HRPool | str | Path | None, settings: FitSettings) -> tuple[HRPool, SynthesisPlan]:
    side = max(photos.patch, round(photos.patch * settings.scale))
    pool = hr if isinstance(hr, HRPool) else load_hr(hr, min_side=side)
    return pool, make_plan(pool, settings.scale, photos.patch, settings.samples, settings.seed)


def recipe_distance(photos: PhotoSet, recipe: Recipe | str | Path, hr: HRPool | str | Path | None = None,
                    scale: float = DEFAULT_SCALE, seed: int = 0, samples: int = DEFAULT_SAMPLES) -> Distance:
    """The distance of ``recipe`` to ``photos`` as a fit evaluates it (same crops and draws
    for the same ``hr``, ``scale``, ``seed`` and ``samples``)."""
    settings = FitSettings(scale=scale, seed=seed, samples=samples)
    _, plan = _plan(photos, hr, settings)
    with one_thread_each():  # the same arithmetic as in a fit
        return distance(reference(photos), measure_synthetic(_as_recipe(recipe), plan))


def fit_recipe(
    photos: PhotoSet,
    base: Recipe | str | Path = "realesrgan",
    hr: HRPool | str | Path | None = None,
    settings: FitSettings = FitSettings(),
    name: str | None = None,
    on_trial: Callable[[int, int, float, float], None] | None = None,
) -> FitResult:
    """Search ``base``'s ranges and probabilities (``space.SearchSpace``) for the recipe whose
    LR patches are closest to ``photos``. ``hr``: clean HR images (a folder; None: the
    built-in photos). ``on_trial(done, total, distance, best)`` follows progress: ``total`` is
    the budget plus at most ``extra_evaluations(space)``, which select the final candidate and
    widen its ranges (``_select_and_widen``); the last call has ``done == total``."""
    import optuna

    base = _as_recipe(base)
    if settings.budget < 1:
        raise FitError(f"--budget must be at least 1, got {settings.budget}")
    space = SearchSpace(base)
    if not space.parameters:
        raise FitError(f"recipe {base.name!r} has no ranges or probabilities to fit (blur, resize, noise, "
                       "JPEG or sharpen ops with drawn values)")
    ref = reference(photos)
    pool, plan = _plan(photos, hr, settings)

    def evaluate(recipe: Recipe) -> tuple[Distance, MeasuredSet]:
        measured = measure_synthetic(recipe, plan)
        return distance(ref, measured), measured

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = make_sampler(settings)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(space.base_values())
    tried: list[tuple[float, dict[str, float]]] = []
    workers = max(1, min(settings.batch, os.cpu_count() or 1))
    total = settings.budget + extra_evaluations(space)

    def report(done: int, score: float) -> None:
        if on_trial:
            on_trial(done, total, score, min(t[0] for t in tried))

    with one_thread_each(), ThreadPoolExecutor(workers) as threads:
        while len(tried) < settings.budget:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trials = [study.ask() for _ in range(min(settings.batch, settings.budget - len(tried)))]
                candidates = [{p.name: t.suggest_float(p.name, p.low, p.high) for p in space.parameters}
                              for t in trials]
            scores = threads.map(lambda values: evaluate(space.recipe(values))[0].total, candidates)
            for trial, values, score in zip(trials, candidates, scores):
                study.tell(trial, score)
                tried.append((score, values))
                report(len(tried), score)
        check = make_plan(pool, settings.scale, photos.patch, settings.samples, settings.seed + 1)
        choice = _select_and_widen(space, tried, plan, check, ref, threads,
                                   lambda done: report(settings.budget + done, math.nan))
        report(total, math.nan)

    label = name or f"{base.name}_fitted"
    description = (f"{base.name} with its ranges fitted by realciao-fit-recipe to {photos.photos} photos "
                   f"in {photos.folder} (x{settings.scale:g})")
    fitted = space.recipe(choice.values, name=label, description=description).model_copy(
        update={"fitted_scale": settings.scale})
    base_distance, base_set = evaluate(base)
    fitted_distance, fitted_set = evaluate(fitted)
    notes = list(photos.notes) + list(ref.notes) + list(pool.notes)
    return FitResult(fitted, base, photos, ref, base_distance, fitted_distance, base_set, fitted_set,
                     [t[0] for t in tried], settings, pool.label, notes, choice.search, choice.widened,
                     choice.check, len(tried) + choice.evaluations)


@dataclass(frozen=True)
class _Choice:
    values: dict[str, float]
    search: float  # the selected candidate's distance in the search, before widening
    widened: dict[str, float]
    check: float  # the written recipe's distance on the check crops
    evaluations: int  # candidate evaluations made to choose and widen


def _select_and_widen(space: SearchSpace, tried: list[tuple[float, dict]], plan: SynthesisPlan,
                      check: SynthesisPlan, ref: Reference, threads: ThreadPoolExecutor,
                      progress: Callable[[int], None]) -> _Choice:
    """The final recipe: chosen without the search's luck, with margins on its ranges.

    The search's ``FINALISTS`` best candidates are evaluated again on check crops (other HR
    crops, other draws); the one with the lowest mean of its two distances wins. Every range
    of it then gets ``MARGIN`` of its search bounds on both sides (the fitted ends are
    estimates, and a model trained on slightly wider ranges than the photos show holds up
    better than one trained on slightly narrower ones), and each range in turn gets
    ``EXTRA_MARGIN`` more when the mean of the two distances stays within ``WIDEN_TOLERANCE``
    of the margined recipe's: a range the photos pin down (a JPEG quality read from the
    files) keeps the small margin; one they can hardly tell from a wider one (noise that a
    later JPEG mostly removed) gets the larger one."""

    def on(values: dict) -> tuple[float, float]:
        recipe = space.recipe(values)
        search, checked = threads.map(lambda p: distance(ref, measure_synthetic(recipe, p)).total, (plan, check))
        return search, checked

    finalists = sorted(tried, key=lambda t: t[0])[:FINALISTS]
    checks = list(threads.map(lambda t: distance(ref, measure_synthetic(space.recipe(t[1]), check)).total,
                              finalists))
    done = len(finalists)
    progress(done)
    means = [(score + checked) / 2 for (score, _), checked in zip(finalists, checks)]
    search, selected = finalists[int(np.argmin(means))]
    values = space.widened(selected, MARGIN)
    distances = on(values)
    done += 2
    progress(done)
    limit, check_distance = sum(distances) / 2 * (1 + WIDEN_TOLERANCE), distances[1]
    widened = dict.fromkeys(space.ranges(), MARGIN)
    for quantity in space.ranges():
        candidate = space.widened(values, EXTRA_MARGIN, only=quantity)
        if candidate == values:
            continue  # at its bounds already
        distances = on(candidate)
        done += 2
        progress(done)
        if sum(distances) / 2 <= limit:
            values, check_distance = candidate, distances[1]
            widened[quantity] = MARGIN + EXTRA_MARGIN
    return _Choice(values, search, widened, check_distance, done)


# ----------------------------------------------------------------------------- writing
def _range_text(values: np.ndarray, unit: str) -> str:
    return (f"median {np.median(values):.3g}, range {values.min():.3g} to {values.max():.3g} "
            f"({unit}; {values.size} patches)")


def recipe_header(result: FitResult) -> str:
    """The comment header of a fitted recipe: where it comes from and how well it fits."""
    settings = result.settings
    lines = [
        f"Fitted by realciao-fit-recipe from base recipe {result.base.name!r}.",
        f"Photos: {result.photos.folder} ({result.photos.photos} photos, {len(result.photos)} patches of "
        f"{result.photos.patch} px).",
        f"Synthesised from: {result.hr_label}; for training at x{settings.scale:g} (fitted_scale); {settings.samples} LR patches; "
        f"seed {settings.seed}; {settings.budget} candidates searched, {result.evaluations} evaluated in all.",
        "",
        "Measured on the photos:",
    ]
    units = {m.name: m.unit for m in MEASUREMENTS}
    for name, values in result.reference.values.items():
        lines.append(f"  {name}: {_range_text(values, units[name])}")
    lines += [f"  ({note})" for note in result.reference.notes]
    lines += [
        "",
        "Distance to the photos (sum over measurements of W1 / the photos' spread; 0 = same distributions):",
        f"  base {result.base.name}: {result.base_distance.total:.3f}",
        f"  fitted: {result.fitted_distance.total:.3f} (on check crops, other HR crops and draws: "
        f"{result.check_distance:.3f})",
        "  per measurement, base -> fitted: " + ", ".join(
            f"{name} {result.base_distance.terms[name]:.2f} -> {result.fitted_distance.terms[name]:.2f}"
            for name in result.fitted_distance.terms),
        "",
        "Fitted values (base -> fitted):",
    ]
    margins = {quantity: margin for quantity, margin in result.widened.items()}
    base_values = {q.name: q for q in quantities(result.base)}
    for quantity in quantities(result.recipe):
        before = base_values.get(quantity.name)
        margin = margins.get(quantity.name)
        widened = f" (widened by {margin:.1%} of its search bounds on each side)" if margin else ""
        lines.append(f"  {quantity.label}: {before.text() if before else '?'} -> {quantity.text()}{widened}")
    return "\n".join(lines)


def write_recipe(result: FitResult, path: str | Path) -> Path:
    """Write the fitted recipe (with its comment header) atomically; ``load_recipe`` reads it back."""
    path = Path(path)
    atomic_write(path, dump_recipe(result.recipe, recipe_header(result)).encode())
    return path
