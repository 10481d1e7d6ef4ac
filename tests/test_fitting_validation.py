"""realciao.fitting.fit beyond its own objective: the prior towards the base recipe, values on
the search's bounds, compensating parameters and the leave-one-family-out report."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from realciao.degradations import load_recipe, parse_recipe
from realciao.fitting import fit as fit_module
from realciao.fitting.distance import Distance, reference
from realciao.fitting.fit import (
    Candidate,
    FitSettings,
    choose_base,
    closest_base,
    compensating_pairs,
    fit_recipe,
    fit_space,
    photo_jpeg_start,
    prior_penalty,
    recipe_header,
    shipped_bases,
)
from realciao.fitting.known import WIDE_BASE, write_known_photos
from realciao.fitting.measure import FAMILIES
from realciao.fitting.report import write_report
from realciao.fitting.samples import load_hr, make_plan, measure_photos
from realciao.fitting.space import SearchSpace, on_bounds, quantities

pytest.importorskip("skimage.data")
pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("known")
    write_known_photos(folder, count=12)
    return measure_photos(folder)


def test_the_prior_is_zero_at_the_base_and_grows_with_the_move():
    space = SearchSpace(parse_recipe(WIDE_BASE))
    base = space.base_values()
    assert prior_penalty(space, base, 1.0) == 0
    moved = dict(base)
    parameter = space.parameters[0]
    moved[parameter.name] = parameter.low if parameter.base != parameter.low else parameter.high
    fraction = abs(moved[parameter.name] - parameter.base) / (parameter.high - parameter.low)
    assert prior_penalty(space, moved, 1.0) == pytest.approx(fraction**2)
    assert prior_penalty(space, moved, 3.0) == pytest.approx(3 * fraction**2)
    assert prior_penalty(space, moved, 0.0) == 0


def _flat_distance(names):
    """Every recipe as far as the others, later ones by a hair closer (1e-6 a call): the
    photos say nothing, and without the prior the last candidate would win."""
    calls = itertools.count()
    return lambda ref, measured: Distance(1.0 - 1e-6 * next(calls), dict.fromkeys(names, 0.1))


def test_without_evidence_the_base_comes_back(photos, monkeypatch):
    monkeypatch.setattr(fit_module, "distance", _flat_distance(tuple(photos.values)))
    base = parse_recipe(WIDE_BASE)
    result = fit_recipe(photos, base, settings=FitSettings(budget=6, samples=8, seed=1))
    assert [q.value for q in quantities(result.recipe)] == [q.value for q in quantities(base)]
    assert result.widened == {}


def test_without_the_prior_the_same_photos_move_the_recipe(photos, monkeypatch):
    """The control for the test above: prior 0, the same flat distance, and the base is not returned."""
    monkeypatch.setattr(fit_module, "distance", _flat_distance(tuple(photos.values)))
    base = parse_recipe(WIDE_BASE)
    result = fit_recipe(photos, base, settings=FitSettings(budget=6, samples=8, seed=1, prior=0.0))
    assert [q.value for q in quantities(result.recipe)] != [q.value for q in quantities(base)]


def _noise_jpeg_blur(sigma: list[float], blur_p: float):
    return parse_recipe({"name": "edge", "stages": [
        {"resize": {"relative_to": "target", "modes": ["bicubic"]}},
        {"noise": {"types": [{"type": "gaussian", "p": 1, "sigma": sigma, "gray_p": 0.5}]}},  # gray_p off its bounds
        {"jpeg": {"quality": [30, 95]}},
        {"blur": {"name": "maybe", "p": blur_p, "size": [3, 5],
                  "kernels": [{"family": "gaussian", "p": 1, "sigma": [0.3, 0.8]}]}},
    ]})


def test_whether_a_jpeg_happened_is_searched_only_when_some_photos_are_not_jpegs(photos, tmp_path):
    """All JPEG files: they were saved as one last, realesrgan's JPEGs stay certain. One PNG
    among them: each JPEG's probability is searched too, from the base's 1."""
    import shutil

    from PIL import Image

    base = load_recipe("realesrgan")
    jpeg_p = {"jpeg1.p", "jpeg2.p"}
    assert not jpeg_p & {p.name for p in fit_space(base, reference(photos)).parameters}
    mixed = tmp_path / "mixed"
    shutil.copytree(photos.folder, mixed)
    first = sorted(mixed.glob("*.jpg"))[0]
    with Image.open(first) as image:
        image.save(first.with_suffix(".png"))
    first.unlink()
    mixed_ref = reference(measure_photos(mixed))
    space = fit_space(base, mixed_ref)
    assert jpeg_p <= {p.name for p in space.parameters}
    assert all(space.base_values()[name] == 1 for name in jpeg_p)
    assert photo_jpeg_start(space, mixed_ref) is None  # the JPEG files' qualities are not all the photos'
    assert photo_jpeg_start(fit_space(base, reference(photos)), reference(photos)) is not None


def test_the_second_start_takes_the_last_jpegs_quality_from_the_photos_files(photos, tmp_path):
    """The known photos are JPEGs at qualities 60..70: realesrgan's last JPEG (jpeg2) starts
    at their 5th-95th percentile, everything else at the base's; PNGs give no start."""
    from PIL import Image

    space = fit_space(load_recipe("realesrgan"), reference(photos))
    start = photo_jpeg_start(space, reference(photos))
    qualities = photos.values["jpeg_quality"]
    low, high = np.percentile(qualities[np.isfinite(qualities)], [5, 95])
    assert 60 <= low < high <= 70
    assert start["jpeg2.quality.centre"] == pytest.approx((low + high) / 2)
    assert start["jpeg2.quality.width"] == pytest.approx(high - low)
    base = space.base_values()
    assert {name for name in base if start[name] != base[name]} == {"jpeg2.quality.centre", "jpeg2.quality.width"}
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for path in sorted(Path(photos.folder).glob("*.jpg"))[:4]:
        with Image.open(path) as image:
            image.save(pngs / f"{path.stem}.png")
    png_ref = reference(measure_photos(pngs))
    assert photo_jpeg_start(fit_space(load_recipe("realesrgan"), png_ref), png_ref) is None


