"""Image-quality metrics: full-reference PSNR/SSIM in the SR literature's protocol
(``fullref``), and no-reference metrics (``iqa``: pyiqa with an offline weights folder)."""

from realciao.metrics.fullref import psnr, psnr_per_image, quantize_8bit, rgb_to_y, ssim

__all__ = ["psnr", "psnr_per_image", "quantize_8bit", "rgb_to_y", "ssim"]
