"""PSNR/SSIM of a model and of bicubic upsampling on a paired benchmark folder, same protocol.

    python scripts/compare_with_bicubic.py --model experiments/quickstart/net_g_ema.safetensors \
        --hr-folder ../shared/data/Set5/HR --scales 2 3 4

LR images are made from the HR with MATLAB-style bicubic (basicsr's imresize port); both
methods' outputs are quantised to 8 bits; PSNR and SSIM on Y (BT.601) with a border shave
equal to the scale.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import realciao  # noqa: E402
from realciao.metrics import psnr, quantize_8bit, ssim  # noqa: E402
from realciao.train.data import list_image_files, read_image_file  # noqa: E402
from realciao.train.validation import matlab_bicubic  # noqa: E402


def matlab_bicubic_up(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    from realciao.compat import import_basicsr

    out = import_basicsr("utils.matlab_functions").imresize(lr.double(), size[0] / lr.shape[-2]).float()
    return quantize_8bit(out[:, : size[0], : size[1]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--hr-folder", required=True)
    parser.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = realciao.load_generator(args.model)
    images = [(p.stem, torch.from_numpy(read_image_file(p)).permute(2, 0, 1)) for p in list_image_files(Path(args.hr_folder))]
    print(f"| scale | bicubic PSNR / SSIM | {Path(args.model).name} PSNR / SSIM |")
    print("| --- | --- | --- |")
    for scale in args.scales:
        rows = {"bicubic": [], "model": []}
        for _, hr in images:
            lr_size = (int(hr.shape[-2] // scale), int(hr.shape[-1] // scale))
            hr_size = (round(lr_size[0] * scale), round(lr_size[1] * scale))
            hr_crop = hr[:, : hr_size[0], : hr_size[1]][None]
            lr = matlab_bicubic(hr_crop[0], lr_size)
            shave = math.ceil(scale)
            for name, sr in (("bicubic", matlab_bicubic_up(lr, hr_size)[None]),
                             ("model", quantize_8bit(realciao.upscale(model, lr[None], hr_size)))):
                rows[name].append((psnr(sr, hr_crop, shave), ssim(sr, hr_crop, shave)))
        b, m = np.mean(rows["bicubic"], axis=0), np.mean(rows["model"], axis=0)
        print(f"| x{scale:g} | {b[0]:.2f} / {b[1]:.4f} | {m[0]:.2f} / {m[1]:.4f} |")


if __name__ == "__main__":
    main()
