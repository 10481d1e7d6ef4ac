"""Upscale photos with a CiaoSR generator: ``upscale_image`` for arrays and Pillow images, and
the ``realciao-upscale`` command for files and folders.

Any output size (non-integer and asymmetric scales), any image size in bounded memory
(``realciao.tiling``), and images as phones make them (``realciao.imageio``).

This module's name equals the package's ``realciao.upscale`` function, which the package
binds after importing this module; so nothing here imports ``realciao`` itself.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from realciao.archs.ciaosr import CiaoSR
from realciao.checkpoint import CheckpointError, load_generator
from realciao.imageio import (
    READ_SUFFIXES,
    ImageReadError,
    Picture,
    array_to_pil,
    output_extension,
    pil_to_array,
    read_image,
    write_image,
)
from realciao.tiling import PRECISIONS, TiledUpscaler, TileReport, check_precision, default_tile

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's RGB -> L
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


# ---------------------------------------------------------------------------------------
# Python API
# ---------------------------------------------------------------------------------------


def target_size(
    lr_size: tuple[int, int],
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int]:
    """(H, W) output pixels from exactly one of: scale, size (H, W), width and/or height
    (one of them alone keeps the aspect ratio)."""
    given = [name for name, v in (("scale", scale), ("size", size), ("width/height", width or height)) if v]
    if len(given) != 1:
        raise ValueError(f"give exactly one of scale, size, width/height; got {given or 'none'}")
    h, w = lr_size
    if scale is not None:
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"scale must be a positive number, got {scale}")
        out = (math.floor(h * scale + 0.5), math.floor(w * scale + 0.5))
    elif size is not None:
        out = tuple(int(v) for v in size)
    elif width and height:
        out = (int(height), int(width))
    elif width:
        out = (math.floor(h * width / w + 0.5), int(width))
    else:
        out = (int(height), math.floor(w * height / h + 0.5))
    if min(out) < 1:
        raise ValueError(f"output size must be at least 1x1 pixels, got {out[1]}x{out[0]} (width x height)")
    return out


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
    return (image * image.new_tensor(LUMA)).sum(-1, keepdim=True)


def upscale_array(
    model: CiaoSR,
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
    if alpha is not None:
        out[..., channels] = resize_alpha(alpha, (height, width)).astype(work_dtype, copy=False)
    if pixels.ndim == 2:
        out = out[..., 0]
    return out.astype(pixels.dtype, copy=False), report


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


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (H, W)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 3000x4000; got {text!r}") from error
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realciao-upscale",
        description="Upscale photos with a CiaoSR generator to any scale or size, tile by tile in bounded memory.",
    )
    parser.add_argument("-i", "--input", nargs="+", action="extend", required=True, help="image files, folders or globs")
    parser.add_argument("-o", "--output", default="upscaled", help="output folder (default: upscaled)")
    parser.add_argument("--recursive", action="store_true", help="also read images in subfolders of input folders")
    parser.add_argument("--model", required=True, help="realciao (.safetensors) or official CiaoSR checkpoint")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .pth/.pt checkpoints (they can run code)")
    size = parser.add_argument_group("output size (one of; default --scale 2)")
    size.add_argument("-s", "--scale", type=float, help="scale factor, any positive number (e.g. 2, 2.5, 3.7)")
    size.add_argument("--width", type=int, help="output width in pixels (keeps the aspect ratio unless --height)")
    size.add_argument("--height", type=int, help="output height in pixels (keeps the aspect ratio unless --width)")
    size.add_argument("--size", type=parse_size, metavar="WxH", help="exact output size, e.g. 6000x8000")
    tiles = parser.add_argument_group("tiles")
    tiles.add_argument("--tile", type=int, help="LR tile side in pixels (default: from free memory; 0: no tiling)")
    tiles.add_argument("--tile-margin", type=int, help="LR context around each tile (default: exact for EDSR)")
    run = parser.add_argument_group("device")
    run.add_argument("--precision", choices=sorted(PRECISIONS), default="fp32", help="fp16: CUDA only (default fp32)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    out = parser.add_argument_group("output files")
    out.add_argument("--ext", choices=["auto", "png", "jpg", "webp", "tiff"], default="auto", help="default: as input")
    out.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    out.add_argument("--suffix", default="", help="added to each output file's name, e.g. _x2")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@dataclass
class Job:
    source: Path
    target_stem: Path  # output path without --suffix and extension


def find_inputs(patterns: list[str], output_root: Path, recursive: bool) -> tuple[list[Job], list[str]]:
    """Jobs for every image named, inside a named folder, or matching a glob; plus the inputs
    that matched nothing. Folders keep their layout under the output folder."""
    jobs: list[Job] = []
    unmatched: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if is_image_name(p))
            jobs += [Job(p, output_root / p.relative_to(path).parent / p.stem) for p in found]
        elif path.is_file():
            jobs.append(Job(path, output_root / path.stem))
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=recursive) if Path(p).is_file())
            jobs += [Job(p, output_root / p.stem) for p in found]
            if not found:
                unmatched.append(pattern)
    return jobs, unmatched


def is_image_name(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in READ_SUFFIXES and not path.name.startswith(".")


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return device


@dataclass
class Summary:
    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    output_pixels: int = 0
    seconds: float = 0.0


def process(job: Job, args, model: CiaoSR, summary: Summary, echo, tile_bar) -> None:
    """Read, upscale and write one image; failures are recorded, not raised."""
    try:
        picture: Picture = read_image(job.source)
        ext = output_extension(args.ext, picture.meta)
        target = job.target_stem.with_name(f"{job.target_stem.name}{args.suffix}.{ext}")
        if target.resolve() == job.source.resolve():
            raise ValueError("the output would replace its input; choose another -o folder or a --suffix")
        if target.exists() and not args.overwrite:
            summary.existing.append(target)
            return
        size = target_size(picture.pixels.shape[:2], args.scale, args.size, args.width, args.height)
        start = time.perf_counter()
        with tile_bar(job.source.name) as on_tile:
            upscaled, report = upscale_array(
                model, picture.pixels, size, args.tile, args.tile_margin, args.precision, on_tile
            )
        summary.seconds += time.perf_counter() - start
        if report.fp32_fallbacks:
            echo(f"{job.source}: {report.fp32_fallbacks} tile(s) overflowed in {args.precision}, redone in fp32")
        for note in write_image(target, upscaled, picture.meta, args.quality):
            echo(f"{job.source}: {note}")
        summary.written.append(target)
        summary.output_pixels += size[0] * size[1]
    except (ImageReadError, OSError, ValueError, FloatingPointError) as error:
        record_failure(summary, job.source, str(error), echo)
    except RuntimeError as error:  # torch's out-of-memory errors among them
        hint = " (try a smaller --tile)" if "memory" in str(error).lower() else ""
        record_failure(summary, job.source, f"{error}{hint}", echo)


def record_failure(summary: Summary, source: Path, reason: str, echo) -> None:
    if str(source) not in reason:
        reason = f"{source}: {reason}"
    summary.failed.append((source, reason))
    echo(f"skipped {reason}")


def make_tile_bar(enabled: bool):
    """Context manager factory: a per-image tile bar, shown only for images of several tiles."""
    from contextlib import contextmanager

    from tqdm import tqdm

    @contextmanager
    def tile_bar(name: str):
        bar = None

        def on_tile(done: int, total: int) -> None:
            nonlocal bar
            if enabled and bar is None and total > 1:
                bar = tqdm(total=total, desc=f"  {name}", unit="tile", leave=False, file=sys.stderr)
            if bar is not None:
                bar.update(done - bar.n)

        try:
            yield on_tile
        finally:
            if bar is not None:
                bar.close()

    return tile_bar


def main(argv: list[str] | None = None) -> int:
    """Exit code 0: every image written or already there; 1: some image failed; 2: bad usage."""
    from tqdm import tqdm

    parser = build_parser()
    args = parser.parse_args(argv)
    if sum(v is not None for v in (args.scale, args.size, args.width or args.height or None)) > 1:
        parser.error("give one of --scale, --size, --width/--height")
    if args.scale is None and args.size is None and args.width is None and args.height is None:
        args.scale = 2.0
    if args.tile is not None and args.tile < 0:
        parser.error("--tile must be >= 0")
    if any(v is not None and v < 1 for v in (args.width, args.height)):
        parser.error("--width and --height must be at least 1")
    if args.tile_margin is not None and args.tile_margin < 0:
        parser.error("--tile-margin must be >= 0")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")

    def fail(message: str) -> int:
        print(f"realciao-upscale: error: {message}", file=sys.stderr)
        return 2

    try:
        device = choose_device(args.device)
        check_precision(args.precision, device)
    except ValueError as error:
        return fail(str(error))
    try:
        model = load_generator(args.model, allow_pickle=args.allow_pickle, device=device)
    except CheckpointError as error:
        return fail(str(error))
    jobs, unmatched = find_inputs(args.input, Path(args.output), args.recursive)
    for pattern in unmatched:
        print(f"realciao-upscale: no images at {pattern!r}", file=sys.stderr)
    if not jobs:
        return fail("no input images found")

    summary = Summary()
    show = not args.no_progress
    bar = tqdm(jobs, desc="images", unit="img", disable=not show, file=sys.stderr)
    echo = tqdm.write if show else (lambda message: print(message, file=sys.stderr))
    tile_bar = make_tile_bar(show)
    for job in bar:
        bar.set_postfix_str(job.source.name)
        process(job, args, model, summary, echo, tile_bar)
    bar.close()
    print_summary(summary, len(unmatched))
    return 1 if summary.failed or unmatched else 0


def print_summary(summary: Summary, unmatched: int) -> None:
    rate = summary.output_pixels / 1e6 / summary.seconds if summary.seconds else 0.0
    print(
        f"{len(summary.written)} written, {len(summary.existing)} already there (use --overwrite to redo), "
        f"{len(summary.failed) + unmatched} failed; {summary.output_pixels / 1e6:.1f} output megapixels "
        f"in {summary.seconds:.1f} s ({rate:.3f} MP/s)"
    )
    for _, reason in summary.failed:
        print(f"  failed: {reason}")


if __name__ == "__main__":
    sys.exit(main())
