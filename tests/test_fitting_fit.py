"""realciao.fitting.fit: recovering a known recipe, and the written recipe.

The photos come from a known recipe (``realciao.fitting.known``): 40 crops of scikit-image's bundled photos,
downscaled x4 to 128 px, colour Gaussian noise of sigma in [5, 8] levels (stratified: the 40
sigmas spread evenly over the range), saved by Pillow (libjpeg) at qualities 60..70 (each
about equally often). A fit from a wide base (noise sigma [1, 30], JPEG quality [30, 95])
must read the qualities exactly from the files and give ranges that contain the true ones.
"""

from __future__ import annotations

import re

import pytest

from realciao.degradations import load_recipe, parse_recipe
from realciao.fitting.fit import FitSettings, fit_recipe, recipe_distance, recipe_header, write_recipe
from realciao.fitting.known import WIDE_BASE, write_known_photos
from realciao.fitting.samples import FitError, measure_photos
from realciao.fitting.space import quantities

pytest.importorskip("skimage.data")
pytest.importorskip("optuna")

@pytest.fixture(scope="module")
def known_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("known")
    return folder, write_known_photos(folder)[0]


@pytest.fixture(scope="module")
def fitted(known_photos, one_thread_module):
    folder, _ = known_photos
    photos = measure_photos(folder)
    return fit_recipe(photos, parse_recipe(WIDE_BASE), settings=FitSettings(seed=0), name="known")


@pytest.fixture(scope="module")
def one_thread_module():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_jpeg_qualities_read_from_the_tables_are_exact(known_photos):
    folder, qualities = known_photos
    photos = measure_photos(folder)
    by_file = {}
    for source, quality in zip(photos.sources, photos.values["jpeg_quality"]):
        by_file.setdefault(source, set()).add(quality)
    assert [by_file[str(folder / f"p{i:02d}.jpg")] for i in range(len(qualities))] == [{float(q)} for q in qualities]


def test_fitted_ranges_contain_the_true_ones(fitted):
    ranges = {q.name: q.value for q in quantities(fitted.recipe)}
    noise_low, noise_high = ranges["noise1.gaussian.sigma"]
    quality_low, quality_high = ranges["jpeg1.quality"]
    assert noise_low <= 5 and noise_high >= 8
    assert quality_low <= 60 and quality_high >= 70
    assert quality_high - quality_low < 30  # and narrow where the photos say it exactly
    assert fitted.fitted_distance.total < 0.5 * fitted.base_distance.total


def test_the_written_recipe_loads_and_reproduces_its_distance(fitted, known_photos, tmp_path):
    path = write_recipe(fitted, tmp_path / "known.yml")
    text = path.read_text()
    recipe = load_recipe(path)
    assert recipe.name == "known" and [type(s) for s in recipe.stages] == [type(s) for s in fitted.base.stages]
    header = re.search(r"^#\s+fitted: ([0-9.]+)", text, re.MULTILINE)
    base = re.search(r"^#\s+base noise_jpeg: ([0-9.]+)", text, re.MULTILINE)
    photos = measure_photos(known_photos[0])
    again = recipe_distance(photos, recipe, scale=4, seed=0)
    assert float(header.group(1)) == pytest.approx(again.total, abs=5e-4)
    assert float(base.group(1)) == pytest.approx(recipe_distance(photos, parse_recipe(WIDE_BASE)).total, abs=5e-4)
    for expected in (str(known_photos[0]), "40 photos", "jpeg_quality: median", "noise_sigma: median", "range"):
        assert expected in text


def test_the_header_names_every_measured_value(fitted):
    header = recipe_header(fitted)
    for name in fitted.reference.names:
        assert re.search(rf"{name}: median [-0-9.e]+, range [-0-9.e]+ to [-0-9.e]+", header)


def test_the_same_seed_gives_the_same_recipe(known_photos):
    photos = measure_photos(known_photos[0])
    settings = FitSettings(budget=4, samples=16, seed=3)
    first = fit_recipe(photos, parse_recipe(WIDE_BASE), settings=settings)
    second = fit_recipe(photos, parse_recipe(WIDE_BASE), settings=settings)
    assert first.recipe == second.recipe and first.history == second.history
    other = fit_recipe(photos, parse_recipe(WIDE_BASE), settings=FitSettings(budget=4, samples=16, seed=4))
    assert other.history != first.history


def test_a_recipe_without_ranges_cannot_be_fitted(known_photos):
    photos = measure_photos(known_photos[0])
    with pytest.raises(FitError, match="no ranges or probabilities to fit"):
        fit_recipe(photos, "bicubic", settings=FitSettings(budget=2))
