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

from realciao.degradations.recipe import available_recipes, dump_recipe, load_recipe
from realciao.degradations.specs import Recipe
from realciao.files import atomic_write
from realciao.fitting.distance import Distance, Reference, distance, reference
from realciao.fitting.measure import FAMILIES, MEASUREMENTS
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
from realciao.fitting.space import SearchSpace, on_bounds, quantities

DEFAULT_BUDGET = 100
DEFAULT_SCALE = 4.0
DEFAULT_BATCH = 2
FINALISTS = 3  # the search's best candidates evaluated again on check crops
MARGIN = 0.025  # added on both sides of every range, in fractions of its search bounds
EXTRA_MARGIN = 0.05  # tried in addition on each range in turn
WIDEN_TOLERANCE = 0.05  # relative increase of the distance the extra margins may cost, all together
# The prior: the objective is the distance plus PRIOR x the sum over parameters of the squared
# move from the base, in fractions of the parameter's search box. Many settings give the same
# summaries (noise that a later blur and JPEG hide); the prior keeps those the photos do not
# pull on where the base has them, so with no evidence the base comes back. 0.3: moving one
# parameter across half its box costs 0.075, a tenth of a typical measurement's term. Of the
# two weights tried on the held-out half of RealSRSet + RealSet65 (scripts/bench_fit_recipe.py
# heldout), 0.3 gave the lower distance on statistics the fit does not use (0.79x realesrgan's
# against 0.88x for 1.0), and every measurement family left out of the choice got closer.
DEFAULT_PRIOR = 0.3
# ``--base auto``: the shipped recipe closest to the photos before fitting. The search moves
# ranges and probabilities, never the structure (which ops, in which order), so where it
# starts bounds where it can get: on photos from a camera-like pipeline (bench_fit_recipe.py
# endtoend) it picks phone_camera, which the fit brought to a distance of 6.1 against 8.2 from
# realesrgan (4.6 from phone_camera since the search also starts from the photos' JPEG
# qualities). Not the default: on the real photos of the held-out check it picks bsrgan,
# whose fitted recipe is closer on the fit's own measurements but farther than realesrgan's
# on statistics the fit does not use (bench_fit_recipe.py heldout).
AUTO_BASE = "auto"
COMPENSATION_R = 0.7  # |correlation| among the best candidates that flags a pair of parameters
_MIN_FOR_CORRELATION = 12  # fewer best candidates than this: no correlation is worth reporting


# Evaluations after the search besides two per range (``_select_and_widen`` and
# ``_leave_families_out``): the finalists again on check crops, the margined recipe on both
# crop sets, then the base and each family's choice on the check crops.
FIXED_EXTRA_EVALUATIONS = FINALISTS + 2 + 1 + len(FAMILIES)


def extra_evaluations(space: SearchSpace) -> int:
    """Evaluations after the search, at most: ``FIXED_EXTRA_EVALUATIONS`` and each range
    widened on both crop sets."""
    return FIXED_EXTRA_EVALUATIONS + 2 * len(space.ranges())


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
    prior: float = DEFAULT_PRIOR  # weight of the pull towards the base recipe (0: none)


@dataclass(frozen=True)
class Candidate:
    """One recipe the search evaluated: its objective (distance + prior), values and distance."""

    objective: float
    values: dict[str, float]
    distance: Distance


@dataclass(frozen=True)
class HeldOutFamily:
    """A measurement family left out of the choice: the candidate the search would pick
    without it, and the family's distance on the check crops for the base, that candidate
    and the fitted recipe (chosen with every family). Lower than the base's: the other
    families' fit carries over to this one."""

    family: str
    measurements: tuple[str, ...]
    base: float
    chosen: float
    fitted: float


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
    history: list[float]  # each search candidate's objective (distance + prior), in order (0: the base)
    settings: FitSettings
    hr_label: str
    notes: list[str] = field(default_factory=list)
    selected_distance: float = math.nan  # the selected candidate's in the search, before widening
    widened: dict[str, float] = field(default_factory=dict)  # range -> margin (fraction of its bounds)
    check_distance: float = math.nan  # the written recipe's on the check crops (other crops and draws)
    evaluations: int = 0  # candidate evaluations in all: the search's and the final choice's
    held_out: list[HeldOutFamily] = field(default_factory=list)
    on_bounds: list[str] = field(default_factory=list)  # ranges and probabilities on the search's bounds
    compensation: list[tuple[str, str, float]] = field(default_factory=list)  # (parameter, parameter, r)
    base_choice: dict[str, float] = field(default_factory=dict)  # base "auto": each shipped recipe's distance

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


