"""Photos degraded by a known recipe, to check that a fit recovers it; and a hidden camera
(``camera_lr``, ``write_camera_photos``) no recipe expresses exactly, for the end-to-end check.

40 crops of the built-in photos, downscaled x4 to 128 px, colour Gaussian noise of sigma in
[5, 8] levels (stratified: the sigmas spread evenly over the range), saved by Pillow
(libjpeg) at qualities 60..70 in turn. ``WIDE_BASE`` is a base recipe with much wider ranges
(noise sigma [1, 30], JPEG quality [30, 95]); a fit from it should contain the true ranges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from realciao.degradations import degrade, parse_recipe
from realciao.degradations.sampling import make_generator
from realciao.fitting.samples import as_uint8, hr_crops, load_hr

TRUE_RANGES = {"noise1.gaussian.sigma": (5, 8), "jpeg1.quality": (60, 70)}
WIDE_BASE = {"name": "noise_jpeg", "stages": [
    {"resize": {"relative_to": "target", "modes": ["bicubic"]}},
    {"noise": {"types": [{"type": "gaussian", "p": 1, "sigma": [1, 30]}]}},
    {"jpeg": {"quality": [30, 95]}},
]}
_DOWNSCALE = {"name": "downscale", "stages": [{"resize": {"relative_to": "target", "modes": ["bicubic"]}}]}


def write_known_photos(folder: Path, count: int = 40) -> tuple[list[int], np.ndarray]:
    """Writes ``folder/pNN.jpg``; returns the JPEG quality and the noise sigma of each."""
    gt = hr_crops(load_hr(None, min_side=512), count, 512, seed=123)
    lq = degrade(gt, parse_recipe(_DOWNSCALE), 128, make_generator(seed=5)).lq.permute(0, 2, 3, 1).numpy()
    rng = np.random.default_rng(7)
    sigmas = 5 + 3 * (rng.permutation(count) + 0.5) / count
    qualities = [60 + index % 11 for index in range(count)]
    for index, image in enumerate(lq):
        noisy = image + rng.standard_normal(image.shape).astype(np.float32) * sigmas[index] / 255
        Image.fromarray(as_uint8(noisy)).save(Path(folder) / f"p{index:02d}.jpg", quality=qualities[index])
    return qualities, sigmas


# ----------------------------------------------------------------------------- a hidden camera
# A camera pipeline written as plain numpy/OpenCV, not as a recipe: its structure (blur on the
# HR before an area downscale, signal-dependent noise, chroma-only smoothing, an unsharp mask
# on luma, one libjpeg JPEG) is not one a shipped recipe's stages can express exactly, so a fit
# can only approximate it. ``bench_fit_recipe.py endtoend`` makes "user photos" with it from
# clean HR images, and evaluation pairs of other HR images.
CAMERA_SCALE = 4
CAMERA_RANGES = {
    "optical_sigma": (0.6, 1.0),  # Gaussian blur on the HR, in HR pixels
    "shot_gain": (1e-4, 4e-4),  # Poisson: variance gain * value (values in [0, 1])
    "read_sigma": (0.5, 1.5),  # Gaussian read noise, 8-bit levels
    "chroma_sigma": (1.0, 1.5),  # blur of Cr/Cb only (demosaicing-like), LR pixels
    "sharpen_amount": (0.5, 1.0),  # unsharp mask on luma: y + amount * (y - blur(y))
    "sharpen_sigma": (1.0, 1.0),  # its blur, LR pixels (fixed)
    "jpeg_quality": (75, 90),  # libjpeg quality through Pillow, integer, both ends included
}


def camera_hr(hr: np.ndarray) -> np.ndarray:
    """``hr`` (uint8, uint16 or float; grey or RGB) as float32 RGB in [0, 1], cropped to a
    multiple of ``CAMERA_SCALE`` on each side (the ground truth the camera's LR pairs with)."""
    from realciao.imageio import to_float_rgb

    image = to_float_rgb(np.asarray(hr))
    height, width = (side - side % CAMERA_SCALE for side in image.shape[:2])
    return np.ascontiguousarray(image[:height, :width])


def _camera_pixels(hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, dict[str, float]]:
    """The camera's LR before its JPEG (uint8), the JPEG quality, and every drawn parameter."""
    import cv2

    def draw(name: str) -> float:
        low, high = CAMERA_RANGES[name]
        return float(rng.uniform(low, high))

    params = {name: draw(name) for name in CAMERA_RANGES if name != "jpeg_quality"}
    low, high = CAMERA_RANGES["jpeg_quality"]
    quality = int(rng.integers(low, high + 1))
    image = camera_hr(hr)
    height, width = image.shape[:2]
    image = cv2.GaussianBlur(image, (0, 0), params["optical_sigma"], borderType=cv2.BORDER_REFLECT)
    lr = cv2.resize(image, (width // CAMERA_SCALE, height // CAMERA_SCALE), interpolation=cv2.INTER_AREA)
    lr = np.clip(lr, 0, 1).astype(np.float64)
    gain = params["shot_gain"]
    lr = rng.poisson(lr / gain) * gain + rng.standard_normal(lr.shape) * params["read_sigma"] / 255
    ycrcb = cv2.cvtColor(np.clip(lr, 0, 1).astype(np.float32), cv2.COLOR_RGB2YCrCb)
    y = ycrcb[..., 0]
    y_blurred = cv2.GaussianBlur(y, (0, 0), params["sharpen_sigma"], borderType=cv2.BORDER_REFLECT)
    ycrcb[..., 0] = y + params["sharpen_amount"] * (y - y_blurred)
    for channel in (1, 2):
        chroma = np.ascontiguousarray(ycrcb[..., channel])
        ycrcb[..., channel] = cv2.GaussianBlur(chroma, (0, 0), params["chroma_sigma"], borderType=cv2.BORDER_REFLECT)
    rgb = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    params["jpeg_quality"] = float(quality)
    return as_uint8(rgb), quality, params


def _jpeg_bytes(pixels: np.ndarray, quality: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def camera_lr(hr: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """The hidden camera's photo of ``hr`` (uint8 or float RGB): the decoded JPEG, uint8 of
    (H // 4, W // 4, 3) (pair it with ``camera_hr(hr)``), and its drawn parameters. The same
    ``seed`` gives the same photo."""
    import io

    pixels, quality, params = _camera_pixels(hr, np.random.default_rng(seed))
    with Image.open(io.BytesIO(_jpeg_bytes(pixels, quality))) as file:
        return np.asarray(file.convert("RGB")), params


def write_camera_photos(
    folder: str | Path, hr_images, seed: int
) -> list[tuple[str, int, dict[str, float]]]:
    """The hidden camera's photos of ``hr_images`` (image files, or (name, array) pairs) as
    ``folder/NAME.jpg`` at LR size (1/4 of the HR's sides); photo i draws from seed (seed, i).
    Returns (file name, JPEG quality, parameters) of each, in order."""
    from realciao.imageio import read_image, to_float_rgb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, item in enumerate(hr_images):
        if isinstance(item, (str, Path)):
            name, image = Path(item).stem, to_float_rgb(read_image(item).pixels)
        else:
            name, image = item
        pixels, quality, params = _camera_pixels(image, np.random.default_rng((seed, index)))
        (folder / f"{name}.jpg").write_bytes(_jpeg_bytes(pixels, quality))
        written.append((f"{name}.jpg", quality, params))
    return written
