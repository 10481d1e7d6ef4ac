"""Upscaling images as arrays and Pillow images: ``upscale_image`` and its helpers.

Any output size (non-integer and asymmetric scales; ``target_size`` turns a scale, a width,
a height or an exact size into pixels), any image size in bounded memory (``realciao.tiling``),
and images as phones make them: grey stays grey, alpha is resized and reattached, 16-bit
stays 16-bit. The ``realciao-upscale`` command (``realciao.cli.upscale``) is built on this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

from realciao.archs.ciaosr import CiaoSR
from realciao.color import luma_tensor
from realciao.errors import RealciaoError
from realciao.imageio import array_to_pil, pil_to_array
from realciao.onnx_models import OnnxUpscaler, upscale_colour
from realciao.tiling import TiledUpscaler, TileReport, default_tile

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


class SizeError(RealciaoError, ValueError):
    """An output size request that cannot be met (zero, negative, or more than one kind given)."""


@dataclass(frozen=True)
class OutputSize:
    """The output size a user asks for, checked once before any image is read: a scale (any
    positive number), an exact (H, W) size, or a width and/or height (one of them alone keeps
    the aspect ratio)."""

    scale: float | None = None
    size: tuple[int, int] | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self):
        kinds = [name for name, value in (("scale", self.scale), ("size", self.size),
                                          ("width/height", self.width if self.width is not None else self.height))
                 if value is not None]
        if len(kinds) != 1:
            raise SizeError(f"give exactly one of scale, size, width/height; got {', '.join(kinds) or 'none'}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise SizeError(f"scale: expected a positive number, got {self.scale:g}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise SizeError(f"size: expected a positive (height, width), got {self.size}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SizeError(f"{name}: expected at least 1 pixel, got {value}")

    def pixels(self, lr_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) output pixels for an image of ``lr_size`` = (h, w)."""
        h, w = lr_size
        if self.scale is not None:
            out = (math.floor(h * self.scale + 0.5), math.floor(w * self.scale + 0.5))
        elif self.size is not None:
            out = (int(self.size[0]), int(self.size[1]))
        elif self.width is not None and self.height is not None:
            out = (int(self.height), int(self.width))
        elif self.width is not None:
            out = (math.floor(h * self.width / w + 0.5), int(self.width))
        else:
            out = (int(self.height), math.floor(w * self.height / h + 0.5))
        if min(out) < 1:
            raise SizeError(f"output size must be at least 1x1 pixels, got {out[1]}x{out[0]} (width x height)")
        return out


def target_size(
    lr_size: tuple[int, int],
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int]:
    """(H, W) output pixels from exactly one of: scale, size (H, W), width and/or height."""
    return OutputSize(scale, size, width, height).pixels(lr_size)