def prior_penalty(space: SearchSpace, values: dict[str, float], weight: float) -> float:
    """``weight`` x the sum of squared moves from the base, each in fractions of its box."""
    total = 0.0
    for p in space.parameters:
        span = p.high - p.low
        if span > 0:
            total += ((float(values.get(p.name, p.base)) - p.base) / span) ** 2
    return weight * total


def fit_space(base: Recipe, ref: Reference) -> SearchSpace:
    """What a fit of ``base`` to the photos (``ref``) searches. Photos that are all JPEG files
    were all saved as one last, so the base's certain JPEGs stay certain; where some are not
    (PNGs, often decoded JPEGs, often not), whether each JPEG happened is searched too: on the
    fit half of RealSRSet + RealSet65 a JPEG on every patch put an 8x8 grid where most of the
    held-out photos show none."""
    return SearchSpace(base, p_at_one=ref.jpeg_fraction < 1)


def photo_jpeg_start(space: SearchSpace, ref: Reference) -> dict[str, float] | None:
    """The base's values with its last JPEG's quality range set to the photos' (the 5th to
    95th percentile of the qualities read from their files' tables): a second starting point
    for the search, since those qualities are read exactly while every other value has to be
    inferred. Only when every photo is a JPEG file (then each was saved as one last, at a
    quality the tables tell); None otherwise, or when the base has no JPEG quality range.
    Where PNGs are mixed in, the JPEG files' qualities describe only part of the photos: on
    the fit half of RealSRSet + RealSet65 such a start led the search to a worse recipe
    (held out: 1.18x realesrgan's distance, against 0.70x without it)."""
    if ref.jpeg_fraction < 1:
        return None
    qualities = ref.values.get("jpeg_quality", np.array([]))
    qualities = qualities[np.isfinite(qualities)]
    ranges = [p for p in space.parameters if p.quantity.endswith(".quality") and p.role in ("centre", "width")]
    if qualities.size == 0 or not ranges:
        return None
    low, high = np.percentile(qualities, [5, 95])
    values = space.base_values()
    for p in (p for p in ranges if p.quantity == ranges[-1].quantity):  # the last JPEG's centre and width
        value = (low + high) / 2 if p.role == "centre" else high - low
        values[p.name] = float(np.clip(value, p.low, p.high))
    return values


def shipped_bases() -> list[Recipe]:
    """The shipped recipes a fit can start from (those with something to fit), by name."""
    recipes = [load_recipe(name) for name in available_recipes()]
    return [recipe for recipe in recipes if SearchSpace(recipe).parameters]


def closest_base(
    ref: Reference, plan: SynthesisPlan, bases: list[Recipe] | None = None
) -> tuple[Recipe, dict[str, float]]:
    """Of ``bases`` (default: ``shipped_bases()``, by name), the one whose LR patches from
    ``plan`` are closest to the photos (``ref``), and each one's distance; the first on a tie."""
    bases = shipped_bases() if bases is None else bases
    if not bases:
        raise FitError("no recipe to choose a base from")
    distances = {recipe.name: distance(ref, measure_synthetic(recipe, plan)).total for recipe in bases}
    return min(bases, key=lambda recipe: distances[recipe.name]), distances


