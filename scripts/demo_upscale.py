"""Upscale a built-in sample photo with a CiaoSR generator: the whole pipeline in one command.

    python scripts/demo_upscale.py                                  # untrained EDSR-baseline-CiaoSR
    python scripts/demo_upscale.py --model model.safetensors --scale 3.3

Without --model the generator has random weights, so the picture shows that the
machinery runs (any scale, any size), not what a trained model does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

import realciao


def sample_photo(size: int) -> torch.Tensor:
    """scikit-image's bundled astronaut photo, area-downscaled to size x size, (1, 3, n, n) in [0, 1]."""
    from skimage import data

    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)[None]
    return torch.nn.functional.interpolate(image, size=(size, size), mode="area")


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="realciao or official CiaoSR checkpoint (.safetensors)")
    parser.add_argument("--scale", type=float, default=3.3)
    parser.add_argument("--lr-size", type=int, default=96)
    parser.add_argument("--out", default="demo_upscale.png")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = realciao.load_generator(args.model) if args.model else realciao.build_generator("edsr-baseline-ciaosr").eval()
    lr = sample_photo(args.lr_size)
    size = (round(args.lr_size * args.scale), round(args.lr_size * args.scale))
    start = time.perf_counter()
    sr = realciao.upscale(model, lr, size)
    seconds = time.perf_counter() - start
    bicubic = torch.nn.functional.interpolate(lr, size=size, mode="bicubic", align_corners=False)
    canvas = Image.new("RGB", (size[1] * 2, size[0]))
    canvas.paste(to_pil(bicubic), (0, 0))
    canvas.paste(to_pil(sr), (size[1], 0))
    canvas.save(args.out)
    weights = args.model or "random weights (untrained)"
    print(f"{args.lr_size}x{args.lr_size} -> {size[1]}x{size[0]} (x{args.scale}) in {seconds:.2f} s with {weights}")
    print(f"wrote {args.out}: bicubic (left), CiaoSR (right)")


if __name__ == "__main__":
    main()
