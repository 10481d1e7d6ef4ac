"""Validation during training, on the main process: PSNR/SSIM on a paired set (LR made
with MATLAB bicubic, per axis, so every scale works), no-reference metrics on real LR photos,
sample images. Images are read and upscaled by the same library code as the commands."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from realciao.bicubic import matlab_resize
from realciao.degradations import degrade_image, load_recipe
from realciao.imageio import ImageReadError, read_rgb
from realciao.metrics import psnr, quantize_8bit, ssim
from realciao.train.config import ValidationOptions
from realciao.train.data import BUILTIN_VALIDATION, builtin_image, list_image_files
from realciao.upscaling import upscale_image


@dataclass
class ValidationResult:
    metrics: dict[str, float] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (3, H, W) in [0, 1]


def bicubic_lr(hr: torch.Tensor, lr_size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) -> (3, h, w): MATLAB's imresize to exactly ``lr_size``, on 8-bit levels."""
    return quantize_8bit(matlab_resize(hr, lr_size))


def paired_images(options: ValidationOptions) -> list[tuple[str, torch.Tensor]]:
    images = []
    if options.builtin_sample:
        images += [
            (f"builtin_{n}", torch.from_numpy(builtin_image(n)).permute(2, 0, 1)) for n in BUILTIN_VALIDATION
        ]
    if options.hr_folder:
        for path in list_image_files(Path(options.hr_folder))[: options.max_images]:
            try:
                images.append((path.stem, torch.from_numpy(read_rgb(path)).permute(2, 0, 1)))
            except ImageReadError as error:
                warnings.warn(f"skipping validation image: {error}", stacklevel=2)
    return images


def _upscale(model, lr: torch.Tensor, size: tuple[int, int], tile: int) -> torch.Tensor:
    """Tiled, through the same code as ``realciao-upscale``, so validation never runs out of memory."""
    array = lr[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
    out = upscale_image(model, array, size=size, tile=tile)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None]


@torch.no_grad()
def validate(model: torch.nn.Module, options: ValidationOptions, device: torch.device) -> ValidationResult:
    result = ValidationResult()
    model.eval()
    pairs = paired_images(options)
    recipe = load_recipe(options.recipe) if options.recipe else None
    for scale in options.scales:
        values: dict[str, list[float]] = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
        for index, (name, hr) in enumerate(pairs):
            lr_size = (int(hr.shape[-2] // scale), int(hr.shape[-1] // scale))
            hr_size = (round(lr_size[0] * scale), round(lr_size[1] * scale))
            hr = hr[:, : hr_size[0], : hr_size[1]]
            if recipe is None:
                lr = bicubic_lr(hr, lr_size)
            else:  # the degraded benchmark: restoration, measured against bicubic of the same LR
                lr = degrade_image(hr, recipe, lr_size, options.recipe_seed + index)
                bicubic = quantize_8bit(matlab_resize(lr, hr_size))[None]
                values["bicubic_psnr"].append(psnr(bicubic, hr[None], math.ceil(scale)))
                values["bicubic_ssim"].append(ssim(bicubic, hr[None], math.ceil(scale)))
            sr = quantize_8bit(_upscale(model, lr[None].to(device), hr_size, options.tile).cpu())
            shave = math.ceil(scale)
            values["psnr"].append(psnr(sr, hr[None], shave))
            values["ssim"].append(ssim(sr, hr[None], shave))
            if index < options.save_images:
                result.images[f"x{scale:g}_{name}"] = sr[0]
        for key, found in values.items():
            if found:
                result.metrics[f"val/{key}_x{scale:g}"] = float(np.mean(found))
        if recipe is not None and pairs:
            result.metrics[f"val/psnr_margin_x{scale:g}"] = (
                result.metrics[f"val/psnr_x{scale:g}"] - result.metrics[f"val/bicubic_psnr_x{scale:g}"]
            )
    if options.real_lr_folder:
        result.metrics.update(real_photo_metrics(model, options, device, result.images))
    return result


def real_photo_metrics(model, options: ValidationOptions, device, images: dict) -> dict[str, float]:
    import pyiqa

    metrics = {"piqe": pyiqa.create_metric("piqe", device="cpu")}
    if options.niqe_params:
        metrics["niqe"] = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=options.niqe_params)
    scores = {name: [] for name in metrics}
    for index, path in enumerate(list_image_files(Path(options.real_lr_folder))[: options.max_images]):
        try:
            lr = torch.from_numpy(read_rgb(path)).permute(2, 0, 1)[None]
        except ImageReadError as error:
            warnings.warn(f"skipping validation photo: {error}", stacklevel=2)
            continue
        size = (round(lr.shape[-2] * options.real_scale), round(lr.shape[-1] * options.real_scale))
        sr = quantize_8bit(_upscale(model, lr.to(device), size, options.tile).cpu())
        for name, metric in metrics.items():
            scores[name].append(float(metric(sr)))
        if index < options.save_images:
            images[f"real_{path.stem}"] = sr[0]
    return {f"val/{name}_real": float(np.mean(v)) for name, v in scores.items() if v}


def log_images(trackers, images: dict[str, torch.Tensor], step: int) -> None:
    """Validation images, (3, H, W) in [0, 1], to every tracker in the form it takes:
    TensorBoard a (1, 3, H, W) batch, Weights & Biases a list of H x W x 3 uint8 arrays."""
    if not images:
        return
    for tracker in trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({k: v.clamp(0, 1)[None] for k, v in images.items()}, step=step)
        elif tracker.name == "wandb":
            tracker.log_images({k: [to_uint8(v)] for k, v in images.items()}, step=step)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(to_uint8(image)).save(path)