def choose_base(photos: PhotoSet, hr: HRPool | str | Path | None = None,
                settings: FitSettings = FitSettings()) -> tuple[Recipe, dict[str, float]]:
    """The base a fit of ``photos`` with ``settings`` chooses for "auto", and each shipped
    recipe's distance (what ``fit_recipe`` computes first; the same crops and draws)."""
    _, plan = _plan(photos, hr, settings)
    with one_thread_each():
        return closest_base(reference(photos), plan)


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
    LR patches are closest to ``photos``; ``base`` "auto" (``AUTO_BASE``): the shipped recipe
    closest to them (``closest_base``). ``hr``: clean HR images (a folder; None: the
    built-in photos). ``on_trial(done, total, distance, best)`` follows progress: ``total`` is
    the budget plus at most ``extra_evaluations(space)``, which select the final candidate and
    widen its ranges (``_select_and_widen``); the last call has ``done == total``."""
    import optuna

    if settings.budget < 1:
        raise FitError(f"--budget must be at least 1, got {settings.budget}")
    if not settings.prior >= 0:
        raise FitError(f"--prior must be at least 0, got {settings.prior}")
    ref = reference(photos)
    pool, plan = _plan(photos, hr, settings)
    base_choice: dict[str, float] = {}
    if isinstance(base, str) and base == AUTO_BASE:
        with one_thread_each():  # the same arithmetic as the search's evaluations
            base, base_choice = closest_base(ref, plan)
    base = _as_recipe(base)
    space = fit_space(base, ref)
    if not space.parameters:
        raise FitError(f"recipe {base.name!r} has no ranges or probabilities to fit (blur, resize, noise, "
                       "JPEG or sharpen ops with drawn values)")

    def evaluate(recipe: Recipe) -> tuple[Distance, MeasuredSet]:
        measured = measure_synthetic(recipe, plan)
        return distance(ref, measured), measured

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = make_sampler(settings)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial(space.base_values())
    jpeg_start = photo_jpeg_start(space, ref)
    if jpeg_start is not None and settings.budget > 1:
        study.enqueue_trial(jpeg_start)
    tried: list[Candidate] = []
    workers = max(1, min(settings.batch, os.cpu_count() or 1))
    total = settings.budget + extra_evaluations(space)  # the base choice's evaluations come before: not counted

    def report(done: int, score: float) -> None:
        if on_trial:
            on_trial(done, total, score, min(t.objective for t in tried))

    with one_thread_each(), ThreadPoolExecutor(workers) as threads:
        while len(tried) < settings.budget:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trials = [study.ask() for _ in range(min(settings.batch, settings.budget - len(tried)))]
                candidates = [{p.name: t.suggest_float(p.name, p.low, p.high) for p in space.parameters}
                              for t in trials]
            distances = threads.map(lambda values: evaluate(space.recipe(values))[0], candidates)
            for trial, values, measured in zip(trials, candidates, distances):
                objective = measured.total + prior_penalty(space, values, settings.prior)
                study.tell(trial, objective)
                tried.append(Candidate(objective, values, measured))
                report(len(tried), objective)
        check = make_plan(pool, settings.scale, photos.patch, settings.samples, settings.seed + 1)
        choice = _select_and_widen(space, tried, plan, check, ref, threads, settings.prior,
                                   lambda done: report(settings.budget + done, math.nan))
        held_out = _leave_families_out(space, tried, check, ref, threads, choice.check_distance)
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
                     [t.objective for t in tried], settings, pool.label, notes, choice.search, choice.widened,
                     choice.check_distance.total,
                     len(base_choice) + len(tried) + choice.evaluations + (1 + len(held_out) if held_out else 0),
                     held_out, on_bounds(fitted, base), compensating_pairs(space, tried), base_choice)


@dataclass(frozen=True)
class _Choice:
    values: dict[str, float]
    search: float  # the selected candidate's objective in the search, before widening
    widened: dict[str, float]
    check_distance: Distance  # the written recipe's on the check crops
    evaluations: int  # candidate evaluations made to choose and widen


def _select_and_widen(space: SearchSpace, tried: list[Candidate], plan: SynthesisPlan,
                      check: SynthesisPlan, ref: Reference, threads: ThreadPoolExecutor, prior: float,
                      progress: Callable[[int], None]) -> _Choice:
    """The final recipe: chosen without the search's luck, with margins on its fitted ranges.

    The search's ``FINALISTS`` best candidates (by objective: distance + prior) are evaluated
    again on check crops (other HR crops, other draws); the one with the lowest mean of its
    two objectives wins. Every range the fit moved from the base then gets ``MARGIN`` of its
    search bounds on both sides (the fitted ends are estimates, and a model trained on
    slightly wider ranges than the photos show holds up better than one trained on slightly
    narrower ones), and each in turn gets ``EXTRA_MARGIN`` more when the mean of the two
    distances stays within ``WIDEN_TOLERANCE`` of the margined recipe's: a range the photos
    pin down (a JPEG quality read from the files) keeps the small margin; one they can
    hardly tell from a wider one (noise that a later JPEG mostly removed) gets the larger
    one. Ranges the fit left at the base's stay exactly as the base has them."""

    def on(values: dict) -> tuple[Distance, Distance]:
        recipe = space.recipe(values)
        search, checked = threads.map(lambda p: distance(ref, measure_synthetic(recipe, p)), (plan, check))
        return search, checked

    finalists = sorted(tried, key=lambda t: t.objective)[:FINALISTS]
    checks = list(threads.map(lambda t: distance(ref, measure_synthetic(space.recipe(t.values), check)),
                              finalists))
    done = len(finalists)
    progress(done)
    means = [(t.objective + checked.total + prior_penalty(space, t.values, prior)) / 2
             for t, checked in zip(finalists, checks)]
    best = int(np.argmin(means))
    selected = finalists[best]
    moved = _moved_ranges(space, selected.values)
    if not moved:  # the base won: nothing fitted, nothing to widen
        return _Choice(dict(selected.values), selected.objective, {}, checks[best], done)
    values = dict(selected.values)
    for quantity in moved:
        values = space.widened(values, MARGIN, only=quantity)
    distances = on(values)
    done += 2
    progress(done)
    limit, check_distance = (distances[0].total + distances[1].total) / 2 * (1 + WIDEN_TOLERANCE), distances[1]
    widened = dict.fromkeys(moved, MARGIN)
    for quantity in moved:
        candidate = space.widened(values, EXTRA_MARGIN, only=quantity)
        if candidate == values:
            continue  # at its bounds already
        distances = on(candidate)
        done += 2
        progress(done)
        if (distances[0].total + distances[1].total) / 2 <= limit:
            values, check_distance = candidate, distances[1]
            widened[quantity] = MARGIN + EXTRA_MARGIN
    return _Choice(values, selected.objective, widened, check_distance, done)


