"""Does realciao's realesrgan.yml degrade as strongly as the reference? A two-sample KS test.

Strength of one degraded sample = PSNR of its LR image against a clean bicubic downscale
of the same GT patch. Both pipelines degrade the same GT crops (default 1,000 crops of
128 x 128 to 32 x 32, from a few photos); the script prints the Kolmogorov-Smirnov
statistic between the two PSNR samples (target: at most 0.1). 128 is the smallest common
patch size the reference survives: its blur2 reflect-pads by 10 after a resize by down to
0.15 (64 x 64 crops become 9 x 9 and basicsr's filter2D fails; realciao's does not).

Like with like: realciao's resizes run with ``antialias: false`` for the statistic (the
reference does not antialias); the statistic with realciao's antialiasing on is printed too.
Per-sample versus per-batch draws change only how draws are grouped in a batch, not their
distribution, so they need no adjustment.

    python scripts/compare_degradation_strength.py [--samples 1000] [--images DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from reference_degradations import ReferencePipeline, seed_reference

from realciao.degradations import degrade, load_recipe, replace_ops
from realciao.degradations.quantize import quantize
from realciao.degradations.resize import resize
from realciao.degradations.specs import Recipe, ResizeOp
from realciao.metrics import psnr_per_image

SHARED_TRAIN_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "train_hr" / "BSDS200"


def load_photos(folder: Path | None, count: int) -> list[torch.Tensor]:
    """A few photos (3, H, W) in [0, 1]: from ``folder`` if given and present, else scikit-image's."""
    if folder is not None and folder.is_dir():
        import cv2

        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".bmp"))[:count]
        photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    else:
        from skimage import data

        photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()][:count]
    return [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1).float() / 255 for p in photos]


def random_crops(photos: list[torch.Tensor], count: int, size: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        top = int(rng.integers(0, photo.shape[1] - size + 1))
        left = int(rng.integers(0, photo.shape[2] - size + 1))
        crops.append(photo[:, top : top + size, left : left + size])
    return torch.stack(crops)


def strengths(
    gt: torch.Tensor, lq_size: tuple[int, int], batch: int, seed: int, recipe: Recipe | ReferencePipeline
) -> np.ndarray:
    """PSNR per sample against the clean downscale, degraded by a recipe or the reference."""
    clean = quantize(resize(gt, lq_size, "bicubic", antialias=True))
    generator = torch.Generator().manual_seed(seed)
    reference = recipe if isinstance(recipe, ReferencePipeline) else None
    seed_reference(seed)
    values = []
    for start in range(0, gt.shape[0], batch):
        chunk = gt[start : start + batch]
        lq = (
            reference(chunk, lq_size)
            if reference is not None
            else degrade(chunk, recipe, lq_size, generator).lq
        )
        values += psnr_per_image(lq, clean[start : start + batch], y_channel=False)
    return np.asarray(values)


def ks_statistic(first: np.ndarray, second: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(first, second).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--gt-size", type=int, default=128)
    parser.add_argument("--lq-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--images",
        type=Path,
        default=SHARED_TRAIN_IMAGES,
        help="folder of photos to crop from (default: the shared BSDS200, else scikit-image's)",
    )
    parser.add_argument("--photos", type=int, default=8, help="how many photos to crop from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gt = random_crops(load_photos(args.images, args.photos), args.samples, args.gt_size, args.seed)
    lq_size = (args.lq_size, args.lq_size)
    recipe = load_recipe("realesrgan")
    reference = strengths(gt, lq_size, args.batch, args.seed, ReferencePipeline())
    like_reference = strengths(
        gt, lq_size, args.batch, args.seed + 1, replace_ops(recipe, ResizeOp, antialias=False)
    )
    antialiased = strengths(gt, lq_size, args.batch, args.seed + 1, recipe)

    def summary(values: np.ndarray) -> str:
        q10, q50, q90 = np.percentile(values, [10, 50, 90])
        return f"mean {values.mean():6.2f} dB, p10 {q10:6.2f}, median {q50:6.2f}, p90 {q90:6.2f}"

    print(f"{args.samples} GT crops {args.gt_size}^2 -> {args.lq_size}^2; PSNR vs clean bicubic downscale")
    print(f"  reference (basicsr)                  {summary(reference)}")
    print(f"  realciao realesrgan, antialias off   {summary(like_reference)}")
    print(f"  realciao realesrgan (antialias on)   {summary(antialiased)}")
    print(
        f"KS statistic, antialias off vs reference: {ks_statistic(like_reference, reference):.4f} (target <= 0.1)"
    )
    print(
        f"KS statistic, antialias on  vs reference: {ks_statistic(antialiased, reference):.4f} (informative)"
    )


if __name__ == "__main__":
    main()