def test_ranges_and_probabilities_on_the_bounds_are_flagged():
    edge = _noise_jpeg_blur([20, 30], 0.0)
    lines = on_bounds(edge, edge)
    assert any("gaussian sigma" in line and "high end at the search bound 30" in line for line in lines), lines
    assert any("maybe: probability" in line and "switched off" in line for line in lines), lines
    assert not any("jpeg" in line for line in lines)
    assert all("(as in the base)" in line for line in lines)
    moved = _noise_jpeg_blur([1, 10], 0.5)
    assert not any("(as in the base)" in line for line in on_bounds(edge, moved))


def test_the_wide_base_is_flagged_where_it_reaches_its_box():
    # WIDE_BASE's noise reaches 30, the top of the noise box: flagged, and said to be the base's
    base = parse_recipe(WIDE_BASE)
    flagged = on_bounds(base, base)
    noise = [q for q in quantities(base) if q.name == "noise1.gaussian.sigma"][0]
    assert (noise.value[1] >= noise.bounds[1]) == bool(flagged)
    assert all("(as in the base)" in line for line in flagged)


def _candidates(space: SearchSpace, values: list[dict[str, float]]) -> list[Candidate]:
    return [Candidate(float(i), v, Distance(float(i))) for i, v in enumerate(values)]


def test_parameters_that_move_together_are_flagged_and_independent_ones_are_not():
    space = SearchSpace(parse_recipe(WIDE_BASE))
    rng = np.random.default_rng(0)
    names = {p.name: p for p in space.parameters}
    noise, quality = "noise1.gaussian.sigma.centre", "jpeg1.quality.centre"
    assert noise in names and quality in names
    rows = []
    for _ in range(60):
        t = rng.random()
        values = space.base_values()
        values[noise] = names[noise].low + t * (names[noise].high - names[noise].low)
        values[quality] = names[quality].low + (0.2 + 0.6 * t + 0.02 * rng.standard_normal()) * (
            names[quality].high - names[quality].low)
        rows.append(values)
    pairs = compensating_pairs(space, _candidates(space, rows))
    assert [(a, b) for a, b, _ in pairs] == [(noise, quality)] and pairs[0][2] > 0.9
    for values in rows:  # the same spread, independent
        values[quality] = names[quality].low + rng.random() * (names[quality].high - names[quality].low)
    assert compensating_pairs(space, _candidates(space, rows)) == []
    assert compensating_pairs(space, _candidates(space, rows[:8])) == []  # too few to say