def _moved_ranges(space: SearchSpace, values: dict[str, float]) -> list[str]:
    """The ranges (``space.ranges()``) with a parameter away from the base's value."""
    moved = {p.quantity for p in space.parameters if abs(float(values.get(p.name, p.base)) - p.base) > 1e-9}
    return [quantity for quantity in space.ranges() if quantity in moved]


def _family_distance(measured: Distance, names: tuple[str, ...]) -> float:
    return float(sum(measured.terms.get(name, 0.0) for name in names))


def _leave_families_out(space: SearchSpace, tried: list[Candidate], check: SynthesisPlan, ref: Reference,
                        threads: ThreadPoolExecutor, fitted_check: Distance) -> list[HeldOutFamily]:
    """Validation that does not reuse the objective whole: for each measurement family the
    photos give, the candidate the search would pick on the other families alone (the same
    prior), and how that family's own distance moves from the base's, on check crops. The
    candidates are the search's own (guided by every family), so this tells whether the
    other families' evidence points the same way as the left-out one, not what a search
    blind to it would find."""
    families = {family: tuple(name for name in names if name in ref.scaled) for family, names in FAMILIES.items()}
    families = {family: names for family, names in families.items() if names}
    if len(families) < 2:  # nothing left to choose on
        return []
    choices = {family: min(tried, key=lambda t, names=names: t.objective - _family_distance(t.distance, names))
               for family, names in families.items()}
    recipes = [space.recipe(space.base_values())] + [space.recipe(c.values) for c in choices.values()]
    measured = list(threads.map(lambda recipe: distance(ref, measure_synthetic(recipe, check)), recipes))
    base = measured[0]
    return [HeldOutFamily(family, names, _family_distance(base, names), _family_distance(chosen, names),
                          _family_distance(fitted_check, names))
            for (family, names), chosen in zip(families.items(), measured[1:])]


