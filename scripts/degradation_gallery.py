"""A PNG grid: one GT patch next to many degraded samples of it, with what each one drew.

Each LR sample is enlarged with nearest-neighbour to the GT's size so its pixels stay
visible; under it, one line per op that ran (in order) with its drawn parameters.

    python scripts/degradation_gallery.py --recipe realesrgan --out gallery.png --seed 0 --scale 4
    python scripts/degradation_gallery.py --recipe phone_camera --image photo.png --scale 2.5
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from realciao.degradations import degrade, load_recipe
from realciao.degradations.resize import resize

_FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
_TEXT_COLOR = (20, 20, 20)
_BACKGROUND = (250, 250, 250)


def load_gt(image: Path | None, size: int) -> torch.Tensor:
    """A centre crop (1, 3, size, size) of ``image``, or of scikit-image's astronaut."""
    if image is None:
        from skimage import data

        pixels = data.astronaut()[40:296, 120:376]  # the face and the badge: edges, skin, text
    else:
        pixels = np.asarray(Image.open(image).convert("RGB"))
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()[None] / 255
    height, width = tensor.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize(tensor[..., top : top + side, left : left + side], (size, size), "bicubic", antialias=True).clamp(0, 1)


def _number(value: float) -> str:
    return f"{value:.2f}"


def describe_record(record: dict[str, object]) -> str:
    """One short ASCII line for one op's drawn parameters."""
    name, kind = record["op"], record["kind"]
    size = record.get("out_size")
    if kind == "blur":
        family = str(record["family"]).replace("generalized_gaussian", "gen").replace("gaussian", "gauss")
        family = family.replace("plateau", "plat").replace("_aniso", "-an")
        text = f"{name} {family} k{record['size']}"
        if record["family"] == "sinc":
            return text + f" wc={record['cutoff'] / math.pi:.2f}pi"
        sigma = record["sigma"]
        text += " s=" + ("/".join(_number(s) for s in sigma) if isinstance(sigma, tuple) else _number(sigma))
        if "rotation" in record:
            text += f" rot={math.degrees(record['rotation']):.0f}"
        if "beta" in record:
            text += f" b={_number(record['beta'])}"
        return text
    if kind == "resize":
        scale = f" x{_number(record['scale'])}" if "scale" in record else ""
        return f"{name} {record['mode']}{scale} -> {size[0]}x{size[1]}"
    if kind == "noise":
        strength = f"s={record['sigma']:.1f}" if record["type"] == "gaussian" else f"x{_number(record['scale'])}"
        return f"{name} {record['type']} {strength} {record['color']}"
    if kind == "jpeg":
        return f"{name} q={record['quality']:.0f}"
    if kind == "sharpen":
        return f"{name} w={_number(record['weight'])}"
    return str(name)


def _font(size: int) -> ImageFont.ImageFont:
    if _FONT_FILE.is_file():
        return ImageFont.truetype(str(_FONT_FILE), size)
    return ImageFont.load_default(size=size)


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def _wrap(line: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    """Split at spaces so no line is wider than ``width`` pixels; continuations are indented."""
    lines, current = [], ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = "  " + word
        else:
            current = candidate
    return lines + [current]


def render(gt: torch.Tensor, lq: torch.Tensor, records: list[list[dict]], title: str, columns: int,
           font_size: int) -> Image.Image:
    tile = gt.shape[-1]
    font = _font(font_size)
    line_height = font_size + 3
    enlarged = resize(lq, (tile, tile), "nearest")
    panels = [(gt[0], ["GT", f"{tile}x{tile}"])]
    for index in range(lq.shape[0]):
        size = tuple(lq.shape[-2:])
        lines = [f"#{index} LR {size[0]}x{size[1]} (nearest x{tile / size[0]:.2f})"]
        lines += [describe_record(r) for r in records[index]]
        panels.append((enlarged[index], [w for line in lines for w in _wrap(line, font, tile)]))
    caption = max(len(lines) for _, lines in panels) * line_height + 6
    count = len(panels)
    rows = math.ceil(count / columns)
    margin, header = 8, line_height * 2 + 8
    width = columns * (tile + margin) + margin
    height = header + rows * (tile + caption + margin) + margin
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, margin), title, fill=_TEXT_COLOR, font=_font(font_size + 2))
    for position, (image, lines) in enumerate(panels):
        x = margin + (position % columns) * (tile + margin)
        y = header + (position // columns) * (tile + caption + margin)
        canvas.paste(_to_pil(image), (x, y))
        for line_index, line in enumerate(lines):
            draw.text((x, y + tile + 4 + line_index * line_height), line, fill=_TEXT_COLOR, font=font)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="realesrgan", help="a shipped recipe name or a YAML path")
    parser.add_argument("--out", type=Path, default=Path("degradation_gallery.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=4.0, help="GT size / LR size (any value >= 1)")
    parser.add_argument("--image", type=Path, default=None, help="GT image (default: scikit-image's astronaut)")
    parser.add_argument("--gt-size", type=int, default=256, help="side of the square GT patch")
    parser.add_argument("--samples", type=int, default=11)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--font-size", type=int, default=11)
    args = parser.parse_args()

    recipe = load_recipe(args.recipe)
    gt = load_gt(args.image, args.gt_size)
    lq_side = max(1, round(args.gt_size / args.scale))
    batch = gt.expand(args.samples, *gt.shape[1:]).contiguous()
    result = degrade(batch, recipe, (lq_side, lq_side), torch.Generator().manual_seed(args.seed))
    title = (f"recipe {recipe.name} | seed {args.seed} | GT {args.gt_size}^2 -> LR {lq_side}^2 "
             f"(scale {args.gt_size / lq_side:.3f}) | LR shown enlarged, nearest")
    image = render(gt, result.lq, result.parameters, title, args.columns, args.font_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")


if __name__ == "__main__":
    main()
