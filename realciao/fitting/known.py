"""Photos degraded by a known recipe, to check that a fit recovers it.

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
