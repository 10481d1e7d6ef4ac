"""Linear filtering with reflect borders (basicsr's ``filter2D`` convention).

Two paths:
- ``filter2d``: one kernel per sample. On GPUs, all samples and channels in one grouped
  convolution. On CPU, an FFT product per sample: measured on 2 cores, 2.4x faster than
  the grouped convolution for 16 x 3 x 256^2 with 21 x 21 kernels, and 7x faster for one
  sample (a grouped convolution with few groups uses the CPU badly; one sample at a time
  keeps the FFT's working set in cache).
- ``separable_filter``: one 1-D kernel along both axes (USM's 51 x 51 Gaussian). A dense
  51 x 51 convolution costs 2601 multiply-adds per pixel; here each axis is one matrix
  product with a banded matrix that also folds in the reflect border, which is what BLAS
  is fastest at for training-patch sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Above this side length, the banded matrix is mostly zeros: use a grouped 1-D convolution.
_MAX_MATRIX_SIDE = 512


def reflect_index(index: torch.Tensor, length: int) -> torch.Tensor:
    """Map any integer positions into [0, length) by mirroring without repeating the edge.

    Same as ``F.pad(mode="reflect")`` where that works, and also when the pad exceeds the
    image (it keeps mirroring), so tiny intermediate images never fail.
    """
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index)


def reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad the last two axes by ``pad`` on each side."""
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    if pad < height and pad < width:
        return F.pad(images, (pad, pad, pad, pad), mode="reflect")
    rows = reflect_index(torch.arange(-pad, height + pad, device=images.device), height)
    cols = reflect_index(torch.arange(-pad, width + pad, device=images.device), width)
    return images.index_select(-2, rows).index_select(-1, cols)


def filter2d(images: torch.Tensor, kernels: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Correlate each sample (B, C, H, W) with its own odd kernel (B, K, K), reflect borders.

    ``method``: "conv" (grouped convolution), "fft", or "auto" (FFT on CPU, conv elsewhere).
    """
    if method not in ("auto", "conv", "fft"):
        raise ValueError(f"unknown filter method {method!r}")
    batch, channels, height, width = images.shape
    size = kernels.shape[-1]
    if size % 2 != 1 or kernels.shape[-2] != size:
        raise ValueError(f"kernels must be square and odd, got {tuple(kernels.shape)}")
    if kernels.shape[0] not in (1, batch):
        raise ValueError(f"{kernels.shape[0]} kernels for a batch of {batch}")
    kernels = kernels.to(images.dtype).expand(batch, size, size)
    padded = reflect_pad(images, size // 2)
    if method == "fft" or (method == "auto" and images.device.type == "cpu" and size > 3):
        out = images.new_empty(images.shape)
        for sample in range(batch):
            out[sample : sample + 1] = _fft_correlate(padded[sample : sample + 1], kernels[sample : sample + 1])
        return out
    weight = kernels[:, None].expand(batch, channels, size, size).reshape(batch * channels, 1, size, size)
    out = F.conv2d(padded.reshape(1, batch * channels, *padded.shape[-2:]), weight, groups=batch * channels)
    return out.view(batch, channels, height, width)


def _fft_correlate(padded: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """The valid part of correlating padded images (B, C, H', W') with kernels (B, K, K)."""
    size = kernels.shape[-1]
    height, width = padded.shape[-2:]
    # Transform sizes with small prime factors only: a prime side is several times slower.
    plane = (_fast_fft_size(height), _fast_fft_size(width))
    spectrum = torch.fft.rfft2(padded, s=plane)
    # Correlation is convolution with the flipped kernel; the circular wrap only touches
    # the first K - 1 rows and columns, which are cut off.
    kernel_spectrum = torch.fft.rfft2(kernels.flip(-1, -2), s=plane)[:, None]
    out = torch.fft.irfft2(spectrum * kernel_spectrum, s=plane)
    return out[..., size - 1 : height, size - 1 : width].contiguous()


def _fast_fft_size(length: int) -> int:
    """The smallest n >= length of the form 2^a 3^b 5^c."""
    n = length
    while True:
        m = n
        for prime in (2, 3, 5):
            while m % prime == 0:
                m //= prime
        if m == 1:
            return n
        n += 1


def gaussian_kernel_1d(size: int, sigma: float = 0.0) -> torch.Tensor:
    """Normalised 1-D Gaussian (float64); sigma <= 0 picks OpenCV's ``getGaussianKernel`` default.

    OpenCV's default is 0.3 * ((size - 1) / 2 - 1) + 0.8, which is 8.0 for size 51 (USM).
    OpenCV uses fixed tables for size <= 7 with sigma <= 0; pass a sigma for those.
    """
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def banded_matrix(kernel: torch.Tensor, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """M with (x @ M)[j] = sum_t kernel[t] * x[reflect(j + t - r)]: (length, length)."""
    size = kernel.shape[0]
    radius = size // 2
    out_index = torch.arange(length, device=device)
    taps = torch.arange(size, device=device)
    source = reflect_index(out_index[None, :] + taps[:, None] - radius, length)  # (size, length)
    matrix = torch.zeros(length, length, device=device, dtype=torch.float64)
    weights = kernel.to(device=device, dtype=torch.float64)[:, None].expand(size, length)
    matrix.index_put_((source.reshape(-1), out_index.expand(size, length).reshape(-1)), weights.reshape(-1),
                      accumulate=True)
    return matrix.to(dtype)


def separable_filter(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter (..., H, W) with the odd 1-D ``kernel`` along both axes, reflect borders."""
    height, width = images.shape[-2:]
    if max(height, width) <= _MAX_MATRIX_SIDE:
        along_width = banded_matrix(kernel, width, images.device, images.dtype)
        along_height = banded_matrix(kernel, height, images.device, images.dtype)
        return torch.matmul(along_height.T, torch.matmul(images, along_width))
    return _separable_conv(images, kernel)


def _separable_conv(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    shape = images.shape
    flat = images.reshape(-1, 1, *shape[-2:])
    size = kernel.shape[0]
    padded = reflect_pad(flat, size // 2)
    taps = kernel.to(device=images.device, dtype=images.dtype)
    out = F.conv2d(padded, taps.view(1, 1, 1, size))
    out = F.conv2d(out, taps.view(1, 1, size, 1))
    return out.reshape(shape)
