"""Pictures for the report, drawn with matplotlib (``realciao.plotting``): every method's
per-image scores of one metric, and an overview of crops above a plot.

A plot has one column per image (in the dataset's order, names under the axis) and one
colour per method; each method's points are joined by a thin line so a method reads as a
trace across the images (broken where an image has no value), and its mean is in the
legend. The title says which way is better.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from realciao.plotting import INK, chart, pixel_figure, save, show_image, show_text

GRID = "#e1e1e1"


def _mean_text(scores: list[float]) -> str:
    finite = [v for v in scores if math.isfinite(v)]
    return f"mean {sum(finite) / len(finite):.4g}" if finite else "no value"


def plot_scores(
    path: Path, title: str, images: list[str], series: dict[str, list[float]], lower_better: bool | None
) -> Path:
    """Write a PNG of every method's score per image (NaN: no point) and return ``path``."""
    count = max(1, len(images))
    column = max(0.18, min(0.48, 9.0 / count), 3.6 / count)  # inches per image: a few images stay readable
    names = min(1.4, 0.2 + 0.065 * max([len(name) for name in images] + [3]))  # rotated under the axis
    legend = 0.5 + 0.075 * max(len(f"{name}  mean 00000.000") for name in series)
    figure = chart(1.0 + column * count + legend, 3.8 + names)
    axes = figure.add_subplot()
    positions = np.arange(len(images), dtype=float)
    spread = min(0.08 / column, 1 / (len(series) + 1))  # methods side by side within a column
    for k, (name, scores) in enumerate(series.items()):
        axes.plot(
            positions + (k - (len(series) - 1) / 2) * spread,
            np.asarray(scores, dtype=float),
            color=f"C{k % 10}",
            linewidth=1,
            marker="o",
            markersize=7,
            markeredgecolor=INK,
            markeredgewidth=0.6,
            label=f"{name}  {_mean_text(scores)}",
        )
    axes.set_xticks(positions, images, rotation=90, fontsize=8)
    axes.set_xlim(-0.5, count - 0.5)
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="y", color=GRID)
    axes.set_axisbelow(True)
    direction = {True: "lower is better", False: "higher is better", None: ""}[lower_better]
    axes.set_title(title + (f" ({direction})" if direction else ""), loc="left", fontsize=11)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=9)
    return save(figure, path)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _at_least(image: np.ndarray, side: int) -> np.ndarray:
    """Small crops enlarged by a whole factor with nearest pixels, so their pixels stay visible."""
    factor = max(1, -(-side // max(image.shape[:2])))
    return image.repeat(factor, 0).repeat(factor, 1)


def compose_overview(
    path: Path,
    title: str,
    rows: list[tuple[str, dict[str, Path]]],
    plot: Path | None,
    width_limit: int = 1100,
) -> Path:
    """One picture of a report: rows of labelled crops (label -> file), then a plot, scaled
    to at most ``width_limit`` pixels wide."""
    gap, caption, label_height, top = 6, 18, 20, 34
    tiles = [[(label, _at_least(_read(file), 128)) for label, file in crops.items()] for _, crops in rows]
    row_width = max([sum(image.shape[1] + gap for _, image in row) for row in tiles] + [1])
    plot_image = _read(plot) if plot is not None else None
    width = max(row_width, plot_image.shape[1] if plot_image is not None else 0) + 2 * gap
    heights = [max(image.shape[0] for _, image in row) + caption + label_height + 2 for row in tiles]
    height = top + sum(heights) + (plot_image.shape[0] + gap if plot_image is not None else 0)
    figure = pixel_figure(width, height)
    show_text(figure, title, gap, 8, size=12)
    y = top
    for (heading, _), row, row_height in zip(rows, tiles, heights):
        show_text(figure, heading, gap, y, size=9)
        x = gap
        for label, image in row:
            show_image(figure, image, x, y + label_height)
            fits = len(label) * 6 <= image.shape[1]  # about 6 px a character at 9 pt
            show_text(
                figure,
                label if fits else label[: max(1, image.shape[1] // 6)] + "…",
                x,
                y + label_height + 2 + image.shape[0],
                size=9,
            )
            x += image.shape[1] + gap
        y += row_height
    if plot_image is not None:
        show_image(figure, plot_image, gap, y)
    return save(figure, path, dpi=figure.dpi * min(1.0, width_limit / width))
