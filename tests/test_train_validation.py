"""Validation during training: the paired protocol at any scale, on odd image sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import realciao
from realciao.train.config import ValidationOptions
from realciao.train.validation import validate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16],
                                    non_local=False).eval()


def write_photo(path, height: int, width: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    Image.fromarray(base).resize((width, height), Image.BICUBIC).save(path)


def test_paired_validation_works_at_non_integer_scales_on_odd_sizes(tmp_path, model):
    # 480x320 at 1.7 and 255x341 at 3.3 made the old single-scale bicubic fail
    for index, (height, width) in enumerate([(320, 480), (341, 255), (37, 53)]):
        write_photo(tmp_path / f"img{index}.png", height, width, index)
    options = ValidationOptions(hr_folder=str(tmp_path), scales=[1.7, 2.5, 3.3], tile=64, save_images=1)
    result = validate(model, options, torch.device("cpu"))
    for scale in ("1.7", "2.5", "3.3"):
        assert math.isfinite(result.metrics[f"val/psnr_x{scale}"]), scale
        assert 0 < result.metrics[f"val/ssim_x{scale}"] <= 1
    hr_height, hr_width = 320, 480
    lr = (int(hr_height // 1.7), int(hr_width // 1.7))
    assert tuple(result.images["x1.7_img0"].shape[-2:]) == (round(lr[0] * 1.7), round(lr[1] * 1.7))


def test_a_degraded_benchmark_reports_the_margin_over_bicubic_of_the_same_lr(tmp_path, model):
    for index in range(2):
        write_photo(tmp_path / f"img{index}.png", 48, 40, index)
    options = ValidationOptions(hr_folder=str(tmp_path), scales=[4.0], recipe="realesrgan", recipe_seed=3, tile=0)
    first = validate(model, options, torch.device("cpu")).metrics
    again = validate(model, options, torch.device("cpu")).metrics
    assert first == again  # a fixed seed per image: the same LR every validation
    assert first["val/psnr_margin_x4"] == pytest.approx(first["val/psnr_x4"] - first["val/bicubic_psnr_x4"])
    plain = validate(model, ValidationOptions(hr_folder=str(tmp_path), scales=[4.0], tile=0), torch.device("cpu"))
    assert "val/bicubic_psnr_x4" not in plain.metrics and plain.metrics["val/psnr_x4"] != first["val/psnr_x4"]