def split_layout(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour part ((h, w) grey or (h, w, 3) RGB) and alpha ((h, w) or None)."""
    if pixels.ndim == 2:
        return pixels, None
    channels = pixels.shape[2] if pixels.ndim == 3 else 0
    if channels == 1:
        return pixels[..., 0], None
    if channels == 2:
        return pixels[..., 0], pixels[..., 1]
    if channels == 3:
        return pixels, None
    if channels == 4:
        return pixels[..., :3], pixels[..., 3]
    raise ValueError(f"image must be (H, W), (H, W, 1|2|3|4), got shape {pixels.shape}")


def resize_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Alpha is resized, not super-resolved: masks and soft edges need no invented texture,
    and running the model on it would double the cost. Bicubic up, area down."""
    enlarging = size[0] * size[1] >= alpha.shape[0] * alpha.shape[1]
    source = alpha.astype(np.float32) if alpha.dtype.kind == "f" else alpha
    resized = cv2.resize(source, (size[1], size[0]), interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)
    return np.clip(resized, 0, 1) if resized.dtype.kind == "f" else resized


def grey_from_rgb(image: torch.Tensor) -> torch.Tensor:
    return luma_tensor(image, -1)


def upscale_array(
    model: CiaoSR | OnnxUpscaler,
    pixels: np.ndarray,
    size: tuple[int, int],
    tile: int | None = None,
    tile_margin: int | None = None,
    precision: str = "fp32",
    progress=None,
) -> tuple[np.ndarray, TileReport]:
    """``upscale_image`` for arrays, also returning the tiling report."""
    if pixels.dtype.type not in SUPPORTED_DTYPES:
        raise ValueError(f"image dtype must be uint8, uint16 or float in [0, 1], got {pixels.dtype}")
    colour, alpha = split_layout(pixels)
    work_dtype = pixels.dtype if pixels.dtype.kind == "u" else np.dtype(np.float32)
    if colour.dtype.kind == "f":
        colour = np.clip(colour, 0, 1).astype(np.float32, copy=False)
    height, width = size
    channels = 1 if colour.ndim == 2 else 3
    out = np.empty((height, width, channels + (alpha is not None)), dtype=work_dtype)
    if isinstance(model, OnnxUpscaler):  # the graph has its own precision
        report = upscale_colour(model, colour, (height, width), out[..., :channels], tile, tile_margin, progress,
                                grey_from_rgb if channels == 1 else None)
        return finish_layout(out, pixels, alpha, channels), report
    if tile is None:
        tile = default_tile(model, scale=max(height / colour.shape[0], width / colour.shape[1]))
    elif tile == 0:  # one tile for the whole image
        tile = max(colour.shape[:2])
    upscaler = TiledUpscaler(model, tile=tile, margin=tile_margin, precision=precision)
    _, report = upscaler(
        colour,
        (height, width),
        out=out[..., :channels],
        on_tile=progress,
        tile_transform=grey_from_rgb if channels == 1 else None,
    )
    return finish_layout(out, pixels, alpha, channels), report


def finish_layout(out: np.ndarray, pixels: np.ndarray, alpha: np.ndarray | None, channels: int) -> np.ndarray:
    """The upscaled colour in ``out`` with the input's alpha (resized) and layout."""
    if alpha is not None:
        out[..., channels] = resize_alpha(alpha, out.shape[:2]).astype(out.dtype, copy=False)
    if pixels.ndim == 2:
        out = out[..., 0]
    return out.astype(pixels.dtype, copy=False)


def upscale_image(
    model: CiaoSR,
    image,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    tile: int | None = None,
    tile_margin: int | None = None,
    precision: str = "fp32",
    progress=None,
):
    """Upscale a numpy array or Pillow image to ``scale`` times its size or to ``size`` = (H, W).

    Arrays: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8,
    uint16 or float in [0, 1]; the result has the same layout and dtype. A Pillow image
    gives a Pillow image (palette and CMYK come back as RGB(A)). Tiles: ``tile`` LR pixels
    per side (None: from free memory; 0: whole image), ``tile_margin`` LR pixels of context
    (None: exact for EDSR-baseline without the non-local branch). ``precision`` fp32, bf16,
    or fp16 (CUDA only; tiles that overflow are redone in fp32). ``progress(done, total)``
    is called after each tile."""
    if isinstance(image, Image.Image):
        pixels = pil_to_array(image)
        result, _ = upscale_array(
            model, pixels, target_size(pixels.shape[:2], scale, size), tile, tile_margin, precision, progress
        )
        upscaled = array_to_pil(result)
        if image.info.get("icc_profile"):
            upscaled.info["icc_profile"] = image.info["icc_profile"]
        return upscaled
    pixels = np.asarray(image)
    result, _ = upscale_array(
        model, pixels, target_size(pixels.shape[:2], scale, size), tile, tile_margin, precision, progress
    )
    return result


def estimate_work(model: CiaoSR, size: tuple[int, int], probe: int = 24) -> str:
    """A rough time estimate for an output of ``size``, from timing a small probe on this
    machine (the per-pixel cost of tiled upscaling barely depends on the image size)."""
    import time

    probe_lr = np.random.default_rng(0).random((probe, probe, 3), dtype=np.float32)
    start = time.perf_counter()
    upscale_array(model, probe_lr, (2 * probe, 2 * probe), tile=probe)
    per_pixel = (time.perf_counter() - start) / (4 * probe * probe)
    seconds = per_pixel * size[0] * size[1]
    if seconds < 120:
        return f"about {seconds:.0f} s here"
    if seconds < 7200:
        return f"about {seconds / 60:.0f} minutes here"
    return f"about {seconds / 3600:.1f} hours here"


def check_size_limit(
    source, size: tuple[int, int], max_megapixels: float, model: CiaoSR | OnnxUpscaler | None
) -> None:
    """The ``--max-megapixels`` guard: a SizeError naming ``source``, the output size and how long
    it would take (when ``model`` is one ``estimate_work`` runs), for outputs above the limit (0: none)."""
    megapixels = size[0] * size[1] / 1e6
    if max_megapixels and megapixels > max_megapixels:
        estimate = f"; {estimate_work(model, size)}" if model is not None else ""
        amount = f"{megapixels:,.0f}" if megapixels >= 1 else f"{megapixels:.2g}"
        raise SizeError(
            f"{source}: the output would be {size[1]}x{size[0]} ({amount} megapixels"
            f"{estimate}), above --max-megapixels {max_megapixels:g}; pass --max-megapixels 0 to allow it"
        )
