"""realciao.fitting.independent: the statistics the held-out check uses, on images with known
noise, JPEG grid and blur."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from realciao.fitting import independent
from realciao.fitting.measure import MEASUREMENTS


def smooth_image(seed: int = 0, side: int = 256, blur: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.random((side, side, 3)).astype(np.float32), (0, 0), blur)
    return (image - image.min()) / (image.max() - image.min())


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32) / 255


def test_the_statistics_are_not_the_fits():
    assert not set(independent.STATISTICS) & {m.name for m in MEASUREMENTS}


@pytest.mark.parametrize("sigma", [3, 8, 20])
def test_residual_noise_reads_white_noise_on_a_flat_image(sigma):
    rng = np.random.default_rng(sigma)
    readings = [
        independent.residual_noise(np.clip(0.5 + rng.standard_normal((64, 64)) * sigma / 255, 0, 1))
        for _ in range(8)
    ]
    assert np.median(readings) == pytest.approx(sigma, rel=0.1)


def test_residual_noise_rises_with_noise_on_a_photo_like_image():
    image = smooth_image()[:64, :64]
    rng = np.random.default_rng(1)
    clean = independent.residual_noise(image)
    noisy = independent.residual_noise(np.clip(image + rng.standard_normal(image.shape) * 10 / 255, 0, 1))
    # texture reads a little; independent colour noise of 10 levels is about 6.7 on luminance
    assert clean < 4 and noisy > 6


def test_the_grid_line_rises_as_jpeg_quality_falls_at_any_crop_offset():
    image = smooth_image(blur=2.0)
    rng = np.random.default_rng(2)
    offsets = rng.integers(0, 256 - 64, (16, 2))

    def median(picture):
        return np.median([independent.grid_peak(picture[y : y + 64, x : x + 64]) for y, x in offsets])

    uncompressed, q90, q50, q10 = median(image), median(jpeg(image, 90)), median(jpeg(image, 50)), median(jpeg(image, 10))
    assert uncompressed < q50 < q10
    assert q90 < q10 and uncompressed < 1.4 < q10


def test_high_frequency_share_falls_with_blur_and_rises_with_noise():
    image = smooth_image(blur=0.8)[:64, :64]
    blurred = cv2.GaussianBlur(image, (0, 0), 1.5)
    noisy = np.clip(image + np.random.default_rng(3).standard_normal(image.shape) * 10 / 255, 0, 1)
    share = independent.high_frequency_share
    assert share(blurred) < share(image) < share(noisy)


def test_small_crops_are_undefined_and_the_distance_is_zero_for_the_same_set():
    assert np.isnan(independent.grid_peak(np.zeros((16, 16))))
    crops = independent.random_crops([smooth_image(s) for s in range(3)], 64, 4, seed=0)
    assert len(crops) == 12 and all(c.shape == (64, 64, 3) for c in crops)
    measured = independent.measure(crops)
    same = independent.independent_distance(measured, measured)
    assert same["total"] == pytest.approx(0)
    noisy = independent.measure([np.clip(c + 0.04, 0, 1) + np.random.default_rng(4).standard_normal(c.shape) * 0.03
                                 for c in crops])
    assert independent.independent_distance(measured, noisy)["residual_noise"] > 1
