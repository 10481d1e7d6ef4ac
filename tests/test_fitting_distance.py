"""realciao.fitting.distance: the stated distance between photos and synthesised patches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from realciao.fitting.distance import (
    MISSING_PENALTY,
    SPREAD_FLOORS,
    TRANSFORMS,
    distance,
    reference,
    robust_spread,
    wasserstein_1d,
)
from realciao.fitting.samples import NAMES, MeasuredSet


def measured(**columns) -> MeasuredSet:
    size = len(next(iter(columns.values())))
    values = {name: np.asarray(columns.get(name, [math.nan] * size), dtype=np.float64) for name in NAMES}
    return MeasuredSet(values, [f"patch{i}" for i in range(size)])


def test_wasserstein_of_shifted_samples_is_the_shift():
    values = np.random.default_rng(0).normal(size=200)
    assert wasserstein_1d(values, values + 0.7) == pytest.approx(0.7)
    assert wasserstein_1d(values, values) == 0


def test_wasserstein_of_samples_of_different_sizes_is_the_area_between_the_cdfs():
    # {0, 1} against {0, 0, 1, 1, 1}: CDFs 1/2 and 2/5 on [0, 1)
    assert wasserstein_1d([0, 1], [0, 0, 1, 1, 1]) == pytest.approx(0.1)
    assert wasserstein_1d([0.0], [3.0]) == pytest.approx(3.0)


def test_robust_spread_is_the_sigma_of_a_gaussian_and_is_floored():
    values = np.random.default_rng(1).normal(scale=2.0, size=20000)
    assert robust_spread(values, 0.01) == pytest.approx(2.0, rel=0.03)
    assert robust_spread(np.full(10, 3.0), 0.25) == 0.25


def test_distance_is_zero_for_the_same_values_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    noise = rng.uniform(1, 5, 100)
    photos = measured(noise_sigma=noise, blur_sigma=rng.uniform(0.5, 1.5, 100))
    ref = reference(photos)
    assert distance(ref, photos).total == 0
    near = distance(ref, measured(noise_sigma=noise * 1.1, blur_sigma=photos.values["blur_sigma"]))
    far = distance(ref, measured(noise_sigma=noise * 2.0, blur_sigma=photos.values["blur_sigma"]))
    assert 0 < near.terms["noise_sigma"] < far.terms["noise_sigma"]
    assert near.terms["blur_sigma"] == far.terms["blur_sigma"] == 0
    assert far.total == pytest.approx(sum(far.terms.values()))


def test_each_term_is_w1_on_the_comparison_scale_over_the_photos_spread():
    rng = np.random.default_rng(3)
    photos = measured(blur_sigma=rng.uniform(0.5, 2.0, 50))
    synthetic = measured(blur_sigma=rng.uniform(0.7, 3.0, 40))
    ref = reference(photos)
    scaled = TRANSFORMS["blur_sigma"](photos.values["blur_sigma"])
    expected = wasserstein_1d(scaled, np.log(synthetic.values["blur_sigma"])) / robust_spread(
        scaled, SPREAD_FLOORS["blur_sigma"])
    assert distance(ref, synthetic).terms["blur_sigma"] == pytest.approx(expected)


def test_measurements_no_photo_gives_are_left_out_with_a_note():
    photos = measured(noise_sigma=[1.0, 2.0, 3.0])  # PNGs: no JPEG tables
    ref = reference(photos)
    assert ref.names == ("noise_sigma",)
    assert any("jpeg_quality left out" in note and "blockiness" in note for note in ref.notes)
    assert set(distance(ref, measured(noise_sigma=[2.0], jpeg_quality=[90.0])).terms) == {"noise_sigma"}


def test_a_measurement_the_synthesised_set_lacks_costs_the_penalty():
    ref = reference(measured(noise_sigma=[1.0, 2.0], blur_sigma=[1.0, 1.2]))
    result = distance(ref, measured(noise_sigma=[1.0, 2.0], blur_sigma=[math.nan, math.nan]))
    assert result.terms == {"noise_sigma": 0.0, "blur_sigma": MISSING_PENALTY}


def test_jpeg_quality_counts_compression_strength():
    """95 against 85 is a larger step than 40 against 30 (log(101 - quality))."""
    ref = reference(measured(jpeg_quality=[80.0, 82.0, 84.0, 86.0]))
    high = distance(ref, measured(jpeg_quality=[95.0] * 4)).terms["jpeg_quality"]
    uncompressed = distance(ref, measured(jpeg_quality=[100.0] * 4)).terms["jpeg_quality"]
    assert uncompressed > high > 0
    scale = TRANSFORMS["jpeg_quality"]
    assert scale(np.asarray(85.0)) - scale(np.asarray(95.0)) > scale(np.asarray(30.0)) - scale(np.asarray(40.0)) > 0


def test_synthesised_patches_without_a_final_jpeg_count_as_uncompressed_beyond_the_photos_pngs():
    nan = math.nan
    jpegs = reference(measured(jpeg_quality=[80.0, 80.0, 80.0, 80.0]))
    assert distance(jpegs, measured(jpeg_quality=[80.0, 80.0, 80.0, 80.0])).total == 0
    half_missing = distance(jpegs, measured(jpeg_quality=[80.0, 80.0, nan, nan])).terms["jpeg_quality"]
    assert half_missing == pytest.approx(0.5 * (math.log(21) - math.log(1)) / SPREAD_FLOORS["jpeg_quality"])
    # half of the photos are PNGs: half of the synthesised patches may end without a JPEG
    mixed = reference(measured(jpeg_quality=[80.0, 80.0, nan, nan]))
    assert mixed.jpeg_fraction == 0.5
    assert distance(mixed, measured(jpeg_quality=[80.0, 80.0, nan, nan])).total == 0
    assert distance(mixed, measured(jpeg_quality=[80.0, nan, nan, nan])).terms["jpeg_quality"] > 0