def compensating_pairs(space: SearchSpace, tried: list[Candidate]) -> list[tuple[str, str, float]]:
    """Pairs of parameters that move together among the best quarter of the candidates
    (|Pearson r| >= ``COMPENSATION_R`` of their values in fractions of their boxes): along
    such a ridge the photos' measurements hardly change, so the fitted pair is one of many
    equally good ones (e.g. more noise before a stronger blur). Strongest first, at most 8."""
    best = sorted(tried, key=lambda t: t.objective)[: max(_MIN_FOR_CORRELATION, len(tried) // 4)]
    if len(best) < _MIN_FOR_CORRELATION:
        return []
    names = [p.name for p in space.parameters if p.high > p.low]
    spans = {p.name: p.high - p.low for p in space.parameters}
    table = np.asarray([[t.values.get(n, np.nan) / spans[n] for n in names] for t in best], dtype=np.float64)
    moving = [i for i in range(len(names)) if np.nanstd(table[:, i]) > 0.02]
    pairs = []
    for a_index, a in enumerate(moving):
        for b in moving[a_index + 1:]:
            r = float(np.corrcoef(table[:, a], table[:, b])[0, 1])
            if np.isfinite(r) and abs(r) >= COMPENSATION_R:
                pairs.append((names[a], names[b], round(r, 2)))
    return sorted(pairs, key=lambda pair: -abs(pair[2]))[:8]


# ----------------------------------------------------------------------------- writing
def _range_text(values: np.ndarray, unit: str) -> str:
    return (f"median {np.median(values):.3g}, range {values.min():.3g} to {values.max():.3g} "
            f"({unit}; {values.size} patches)")


def base_choice_text(base_choice: dict[str, float]) -> str:
    """How a base "auto" was chosen, for the header, the report and the log."""
    ranked = sorted(base_choice.items(), key=lambda item: item[1])
    return ("chosen as the shipped recipe closest to the photos (distance before fitting: "
            + ", ".join(f"{name} {value:.3f}" for name, value in ranked) + ")")


def recipe_header(result: FitResult) -> str:
    """The comment header of a fitted recipe: where it comes from and how well it fits."""
    settings = result.settings
    lines = [f"Fitted by realciao-fit-recipe from base recipe {result.base.name!r}."]
    if result.base_choice:
        lines.append(f"Base {base_choice_text(result.base_choice)}.")
    lines += [
        f"Photos: {result.photos.folder} ({result.photos.photos} photos, {len(result.photos)} patches of "
        f"{result.photos.patch} px).",
        f"Synthesised from: {result.hr_label}; for training at x{settings.scale:g} (fitted_scale); {settings.samples} LR patches; "
        f"seed {settings.seed}; {settings.budget} candidates searched, {result.evaluations} evaluated in all; "
        f"prior {settings.prior:g} (the pull towards the base recipe).",
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
    ]
    if result.held_out:
        lines += ["", "Held out, one measurement family at a time (the search's best candidate without that family; "
                  "the family's distance on check crops, base -> that candidate [fitted with every family]):"]
        lines += [f"  {h.family} ({', '.join(h.measurements)}): {h.base:.2f} -> {h.chosen:.2f} [{h.fitted:.2f}]"
                  for h in result.held_out]
    lines += ["", "Fitted values (base -> fitted):"]
    margins = {quantity: margin for quantity, margin in result.widened.items()}
    base_values = {q.name: q for q in quantities(result.base, p_at_one=True)}  # a JPEG's p: 1 in the base
    for quantity in quantities(result.recipe):
        before = base_values.get(quantity.name)
        margin = margins.get(quantity.name)
        widened = f" (widened by {margin:.1%} of its search bounds on each side)" if margin else ""
        lines.append(f"  {quantity.label}: {before.text() if before else '?'} -> {quantity.text()}{widened}")
    lines += ["", "On the search's bounds (the value is the search box's, not the photos'; check these):"]
    lines += [f"  {line}" for line in result.on_bounds] or ["  none"]
    lines += ["", "Parameters that move together among the best candidates (the photos cannot tell these "
              "settings apart; the fitted pair is one of many):"]
    lines += [f"  {a} ~ {b} (r = {r:+.2f})" for a, b, r in result.compensation] or ["  none"]
    return "\n".join(lines)


def write_recipe(result: FitResult, path: str | Path) -> Path:
    """Write the fitted recipe (with its comment header) atomically; ``load_recipe`` reads it back."""
    path = Path(path)
    atomic_write(path, dump_recipe(result.recipe, recipe_header(result)).encode())
    return path
