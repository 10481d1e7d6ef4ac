"""Real-ESRGAN's degradation pipeline assembled from basicsr 1.4.2's functions: the baseline.

Kernels are sampled per sample with basicsr's numpy samplers (as the Real-ESRGAN dataset
does in its workers); the batch then goes through the ops in the order of Real-ESRGAN's
``RealESRGANModel.feed_data`` with the x4plus options, with ``F.interpolate`` for the
resizes. Random draws use Python's ``random`` and numpy's global RNG, as the reference does
(seed them for repeatable runs). Only benchmark and comparison scripts import this.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

from realciao.compat import import_basicsr

# RealESRGAN_x4plus options (train_realesrgan_x4plus.yml) and dataset constants.
OPTIONS = {
    "blur_kernel_size": 21,
    "kernel_list": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
    "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    "sinc_prob": 0.1,
    "blur_sigma": [0.2, 3],
    "betag_range": [0.5, 4],
    "betap_range": [1, 2],
    "blur_kernel_size2": 21,
    "kernel_list2": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
    "kernel_prob2": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    "sinc_prob2": 0.1,
    "blur_sigma2": [0.2, 1.5],
    "betag_range2": [0.5, 4],
    "betap_range2": [1, 2],
    "final_sinc_prob": 0.8,
    "resize_prob": [0.2, 0.7, 0.1],
    "resize_range": [0.15, 1.5],
    "gaussian_noise_prob": 0.5,
    "noise_range": [1, 30],
    "poisson_scale_range": [0.05, 3],
    "gray_noise_prob": 0.4,
    "jpeg_range": [30, 95],
    "second_blur_prob": 0.8,
    "resize_prob2": [0.3, 0.4, 0.3],
    "resize_range2": [0.3, 1.2],
    "gaussian_noise_prob2": 0.5,
    "noise_range2": [1, 25],
    "poisson_scale_range2": [0.05, 2.5],
    "gray_noise_prob2": 0.4,
    "jpeg_range2": [30, 95],
}
KERNEL_RANGE = [2 * v + 1 for v in range(3, 11)]  # 7 .. 21


class ReferencePipeline:
    """Holds basicsr's modules (USMSharp, DiffJPEG); ``__call__`` degrades a GT batch."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.degradations = import_basicsr("data.degradations")
        process = import_basicsr("utils.img_process_util")
        self.filter2D = process.filter2D
        self.usm_sharpener = process.USMSharp().to(device)
        self.jpeger = import_basicsr("utils.diffjpeg").DiffJPEG(differentiable=False).to(device)
        self.device = torch.device(device)

    def _kernel(self, kernel_list, kernel_prob, sigma, betag, betap, sinc_prob) -> np.ndarray:
        kernel_size = random.choice(KERNEL_RANGE)
        if np.random.uniform() < sinc_prob:
            omega_c = np.random.uniform(np.pi / 3, np.pi) if kernel_size < 13 else np.random.uniform(np.pi / 5, np.pi)
            kernel = self.degradations.circular_lowpass_kernel(omega_c, kernel_size, pad_to=False)
        else:
            kernel = self.degradations.random_mixed_kernels(
                kernel_list, kernel_prob, kernel_size, sigma, sigma, [-math.pi, math.pi], betag, betap,
                noise_range=None)
        pad_size = (21 - kernel_size) // 2
        return np.pad(kernel, ((pad_size, pad_size), (pad_size, pad_size)))

    def sample_kernels(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the Real-ESRGAN dataset draws per sample: kernel1, kernel2, the final sinc."""
        o = OPTIONS
        kernel1, kernel2, sinc = [], [], []
        for _ in range(batch):
            kernel1.append(self._kernel(o["kernel_list"], o["kernel_prob"], o["blur_sigma"], o["betag_range"],
                                        o["betap_range"], o["sinc_prob"]))
            kernel2.append(self._kernel(o["kernel_list2"], o["kernel_prob2"], o["blur_sigma2"], o["betag_range2"],
                                        o["betap_range2"], o["sinc_prob2"]))
            if np.random.uniform() < o["final_sinc_prob"]:
                kernel_size = random.choice(KERNEL_RANGE)
                omega_c = np.random.uniform(np.pi / 3, np.pi)
                sinc.append(self.degradations.circular_lowpass_kernel(omega_c, kernel_size, pad_to=21))
            else:
                pulse = np.zeros((21, 21))
                pulse[10, 10] = 1
                sinc.append(pulse)

        def stack(kernels):
            return torch.from_numpy(np.stack(kernels)).float().to(self.device)

        return stack(kernel1), stack(kernel2), stack(sinc)

    def _noise(self, out, gaussian_prob, sigma_range, poisson_range, gray_prob):
        d = self.degradations
        if np.random.uniform() < gaussian_prob:
            return d.random_add_gaussian_noise_pt(out, sigma_range=sigma_range, clip=True, rounds=False,
                                                  gray_prob=gray_prob)
        return d.random_add_poisson_noise_pt(out, scale_range=poisson_range, gray_prob=gray_prob, clip=True,
                                             rounds=False)

    @staticmethod
    def _random_scale(probs, scale_range) -> float:
        updown = random.choices(["up", "down", "keep"], probs)[0]
        if updown == "up":
            return np.random.uniform(1, scale_range[1])
        if updown == "down":
            return np.random.uniform(scale_range[0], 1)
        return 1.0

    @torch.no_grad()  # as Real-ESRGAN's feed_data; DiffJPEG's tables are nn.Parameters
    def __call__(self, gt: torch.Tensor, lq_size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
        """Degrade ``gt`` (B, 3, H, W) to ``lq_size``; kernel sampling included.

        ``lq_size`` stands for ``(H // scale, W // scale)`` in the reference; ``antialias`` is
        not in the reference and only here to compare like with like.
        """
        o = OPTIONS
        aa = {"antialias": antialias}
        kernel1, kernel2, sinc_kernel = self.sample_kernels(gt.shape[0])
        gt_usm = self.usm_sharpener(gt)
        out = self.filter2D(gt_usm, kernel1)
        scale = self._random_scale(o["resize_prob"], o["resize_range"])
        mode = random.choice(["area", "bilinear", "bicubic"])
        out = F.interpolate(out, scale_factor=scale, mode=mode, **(aa if mode != "area" else {}))
        out = self._noise(out, o["gaussian_noise_prob"], o["noise_range"], o["poisson_scale_range"],
                          o["gray_noise_prob"])
        jpeg_p = out.new_zeros(out.size(0)).uniform_(*o["jpeg_range"])
        # .contiguous(): DiffJPEG returns a channels-last view that basicsr's filter2D cannot
        # .view() on CPU; values are unchanged.
        out = self.jpeger(torch.clamp(out, 0, 1), quality=jpeg_p).contiguous()

        if np.random.uniform() < o["second_blur_prob"]:
            out = self.filter2D(out, kernel2)
        scale = self._random_scale(o["resize_prob2"], o["resize_range2"])
        mode = random.choice(["area", "bilinear", "bicubic"])
        size2 = (int(lq_size[0] * scale), int(lq_size[1] * scale))
        out = F.interpolate(out, size=size2, mode=mode, **(aa if mode != "area" else {}))
        out = self._noise(out, o["gaussian_noise_prob2"], o["noise_range2"], o["poisson_scale_range2"],
                          o["gray_noise_prob2"])

        mode = random.choice(["area", "bilinear", "bicubic"])
        if np.random.uniform() < 0.5:
            out = F.interpolate(out, size=tuple(lq_size), mode=mode, **(aa if mode != "area" else {}))
            out = self.filter2D(out, sinc_kernel)
            jpeg_p = out.new_zeros(out.size(0)).uniform_(*o["jpeg_range2"])
            out = self.jpeger(torch.clamp(out, 0, 1), quality=jpeg_p)
        else:
            jpeg_p = out.new_zeros(out.size(0)).uniform_(*o["jpeg_range2"])
            out = self.jpeger(torch.clamp(out, 0, 1), quality=jpeg_p).contiguous()
            out = F.interpolate(out, size=tuple(lq_size), mode=mode, **(aa if mode != "area" else {}))
            out = self.filter2D(out, sinc_kernel)
        return torch.clamp((out * 255.0).round(), 0, 255) / 255.0


def seed_reference(seed: int) -> None:
    """The reference draws from Python's and numpy's global generators (and torch's for noise)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