def test_leaving_a_family_out_picks_the_best_candidate_on_the_others(monkeypatch):
    """Candidate 1 is best on everything; candidate 2 is best once the noise family is left out."""
    families = list(FAMILIES)
    assert "noise" in families and len(families) >= 2
    space = SearchSpace(parse_recipe(WIDE_BASE))
    noise_terms = dict.fromkeys(FAMILIES["noise"], 1.0)
    other = [n for f in families if f != "noise" for n in FAMILIES[f]]
    good = {**noise_terms, **dict.fromkeys(other, 0.2)}
    better_elsewhere = {**dict.fromkeys(FAMILIES["noise"], 3.0), **dict.fromkeys(other, 0.1)}
    candidates = [space.base_values() for _ in range(3)]
    candidates[1]["jpeg1.quality.centre"] = 40.0
    candidates[2]["jpeg1.quality.centre"] = 80.0
    tried = [
        Candidate(100.0, candidates[0], Distance(100.0, dict.fromkeys(good, 5.0))),
        Candidate(sum(good.values()), candidates[1], Distance(sum(good.values()), good)),
        Candidate(sum(better_elsewhere.values()), candidates[2], Distance(sum(better_elsewhere.values()),
                                                                           better_elsewhere)),
    ]
    by_recipe = {}
    for candidate in tried:
        by_recipe[space.recipe(candidate.values).model_dump_json()] = candidate.distance
    monkeypatch.setattr(fit_module, "measure_synthetic", lambda recipe, plan: recipe.model_dump_json())
    monkeypatch.setattr(fit_module, "distance", lambda ref, key: by_recipe[key])

    class Ref:
        scaled = dict.fromkeys(good)

    with ThreadPoolExecutor(2) as threads:
        held = fit_module._leave_families_out(space, tried, None, Ref(), threads, tried[1].distance)
    by_family = {h.family: h for h in held}
    assert set(by_family) == set(families)
    noise = by_family["noise"]
    assert noise.chosen == pytest.approx(3.0 * len(FAMILIES["noise"]))  # candidate 2 chosen without noise
    assert noise.fitted == pytest.approx(1.0 * len(FAMILIES["noise"]))
    assert noise.base == pytest.approx(5.0 * len(FAMILIES["noise"]))
    for family in families:
        if family != "noise":  # with noise in the choice candidate 1 wins (lower total)
            assert by_family[family].chosen == pytest.approx(0.2 * len(FAMILIES[family]))


def test_a_real_fit_reports_families_bounds_and_pairs(photos, tmp_path):
    result = fit_recipe(photos, parse_recipe(WIDE_BASE), settings=FitSettings(budget=8, samples=16, seed=0))
    assert {h.family for h in result.held_out} >= {"jpeg", "noise"}
    assert all(np.isfinite([h.base, h.chosen, h.fitted]).all() for h in result.held_out)
    header = recipe_header(result)
    assert "Held out, one measurement family at a time" in header
    assert "On the search's bounds" in header and "move together" in header
    assert "prior 0.3 (the pull towards the base recipe)" in header
    page = write_report(result, tmp_path / "report").read_text()
    for section in ("Held out, one measurement family", "On the search&#x27;s bounds", "move together"):
        assert section in page or section.replace("&#x27;", "'") in page
    assert result.evaluations > 8


def test_shipped_recipes_have_bounds_for_every_range():
    for name in ("realesrgan", "bsrgan", "phone_camera"):
        for quantity in quantities(load_recipe(name)):
            low, high = quantity.bounds
            assert low <= min(quantity.value) and max(quantity.value) <= high, (name, quantity)


def test_the_closest_base_is_the_recipe_that_makes_patches_like_the_photos(photos):
    # the known photos: colour noise of sigma 5..8 and JPEG 60..70, no blur to speak of
    like = parse_recipe(WIDE_BASE)
    unlike = parse_recipe({"name": "blur_only", "stages": [
        {"blur": {"size": 21, "kernels": [{"family": "gaussian", "p": 1, "sigma": [2.5, 3]}]}},
        {"resize": {"relative_to": "target", "modes": ["bicubic"]}},
    ]})
    plan = make_plan(load_hr(None, min_side=4 * photos.patch), 4.0, photos.patch, 16, 0)
    for bases in ([unlike, like], [like, unlike]):
        chosen, distances = closest_base(reference(photos), plan, bases)
        assert chosen.name == "noise_jpeg" and set(distances) == {"noise_jpeg", "blur_only"}
        assert distances["noise_jpeg"] < distances["blur_only"]


def test_auto_fits_from_the_closest_shipped_recipe_and_says_so(photos):
    shipped = [recipe.name for recipe in shipped_bases()]
    assert {"realesrgan", "bsrgan", "phone_camera"} <= set(shipped) and "bicubic" not in shipped  # nothing to fit
    settings = FitSettings(budget=2, samples=8, seed=1)
    chosen, distances = choose_base(photos, settings=settings)
    assert set(distances) == set(shipped) and distances[chosen.name] == min(distances.values())
    result = fit_recipe(photos, "auto", settings=settings)
    assert result.base.name == chosen.name and result.base_choice == pytest.approx(distances)
    header = recipe_header(result)
    assert f"from base recipe {chosen.name!r}" in header
    assert "Base chosen as the shipped recipe closest to the photos" in header
    assert f"{chosen.name} {distances[chosen.name]:.3f}" in header
    named = fit_recipe(photos, chosen.name, settings=settings)  # the same base, named: the same fit
    assert named.base_choice == {} and "Base chosen" not in recipe_header(named)
    assert named.recipe.stages == result.recipe.stages
