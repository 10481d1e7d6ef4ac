"""realciao.fitting.measure: each measurement on images with a known degradation.

Images are scikit-image's bundled photos, a smooth random texture (no fine detail, so a
noise estimate sees only the added noise), grey rectangles (step edges) and a random field of
known power spectrum, degraded here with Pillow's JPEG (libjpeg) and resizing, OpenCV's
Gaussian blur and seeded Gaussian noise, and saved to 8 bits as files would be.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from realciao.fitting.measure import (
    FAMILIES,
    MEASUREMENTS,
    blur_sigma,
    chroma_noise,
    fit_jpeg_quality,
    jpeg_blockiness,
    jpeg_quality_from_tables,
    luminance,
    measure_image,
    mscn_pair_shape,
    mscn_shape,
    mscn_variance,
    noise_sigma,
    noise_sigma_flat,
    ringing,
    spectrum_slope,
)

skimage_data = pytest.importorskip("skimage.data")


def to_float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255


def to_8bit(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.float32) / 255


def save_jpeg(image: np.ndarray, quality: int | None = None, **options) -> bytes:
    """JPEG bytes from Pillow (libjpeg); without ``quality``, ``qtables`` are written as given."""
    buffer = io.BytesIO()
    if quality is not None:
        options["quality"] = quality
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def decode(data: bytes) -> tuple[np.ndarray, dict]:
    with Image.open(io.BytesIO(data)) as file:
        return to_float(np.asarray(file)), file.quantization


def add_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Grey (the same in every channel) Gaussian noise of ``sigma`` 8-bit levels, then 8 bits."""
    noise = np.random.default_rng(seed).standard_normal(image.shape[:2]).astype(np.float32) * sigma / 255
    return to_8bit(image + (noise[..., None] if image.ndim == 3 else noise))


def add_colour_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Gaussian noise of ``sigma`` 8-bit levels drawn independently for each channel, then 8 bits."""
    noise = np.random.default_rng(seed).standard_normal(image.shape).astype(np.float32) * sigma / 255
    return to_8bit(image + noise)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def unsharp_mask(image: np.ndarray, sigma: float = 1.0, amount: float = 1.0) -> np.ndarray:
    return image + amount * (image - blur(image, sigma))


def sinc_lowpass(image: np.ndarray, cutoff: float) -> np.ndarray:
    """Separable windowed-sinc low-pass, ``cutoff`` in cycles/px: rings as an ideal low-pass does."""
    taps = np.sinc(2 * cutoff * np.arange(-12, 13)) * np.hanning(27)[1:-1]
    taps = (taps / taps.sum()).astype(np.float32)
    return cv2.sepFilter2D(image, -1, taps, taps, borderType=cv2.BORDER_REFLECT)


def pillow_resize(image: np.ndarray, factor: int, method: Image.Resampling) -> np.ndarray:
    """A grey float image shrunk ``factor`` times by Pillow (antialiased: the filter widens)."""
    height, width = image.shape
    grey = Image.fromarray(image.astype(np.float32), mode="F")
    return np.asarray(grey.resize((width // factor, height // factor), method))


def crops(image: np.ndarray, size: int = 64) -> list[np.ndarray]:
    """The image cut into size x size tiles, as the fit measures photos."""
    height, width = image.shape[:2]
    return [image[y : y + size, x : x + size] for y in range(0, height - size + 1, size)
            for x in range(0, width - size + 1, size)]


def median_over_crops(measurement, image: np.ndarray) -> float:
    return float(np.nanmedian([measurement(crop) for crop in crops(image)]))


def smooth_texture(size: int = 256, seed: int = 0) -> np.ndarray:
    """Grey texture in [0.25, 0.75] with features about 8 px wide and no finer detail."""
    field = blur(np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32), 8)
    return 0.25 + 0.5 * (field - field.min()) / (field.max() - field.min())


def rectangles(size: int = 256, seed: int = 0) -> np.ndarray:
    """Grey rectangles of random levels: sharp step edges, nothing else."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 0.5, dtype=np.float32)
    for _ in range(40):
        top, left = rng.integers(0, size - 16, 2)
        height, width = rng.integers(12, 64, 2)
        image[top : top + height, left : left + width] = rng.uniform(0.1, 0.9)
    return image


