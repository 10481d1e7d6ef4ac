"""Pictures for the report, drawn with Pillow (no plotting library, no fonts outside Pillow):
every method's per-image scores of one metric, and an overview of crops above a plot.

A plot has one column per image (in the dataset's order, names under the axis) and one
colour per method; each method's points are joined by a thin line so a method reads as a
trace across the images, and its mean is in the legend. The title says which way is better.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def text_width(draw: ImageDraw.ImageDraw, text: str, face) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    return right - left


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high]."""
    if not high > low:
        low, high = low - 1, high + 1
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def tick_label(value: float, ticks: list[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step)) + (1 if step / 10 ** math.floor(math.log10(step)) == 2.5 else 0))
    return f"{value:.{decimals}f}"


def plot_scores(path: Path, title: str, images: list[str], series: dict[str, list[float]],
                lower_better: bool | None) -> Path:
    """Write a PNG of every method's score per image (NaN: no point) and return ``path``."""
    title_face, face, small = font(16), font(13), font(11)
    column = max(18, min(48, 900 // max(1, len(images))))
    column = max(column, 360 / max(1, len(images)))  # a few images still get a readable width
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_height = min(140, max([text_width(scratch, name, small) for name in images] + [20]) + 10)
    legend_width = max(text_width(scratch, f"{name}  mean 00000.000", face) for name in series) + 40
    left, top, right, bottom = 70, 60, legend_width + 20, label_height + 20
    plot_w, plot_h = round(column * len(images)), 300
    width, height = left + plot_w + right, top + plot_h + bottom
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    values = [v for scores in series.values() for v in scores if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.05 or 0.5
    ticks = nice_ticks(low - pad, high + pad)
    y_low, y_high = ticks[0], ticks[-1]

    def y_of(value: float) -> float:
        return top + plot_h - (value - y_low) / (y_high - y_low) * plot_h

    direction = {True: "lower is better", False: "higher is better", None: ""}[lower_better]
    draw.text((left, 14), title + (f" ({direction})" if direction else ""), fill=INK, font=title_face)
    for tick in ticks:
        y = y_of(tick)
        draw.line([(left, y), (left + plot_w, y)], fill=GRID)
        label = tick_label(tick, ticks)
        draw.text((left - 8 - text_width(draw, label, small), y - 7), label, fill=INK, font=small)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=INK)
    for i, name in enumerate(images):  # image names, rotated under their column
        x = left + (i + 0.5) * column
        draw.line([(x, top + plot_h), (x, top + plot_h + 4)], fill=INK)
        label = Image.new("L", (label_height - 10, 14), 0)  # right-aligned: after the turn it ends at the axis
        ImageDraw.Draw(label).text((label.width - text_width(draw, name, small), 0), name, fill=255, font=small)
        rotated = label.rotate(90, expand=True)
        canvas.paste(Image.new("RGB", rotated.size, INK), (int(x - 7), top + plot_h + 8), rotated)

    spread = min(8.0, column / (len(series) + 1))  # methods side by side within a column
    for k, (name, scores) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        offset = (k - (len(series) - 1) / 2) * spread
        points = [(left + (i + 0.5) * column + offset, y_of(v)) if math.isfinite(v) else None
                  for i, v in enumerate(scores)]
        for a, b in zip(points, points[1:]):
            if a is not None and b is not None:
                draw.line([a, b], fill=colour, width=1)
        for point in points:
            if point is not None:
                x, y = point
                draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=colour, outline=INK)
        finite = [v for v in scores if math.isfinite(v)]
        mean = f"mean {sum(finite) / len(finite):.4g}" if finite else "no value"
        y = top + 6 + 20 * k
        x = left + plot_w + 16
        draw.ellipse([x, y + 2, x + 10, y + 12], fill=colour, outline=INK)
        draw.text((x + 16, y), f"{name}  {mean}", fill=INK, font=face)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path


def _at_least(image: Image.Image, side: int) -> Image.Image:
    """Small crops enlarged by a whole factor with nearest pixels, so their pixels stay visible."""
    factor = max(1, -(-side // max(image.width, image.height)))
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def compose_overview(path: Path, title: str, rows: list[tuple[str, dict[str, Path]]], plot: Path | None,
                     width_limit: int = 1100) -> Path:
    """One picture of a report: rows of labelled crops (label -> file), then a plot, scaled
    to at most ``width_limit`` pixels wide."""
    title_face, face = font(16), font(13)
    gap, caption = 6, 18
    tiles = [[(label, _at_least(Image.open(file).convert("RGB"), 128)) for label, file in crops.items()]
             for _, crops in rows]
    row_width = max([sum(image.width + gap for _, image in row) for row in tiles] + [1])
    plot_image = Image.open(plot).convert("RGB") if plot is not None else None
    width = max(row_width, plot_image.width if plot_image else 0) + 2 * gap
    heights = [max(image.height for _, image in row) + caption + 22 for row in tiles]
    height = 34 + sum(heights) + (plot_image.height + gap if plot_image else 0)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 8), title, fill=INK, font=title_face)
    y = 34
    for (heading, _), row, row_height in zip(rows, tiles, heights):
        draw.text((gap, y), heading, fill=INK, font=face)
        x = gap
        for label, image in row:
            canvas.paste(image, (x, y + 20))
            name = label if text_width(draw, label, face) <= image.width else label[: max(1, image.width // 8)] + "…"
            draw.text((x, y + 22 + image.height), name, fill=INK, font=face)
            x += image.width + gap
        y += row_height
    if plot_image is not None:
        canvas.paste(plot_image, (gap, y))
    if canvas.width > width_limit:
        scale = width_limit / canvas.width
        canvas = canvas.resize((width_limit, round(canvas.height * scale)), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return path
