"""Where the report shows an image up close: the places with most detail, the same places for
every method, so the crops sit side by side.

Detail is the mean gradient magnitude of the LR's luma after a 3x3 box blur (the blur keeps
single-pixel noise and JPEG speckle from winning over edges and texture). Places are picked
greedily, each at least a crop away from the ones before (so they show different parts of
the image); a small pull towards the centre breaks ties, so a flat image gets its centre. The LR image decides, not any method's output, so no method picks its own best.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from realciao.color import luma

CROP_PLACES = 2  # places per report image


def detail_map(lr: np.ndarray) -> np.ndarray:
    """(h, w) detail of an (h, w, 3) float image in [0, 1]."""
    grey = luma(lr.astype(np.float32))
    padded = np.pad(grey, 1, mode="edge")
    blurred = (
        sum(padded[i : i + grey.shape[0], j : j + grey.shape[1]] for i in range(3) for j in range(3)) / 9
    )
    gy, gx = np.gradient(blurred)
    return np.hypot(gx, gy)


def window_sums(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of ``values`` over every height x width window, indexed by its top-left pixel."""
    integral = np.pad(values.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (
        integral[height:, width:]
        - integral[:-height, width:]
        - integral[height:, :-width]
        + integral[:-height, :-width]
    )


def detail_places(
    lr: np.ndarray, out_size: tuple[int, int], crop: int, count: int = CROP_PLACES
) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` boxes (top, left, height, width) in output pixels, most detailed first,
    a crop apart; each ``crop`` x ``crop`` or the whole output where it is smaller."""
    h, w = lr.shape[:2]
    out_h, out_w = out_size
    box_h, box_w = min(crop, out_h), min(crop, out_w)
    win_h = min(h, max(1, math.ceil(box_h * h / out_h)))
    win_w = min(w, max(1, math.ceil(box_w * w / out_w)))
    sums = window_sums(detail_map(lr), win_h, win_w) / (win_h * win_w)
    rows, cols = np.mgrid[: sums.shape[0], : sums.shape[1]]
    centre = np.hypot(rows - (h - win_h) / 2, cols - (w - win_w) / 2)
    score = sums - 1e-6 * centre / max(h, w)
    places = []
    for _ in range(count):
        if not np.isfinite(score).any():
            break
        r, c = np.unravel_index(int(np.argmax(score)), score.shape)
        top = min(out_h - box_h, round(r * out_h / h))
        left = min(out_w - box_w, round(c * out_w / w))
        places.append((top, left, box_h, box_w))
        # the next place keeps at least a crop's width or height of gap: a different part of the image
        score[max(0, r - 2 * win_h + 1) : r + 2 * win_h, max(0, c - 2 * win_w + 1) : c + 2 * win_w] = -np.inf
    return places


def lr_view(lr: np.ndarray, out_size: tuple[int, int], box) -> torch.Tensor:
    """(1, 3, height, width): for each output pixel of ``box``, the LR pixel under its centre
    (nearest), so the LR crop shows exactly the region of the output crops."""
    top, left, height, width = box
    h, w = lr.shape[:2]
    rows = np.minimum(h - 1, ((np.arange(top, top + height) + 0.5) * h / out_size[0]).astype(int))
    cols = np.minimum(w - 1, ((np.arange(left, left + width) + 0.5) * w / out_size[1]).astype(int))
    return torch.from_numpy(np.ascontiguousarray(lr[rows][:, cols])).permute(2, 0, 1)[None]


def save_crop(image: torch.Tensor, box, path: Path) -> str:
    """Save the ``box`` of a (1, 3, H, W) image in [0, 1] as PNG; returns the file's name."""
    from PIL import Image

    top, left, height, width = box
    pixels = image[0, :, top : top + height, left : left + width].permute(1, 2, 0).float().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(pixels * 255).clip(0, 255).astype(np.uint8)).save(path)
    return path.name