def power_law_field(size: int, exponent: float, seed: int = 0) -> np.ndarray:
    """Grey random field whose power spectrum falls as 1 / f^exponent (random phases), around 0.5."""
    frequency = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    frequency[0, 0] = 1.0
    white = np.fft.rfft2(np.random.default_rng(seed).standard_normal((size, size)))
    field = np.fft.irfft2(white * frequency ** (-exponent / 2), s=(size, size))
    return (0.5 + 0.15 * field / field.std()).astype(np.float32)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {"astronaut": to_float(skimage_data.astronaut()), "camera": to_float(skimage_data.camera())}


def test_measurements_list_names_the_keys_of_measure_image_in_order(photos):
    values = measure_image(photos["astronaut"])
    assert list(values) == [measurement.name for measurement in MEASUREMENTS]
    assert all(isinstance(value, float) for value in values.values())
    for measurement in MEASUREMENTS:
        assert measurement.description and measurement.unit and measurement.min_side >= 1, measurement.name


def test_families_hold_every_measurement_once_in_order():
    assert FAMILIES == {
        "jpeg": ("jpeg_quality", "jpeg_blockiness"),
        "noise": ("noise_sigma", "noise_sigma_flat", "chroma_noise"),
        "sharpness": ("blur_sigma", "spectrum_slope", "ringing"),
        "mscn": ("mscn_shape", "mscn_variance", "mscn_pair_shape"),
    }
    for family, names in FAMILIES.items():
        assert names == tuple(m.name for m in MEASUREMENTS if m.family == family), family


# JPEG quality from tables


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 95])
def test_quality_from_tables_is_exact_for_libjpeg_files(photos, quality):
    _, tables = decode(save_jpeg(photos["astronaut"], quality))
    assert jpeg_quality_from_tables(tables) == quality
    fit = fit_jpeg_quality(tables)
    assert fit.exact and fit.log_error == 0 and fit.order == "natural"
    assert measure_image(photos["astronaut"][:64, :64], jpeg_tables=tables)["jpeg_quality"] == quality


def test_quality_from_tables_is_exact_at_every_quality_colour_and_grey():
    rng = np.random.default_rng(0)
    colour, grey = rng.random((16, 16, 3)), rng.random((16, 16))
    for quality in range(1, 101):
        for image in (colour, grey):
            _, tables = decode(save_jpeg(image, quality))
            assert len(tables) == (2 if image.ndim == 3 else 1)
            assert jpeg_quality_from_tables(tables) == quality, quality


def dqt_tables(data: bytes) -> list[list[int]]:
    """The quantisation tables as the file stores them (zigzag order), from its DQT segments."""
    tables, position = [], 2
    while position < len(data) and data[position + 1] != 0xDA:  # up to start of scan
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if data[position + 1] == 0xDB:
            segment, offset = data[position + 4 : position + 2 + length], 0
            while offset < len(segment):
                wide, offset = segment[offset] >> 4, offset + 1
                size = 128 if wide else 64
                raw = segment[offset : offset + size]
                entries = (
                    [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 128, 2)] if wide else list(raw)
                )
                tables.append(entries)
                offset += size
        position += 2 + length
    return tables


def test_zigzag_tables_from_the_file_are_recognised(photos):
    data = save_jpeg(photos["astronaut"], 62)
    zigzag = dqt_tables(data)
    assert len(zigzag) == 2 and zigzag != [list(table) for table in decode(data)[1].values()]
    assert jpeg_quality_from_tables(zigzag) == 62
    assert fit_jpeg_quality(zigzag).order == "zigzag"
    assert jpeg_quality_from_tables(zigzag, order="zigzag") == 62
    assert jpeg_quality_from_tables(zigzag, order="natural") is None
    assert jpeg_quality_from_tables(decode(data)[1], order="natural") == 62


