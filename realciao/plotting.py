"""Pictures for realciao's reports, drawn with matplotlib (its Agg canvas: no display, no
fonts beyond matplotlib's own), written atomically.

Two kinds: charts (``chart``: axes laid out by matplotlib) and pictures placed in pixels
(``pixel_figure``, ``show_image``, ``show_text``: crops and patches at their own size, with
labels), so that image pixels stay image pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realciao.files import atomic_path

DPI = 100
INK = "#1e1e1e"


def _figure(**options):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(dpi=DPI, **options)


def chart(width: float, height: float):
    """A figure of ``width`` x ``height`` inches (100 px each) whose axes matplotlib lays out."""
    return _figure(figsize=(width, height), layout="constrained")


def pixel_figure(width: int, height: int):
    """A white figure of ``width`` x ``height`` pixels, for ``show_image`` and ``show_text``."""
    return _figure(figsize=(width / DPI, height / DPI), facecolor="white")


def show_image(figure, image: np.ndarray, left: int, top: int) -> None:
    """``image`` (h, w, 3) uint8 at pixel (left, top) of a ``pixel_figure``: one pixel a pixel
    when saved at the figure's dpi (matplotlib's antialiasing filters it when saved smaller)."""
    width, height = (figure.get_figwidth() * DPI, figure.get_figheight() * DPI)
    rows, columns = image.shape[:2]
    axes = figure.add_axes((left / width, 1 - (top + rows) / height, columns / width, rows / height))
    axes.imshow(image, interpolation="antialiased", aspect="auto")
    axes.set_axis_off()


def show_text(figure, text: str, left: float, top: float, size: float = 10, **options) -> None:
    """``text`` with its top-left corner at pixel (left, top) of a ``pixel_figure``."""
    width, height = (figure.get_figwidth() * DPI, figure.get_figheight() * DPI)
    options = {"color": INK, "zorder": 10, **options}  # above images placed later
    figure.text(left / width, 1 - top / height, text, fontsize=size, va="top", ha="left", **options)


def save(figure, path: str | Path, dpi: float = DPI) -> Path:
    """Write ``figure`` to ``path`` (format from its suffix) atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path