def test_non_ijg_tables_give_none_or_the_closest_quality(photos):
    _, tables = decode(save_jpeg(photos["astronaut"], 80))
    luma, chroma = np.asarray(tables[0]), np.asarray(tables[1])
    nudged = luma.copy()
    nudged[[5, 17, 40]] += 1  # another encoder's rounding
    assert jpeg_quality_from_tables({0: nudged, 1: chroma}) is None
    assert jpeg_quality_from_tables({0: nudged, 1: chroma}, closest=True) == pytest.approx(80, abs=1)

    # a camera-like table: a ramp in frequency, not the Annex K shape; Pillow writes it as given
    rows, cols = np.mgrid[0:8, 0:8]
    ramp = (2 + 1.5 * (rows + cols)).astype(int).ravel().tolist()
    _, custom = decode(save_jpeg(photos["astronaut"], qtables=[ramp, ramp]))
    assert custom[0] == ramp
    assert jpeg_quality_from_tables(custom) is None
    fit = fit_jpeg_quality(custom)
    assert not fit.exact and 1 <= fit.quality <= 100 and fit.log_error > 0.1
    assert jpeg_quality_from_tables(custom, closest=True) == fit.quality
    # a finer ramp is a higher closest quality
    finer = [max(1, value // 2) for value in ramp]
    assert jpeg_quality_from_tables([finer, finer], closest=True) > fit.quality


def test_malformed_tables_are_refused():
    with pytest.raises(ValueError, match="64 entries"):
        jpeg_quality_from_tables({0: list(range(1, 33))})
    with pytest.raises(ValueError, match=">= 1"):
        jpeg_quality_from_tables([[0] * 64])
    with pytest.raises(ValueError, match="order"):
        jpeg_quality_from_tables([[1] * 64], order="diagonal")


# JPEG blockiness from pixels


@pytest.mark.parametrize("name", ["astronaut", "camera", "texture"])
def test_blockiness_rises_as_quality_falls(photos, name):
    image = smooth_texture() if name == "texture" else photos[name]
    qualities = (95, 75, 50, 30, 10)
    blockiness = [jpeg_blockiness(decode(save_jpeg(image, quality))[0]) for quality in qualities]
    assert np.all(np.diff(blockiness) > 0), blockiness
    assert 0.95 < jpeg_blockiness(image) < 1.1
    assert blockiness[-1] > 2


def test_blockiness_finds_the_grid_of_a_cropped_jpeg(photos):
    decoded, _ = decode(save_jpeg(photos["astronaut"], 30))
    aligned = jpeg_blockiness(decoded[8:264, 8:264])
    assert jpeg_blockiness(decoded[3:259, 5:261]) == pytest.approx(aligned, rel=0.1)


# noise


@pytest.mark.parametrize("sigma", [2, 5, 10, 20])
def test_noise_sigma_is_within_15_percent_on_a_smooth_image(sigma):
    texture = smooth_texture()
    assert noise_sigma(add_noise(texture, sigma)) == pytest.approx(sigma, rel=0.15)
    rgb = np.repeat(texture[..., None], 3, axis=2)
    assert noise_sigma(add_noise(rgb, sigma, seed=1)) == pytest.approx(sigma, rel=0.15)


def test_noise_sigma_of_clean_images_is_small_and_grows_with_noise(photos):
    assert noise_sigma(to_8bit(smooth_texture())) < 0.5
    for image in photos.values():
        readings = [noise_sigma(add_noise(image, sigma)) for sigma in (0, 2, 5, 10, 20)]
        assert readings[0] < 2 and np.all(np.diff(readings) > 0), readings
        assert readings[-1] == pytest.approx(20, rel=0.15)  # saturated areas are left out


@pytest.mark.parametrize("sigma", [3, 5, 10, 20])
def test_noise_sigma_flat_is_within_15_percent_on_every_64_px_crop_of_a_smooth_image(sigma):
    texture = smooth_texture()
    rgb = np.repeat(texture[..., None], 3, axis=2)
    for image in (add_noise(texture, sigma), add_noise(rgb, sigma, seed=1)):
        readings = np.asarray([noise_sigma_flat(crop) for crop in crops(image)])
        assert len(readings) == 16 and np.all(np.abs(readings / sigma - 1) < 0.15), readings


def test_noise_sigma_flat_of_clean_images_is_small_and_grows_with_noise(photos):
    assert noise_sigma_flat(to_8bit(smooth_texture())[:64, :64]) < 0.5  # 8-bit rounding alone: 0.26
    for image in photos.values():
        readings = [median_over_crops(noise_sigma_flat, add_noise(image, s)) for s in (0, 2, 5, 10, 20)]
        assert readings[0] < 2 and np.all(np.diff(readings) > 0), readings
        assert readings[-1] == pytest.approx(20, rel=0.15)


def test_noise_sigma_flat_is_not_noise_sigma_on_correlated_noise(photos):
    """Noise blurred after it was added: the finest Haar band keeps some of it, the smallest
    principal components almost none; white noise reads alike."""
    noisy = add_noise(photos["astronaut"], 10)
    white = median_over_crops(noise_sigma, noisy)
    assert median_over_crops(noise_sigma_flat, noisy) == pytest.approx(white, rel=0.1)
    smoothed = to_8bit(blur(noisy, 1))
    assert median_over_crops(noise_sigma_flat, smoothed) < 0.5 * median_over_crops(noise_sigma, smoothed)


@pytest.mark.parametrize("sigma", [3, 10, 20])
def test_chroma_noise_sees_colour_noise_and_not_grey_noise(sigma):
    rgb = np.repeat(smooth_texture()[..., None], 3, axis=2)
    for crop in crops(rgb)[:4]:
        assert chroma_noise(add_noise(crop, sigma)) < 0.05  # the same noise in R, G and B: no chroma
        # independent channels: Cb carries 0.62 sigma, Cr 0.66 sigma; their rms
        assert chroma_noise(add_colour_noise(crop, sigma)) == pytest.approx(0.64 * sigma, rel=0.15)


def test_chroma_noise_of_a_photo_rises_with_colour_noise_only(photos):
    image = photos["astronaut"]
    clean = median_over_crops(chroma_noise, image)
    assert median_over_crops(chroma_noise, add_noise(image, 10)) == pytest.approx(clean, abs=0.2)
    assert median_over_crops(chroma_noise, add_colour_noise(image, 10)) > clean + 4
    assert chroma_noise(photos["camera"]) == 0.0  # grey


# blur


@pytest.mark.parametrize("name", ["astronaut", "camera", "rectangles"])
def test_blur_sigma_rises_with_gaussian_blur(photos, name):
    image = rectangles() if name == "rectangles" else photos[name]
    readings = [blur_sigma(to_8bit(blur(image, sigma))) for sigma in (0.5, 1, 2, 3)]
    assert np.all(np.diff(readings) > 0), readings
    assert blur_sigma(image) < 1.0
    if name == "rectangles":  # step edges: the blur, combined with the pixel grid's own
        assert readings[2] == pytest.approx(math.sqrt(2**2 + 0.5), rel=0.1)


def test_blur_sigma_cannot_see_blur_without_sharp_edges():
    """A texture with features 8 px wide reads as that blur whatever is added: a caveat."""
    readings = [blur_sigma(to_8bit(blur(smooth_texture(), sigma))) for sigma in (0.5, 3)]
    assert min(readings) > 3 and readings[1] == pytest.approx(readings[0], rel=0.1)


# spectrum slope


@pytest.mark.parametrize("exponent", [1, 2, 3])
def test_spectrum_slope_reads_a_known_power_law(exponent):
    readings = [spectrum_slope(power_law_field(128, exponent, seed)) for seed in range(3)]
    assert readings == pytest.approx([-exponent] * 3, abs=0.15)
    assert spectrum_slope(power_law_field(64, exponent)) == pytest.approx(-exponent, abs=0.35)


def test_spectrum_slope_of_white_noise_is_flat():
    rng = np.random.default_rng(0)
    readings = [spectrum_slope(rng.random((64, 64), dtype=np.float32)) for _ in range(8)]
    assert np.all(np.abs(readings) < 0.5) and abs(np.mean(readings)) < 0.2, readings


def test_spectrum_slope_falls_with_blur_and_rises_with_noise(photos):
    field = power_law_field(64, 2)
    assert spectrum_slope(blur(field, 1)) < spectrum_slope(field) - 3
    assert spectrum_slope(field) < spectrum_slope(add_noise(field, 5)) < 0
    for image in photos.values():
        sharp = median_over_crops(spectrum_slope, image)
        assert median_over_crops(spectrum_slope, to_8bit(blur(image, 1))) < sharp - 2
        assert median_over_crops(spectrum_slope, add_noise(image, 5)) > sharp + 0.5


# ringing


def test_ringing_of_clean_and_gaussian_blurred_steps_is_zero():
    image = rectangles()
    assert ringing(to_8bit(image)) == 0
    assert ringing(to_8bit(blur(image, 1))) == 0
    assert ringing(to_8bit(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA))) == 0
    assert max(ringing(crop) for crop in crops(to_8bit(blur(image, 1)))) < 0.02


def test_ringing_rises_with_sharpening_sinc_lanczos_and_jpeg():
    image = rectangles()
    smooth = median_over_crops(ringing, to_8bit(blur(image, 1)))
    assert median_over_crops(ringing, to_8bit(unsharp_mask(image))) > 0.1 > smooth
    assert median_over_crops(ringing, to_8bit(sinc_lowpass(image, 0.25))) > 0.04
    large = rectangles(512)
    lanczos = median_over_crops(ringing, to_8bit(pillow_resize(large, 2, Image.Resampling.LANCZOS)))
    bilinear = median_over_crops(ringing, to_8bit(pillow_resize(large, 2, Image.Resampling.BILINEAR)))
    assert lanczos > 0.04 and bilinear < 0.01
    assert median_over_crops(ringing, decode(save_jpeg(image, 30))[0]) > 0.02


def test_ringing_barely_moves_with_noise_and_needs_edges():
    image = rectangles()
    assert median_over_crops(ringing, add_noise(image, 10)) < 0.04
    assert math.isnan(ringing(np.full((64, 64), 0.5, dtype=np.float32)))
    assert math.isnan(ringing(add_noise(np.full((64, 64), 0.5, dtype=np.float32), 0.2)))  # below 2 levels/px


# MSCN statistics


def test_mscn_statistics_respond_to_noise_and_blur(photos):
    for image in photos.values():
        noisy, blurred = add_noise(image, 10), to_8bit(blur(image, 2))
        for statistic in (mscn_shape, mscn_variance, mscn_pair_shape):
            assert statistic(blurred) < statistic(image) < statistic(noisy), statistic.__name__
        assert 1.2 < mscn_shape(image) < 2 < mscn_shape(noisy)  # clean photos: between Laplacian and Gaussian


# sizes, inputs, determinism


def test_images_smaller_than_a_measurement_needs_get_nan(photos):
    tiny = measure_image(photos["astronaut"][100:115, 100:115])
    assert all(math.isnan(value) for value in tiny.values())
    narrow = measure_image(photos["astronaut"][100:120, 100:300])  # 20 px: only noise is measured
    assert all(not math.isnan(narrow[name]) for name in FAMILIES["noise"])
    assert all(math.isnan(value) for name, value in narrow.items() if name not in FAMILIES["noise"])
    small = measure_image(photos["astronaut"][200:232, 200:232])
    assert all(not math.isnan(value) for name, value in small.items() if name != "jpeg_quality")
    for function in (jpeg_blockiness, blur_sigma, spectrum_slope, ringing, mscn_shape, mscn_variance,
                     mscn_pair_shape):
        assert math.isnan(function(photos["camera"][:31, :100])), function.__name__
    for function in (noise_sigma, noise_sigma_flat, chroma_noise):
        assert math.isnan(function(photos["astronaut"][:15, :15])), function.__name__


@pytest.mark.parametrize("shape", [(64, 64), (64, 64, 3)])
def test_a_flat_image_has_no_edges_blocks_spectrum_or_mscn_shape(shape):
    values = measure_image(np.full(shape, 0.5, dtype=np.float32))
    assert values["noise_sigma"] == values["noise_sigma_flat"] == 0
    assert values["chroma_noise"] == pytest.approx(0, abs=1e-6)
    assert values["mscn_variance"] == pytest.approx(0, abs=1e-12)
    for name in ("jpeg_blockiness", "blur_sigma", "spectrum_slope", "ringing", "mscn_shape",
                 "mscn_pair_shape"):
        assert math.isnan(values[name]), name


def test_grey_rgb_and_uint8_inputs_agree(photos):
    grey = photos["camera"][:128, :128]
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert np.allclose(luminance(rgb), luminance(grey), atol=1e-3)
    from_grey, from_rgb = measure_image(grey), measure_image(rgb)
    from_uint8 = measure_image(np.round(grey * 255).astype(np.uint8))
    for name, value in from_grey.items():
        if not math.isnan(value):
            # float rounding in the BT.601 sums may flip a tie between edge pixels, and leaves
            # grey RGB a chroma of float rounding
            assert from_rgb[name] == pytest.approx(value, rel=1e-2, abs=1e-3), name
            assert from_uint8[name] == pytest.approx(value, rel=1e-2), name
    with pytest.raises(ValueError, match="shape"):
        luminance(np.zeros((8, 8, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        luminance(np.zeros((8, 8), dtype=np.int32))


def test_measurements_are_deterministic(photos):
    image = add_noise(to_8bit(blur(photos["astronaut"], 1)), 5)
    _, tables = decode(save_jpeg(image, 70))
    first = measure_image(image, jpeg_tables=tables)
    again = measure_image(image.copy(), jpeg_tables=tables)
    assert first == again
