"""Each degradation op against basicsr 1.4.2's function as the oracle (same parameters)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realciao.compat import import_basicsr
from realciao.degradations.filters import filter2d, reflect_pad, separable_filter
from realciao.degradations.jpeg import jpeg_compress, quantization_tables
from realciao.degradations.kernels import (
    GAUSSIAN,
    GENERALIZED_GAUSSIAN,
    PLATEAU,
    SINC,
    KernelParameters,
    build_kernels,
)
from realciao.degradations.noise import GRAY, add_gaussian_noise, add_poisson_noise, distinct_levels
from realciao.degradations.quantize import quantize
from realciao.degradations.resize import resize
from realciao.degradations.sharpen import usm_sharpen

TOLERANCE = 1e-5


def _basicsr(submodule: str):
    try:
        return import_basicsr(submodule)
    except ImportError as error:
        pytest.skip(f"basicsr is the oracle here and does not import: {error}")


@pytest.fixture(scope="module")
def reference_degradations():
    return _basicsr("data.degradations")


@pytest.fixture(scope="module")
def reference_filters():
    return _basicsr("utils.img_process_util")


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth content plus texture, so filters and thresholds see something like a photo."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    base = 0.5 + 0.3 * torch.sin(6 * x + 4 * y)
    texture = torch.rand(batch, 3, height, width, generator=generator)
    return (0.7 * base + 0.3 * texture).clamp(0, 1)


def _params(family: int, size: int, sigma_x=1.0, sigma_y=1.0, rotation=0.0, beta=1.0, cutoff=1.0):
    def one(value, dtype=torch.float32):
        return torch.tensor([value], dtype=dtype)

    return KernelParameters(
        family=one(family, torch.long), size=one(size, torch.long), sigma_x=one(sigma_x), sigma_y=one(sigma_y),
        rotation=one(rotation), beta=one(beta), cutoff=one(cutoff),
    )


def _pad_to(kernel: np.ndarray, canvas: int) -> torch.Tensor:
    pad = (canvas - kernel.shape[0]) // 2
    return torch.from_numpy(np.pad(kernel, ((pad, pad), (pad, pad)))).float()


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize(
    ("size", "sigma_x", "sigma_y", "rotation"),
    [(21, 2.5, 0.7, 0.6), (7, 0.3, 2.9, -2.8), (15, 1.2, 1.2, 0.0)],
)
def test_anisotropic_gaussian_matches_basicsr(reference_degradations, size, sigma_x, sigma_y, rotation):
    expected = reference_degradations.bivariate_Gaussian(size, sigma_x, sigma_y, rotation, isotropic=False)
    ours = build_kernels(_params(GAUSSIAN, size, sigma_x, sigma_y, rotation), canvas=21)[0]
    assert (ours - _pad_to(expected, 21)).abs().max() < 1e-6


@pytest.mark.parametrize("beta", [0.5, 0.9, 3.7])
def test_generalized_gaussian_matches_basicsr(reference_degradations, beta):
    expected = reference_degradations.bivariate_generalized_Gaussian(13, 2.0, 0.8, 1.1, beta, isotropic=False)
    ours = build_kernels(_params(GENERALIZED_GAUSSIAN, 13, 2.0, 0.8, 1.1, beta), canvas=21)[0]
    assert (ours - _pad_to(expected, 21)).abs().max() < 1e-6


@pytest.mark.parametrize("beta", [1.0, 1.6])
def test_plateau_matches_basicsr(reference_degradations, beta):
    expected = reference_degradations.bivariate_plateau(19, 1.5, 1.5, 0.0, beta, isotropic=True)
    ours = build_kernels(_params(PLATEAU, 19, 1.5, 1.5, 0.0, beta), canvas=21)[0]
    assert (ours - _pad_to(expected, 21)).abs().max() < 1e-6


@pytest.mark.parametrize(("size", "cutoff"), [(7, math.pi / 3), (13, math.pi / 5), (21, 2.9)])
def test_sinc_matches_basicsr(reference_degradations, size, cutoff):
    expected = reference_degradations.circular_lowpass_kernel(cutoff, size, pad_to=21)
    ours = build_kernels(_params(SINC, size, cutoff=cutoff), canvas=21)[0]
    assert (ours - torch.from_numpy(expected).float()).abs().max() < 1e-6


def test_kernels_of_one_batch_are_built_independently():
    params = KernelParameters(
        family=torch.tensor([GAUSSIAN, SINC]), size=torch.tensor([7, 21]), sigma_x=torch.tensor([0.5, 1.0]),
        sigma_y=torch.tensor([0.5, 1.0]), rotation=torch.zeros(2), beta=torch.ones(2), cutoff=torch.tensor([1.0, 2.0]),
    )
    kernels = build_kernels(params, canvas=21)
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(2))
    assert kernels[0, :7].abs().sum() == 0 and kernels[0, 14:].abs().sum() == 0  # size 7 stays inside 7 x 7
    assert kernels[1, 0].abs().sum() > 0  # size 21 fills the canvas


# ---------------------------------------------------------------------------- filtering
@pytest.mark.parametrize(("batch", "height", "width", "size"), [(3, 40, 53, 21), (1, 64, 64, 9), (2, 17, 30, 7)])
def test_filter2d_matches_basicsr(reference_filters, batch, height, width, size):
    images = _images(batch, height, width)
    kernels = torch.rand(batch, size, size, generator=torch.Generator().manual_seed(1))
    kernels /= kernels.sum(dim=(1, 2), keepdim=True)
    expected = reference_filters.filter2D(images, kernels)
    assert (filter2d(images, kernels) - expected).abs().max() < TOLERANCE


@pytest.mark.parametrize("method", ["conv", "fft"])
def test_filter2d_methods_match_basicsr(reference_filters, method):
    """Both paths: one grouped convolution (the GPU default) and per-sample FFT (the CPU default)."""
    images = _images(4, 32, 36)
    kernels = torch.rand(4, 21, 21, generator=torch.Generator().manual_seed(2))
    kernels /= kernels.sum(dim=(1, 2), keepdim=True)
    ours = filter2d(images, kernels, method=method)
    assert (ours - reference_filters.filter2D(images, kernels)).abs().max() < TOLERANCE


def test_reflect_pad_handles_pads_larger_than_the_image():
    images = torch.arange(3.0).view(1, 1, 1, 3)
    padded = reflect_pad(images, 4)
    assert padded.shape == (1, 1, 9, 11)
    assert padded[0, 0, 4].tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]  # keeps mirroring
    wide = torch.rand(1, 2, 5, 6)
    assert torch.equal(reflect_pad(wide, 3), F.pad(wide, (3, 3, 3, 3), mode="reflect"))


def test_separable_filter_matches_dense_filter(reference_filters):
    usm = reference_filters.USMSharp()  # its buffer is the 51 x 51 Gaussian, outer product of 1-D ones
    images = _images(2, 48, 70)
    dense = reference_filters.filter2D(images, usm.kernel)
    kernel_1d = torch.from_numpy(np.ascontiguousarray(usm.kernel[0, 25].numpy())).double()
    kernel_1d = kernel_1d / kernel_1d.sum()
    assert (separable_filter(images, kernel_1d) - dense).abs().max() < TOLERANCE


def _photo_crops() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float() / 255
    return torch.stack([photo[:, :96, :128], photo[:, 200:296, 300:428]])


def test_usm_matches_basicsr(reference_filters):
    images = _photo_crops()
    expected = reference_filters.USMSharp()(images, weight=0.5, threshold=10)
    assert (usm_sharpen(images, 0.5, threshold=10, radius=51) - expected).abs().max() < TOLERANCE


def test_usm_differs_only_where_the_threshold_decision_is_a_rounding_tie(reference_filters):
    """A residual within float rounding of the threshold can land on either side (summation
    order differs from a dense convolution); that pixel's mask bit then shifts the output by
    at most a few 1e-4 over its 51 x 51 neighbourhood. Textured noise makes such ties common."""
    images = _images(2, 64, 80)
    expected = reference_filters.USMSharp()(images, weight=0.5, threshold=10)
    difference = (usm_sharpen(images, 0.5, threshold=10, radius=51) - expected).abs()
    assert difference.max() < 1e-3
    assert (difference > TOLERANCE).float().mean() < 0.05


def test_usm_takes_a_weight_per_sample(reference_filters):
    images = _photo_crops()
    ours = usm_sharpen(images, torch.tensor([0.0, 1.0]))
    assert (ours[0] - images[0]).abs().max() == 0
    expected = reference_filters.USMSharp()(images[1:], weight=1.0, threshold=10)
    assert (ours[1:] - expected).abs().max() < TOLERANCE


# ---------------------------------------------------------------------------- resize
@pytest.mark.parametrize("mode", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [(37, 50), (90, 64)])
def test_resize_without_antialias_is_real_esrgan_interpolate(mode, size):
    images = _images(2, 64, 64)
    expected = F.interpolate(images, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
    assert (resize(images, size, mode, antialias=False) - expected).abs().max() < TOLERANCE


def test_antialias_only_changes_shrinking():
    images = _images(1, 64, 64)
    assert (resize(images, (20, 20), "bicubic", True) - resize(images, (20, 20), "bicubic", False)).abs().max() > 1e-3
    assert (resize(images, (90, 90), "bicubic", True) - resize(images, (90, 90), "bicubic", False)).abs().max() < 1e-6


# ---------------------------------------------------------------------------- noise
def test_gaussian_color_noise_matches_basicsr(reference_degradations):
    images = _images(3, 24, 24)
    sigma = torch.tensor([5.0, 20.0, 30.0])
    torch.manual_seed(7)
    expected = reference_degradations.add_gaussian_noise_pt(images, sigma=sigma, gray_noise=0, clip=True)
    ours = add_gaussian_noise(images, sigma / 255, torch.zeros(3, dtype=torch.long), torch.Generator().manual_seed(7))
    assert (ours - expected).abs().max() < TOLERANCE


def test_gray_gaussian_noise_is_one_field_per_sample():
    images = torch.full((2, 3, 16, 16), 0.5)
    noisy = add_gaussian_noise(images, torch.full((2,), 0.05), torch.full((2,), GRAY), torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:, 0], noisy[:, 1]) and torch.equal(noisy[:, 1], noisy[:, 2])
    assert not torch.equal(noisy[0], noisy[1])  # the reference would share the field


def test_poisson_noise_matches_basicsr(reference_degradations):
    images = _images(3, 24, 24)
    scale = torch.tensor([0.5, 1.0, 3.0])
    torch.manual_seed(3)
    expected = reference_degradations.add_poisson_noise_pt(images, scale=scale, gray_noise=0, clip=True)
    ours = add_poisson_noise(images, scale, torch.zeros(3, dtype=torch.bool), torch.Generator().manual_seed(3))
    assert (ours - expected).abs().max() < TOLERANCE


def test_gray_poisson_noise_matches_basicsr_for_one_sample(reference_degradations):
    images = _images(1, 24, 24)
    torch.manual_seed(4)
    expected = reference_degradations.add_poisson_noise_pt(images, scale=2.0, gray_noise=torch.ones(1), clip=True)
    ours = add_poisson_noise(images, torch.tensor([2.0]), torch.ones(1, dtype=torch.bool), torch.Generator().manual_seed(4))
    assert (ours - expected).abs().max() < TOLERANCE


def test_distinct_levels_counts_per_sample():
    levels = torch.zeros(2, 3, 4, 4)
    levels[0, 0, 0, :3] = torch.tensor([10.0, 20.0, 30.0])
    assert distinct_levels(levels).tolist() == [4.0, 1.0]


# ---------------------------------------------------------------------------- JPEG and quantisation
@pytest.mark.parametrize(("height", "width"), [(64, 64), (45, 70), (16, 33)])
def test_jpeg_matches_diffjpeg(height, width):
    """Tolerance: equal to float precision (max 1e-6 seen) except where a DCT coefficient sits
    exactly on a rounding boundary and summation order flips it (rare; one coefficient's
    basis function then differs, up to ~0.03 in one 8 x 8 block). So: 99.9 % of pixels
    within 1e-5 and mean difference below 1e-4."""
    diffjpeg = _basicsr("utils.diffjpeg").DiffJPEG(differentiable=False)
    images = _images(4, height, width, seed=5)
    quality = torch.tensor([30.0, 47.5, 71.2, 95.0])
    expected = diffjpeg(images, quality=quality.clone())
    difference = (jpeg_compress(images, quality, padding="zeros", table_layout="diffjpeg") - expected).abs()
    assert (difference > TOLERANCE).float().mean() < 1e-3
    assert difference.mean() < 1e-4


def test_jpeg_quality_is_per_sample():
    images = _photo_crops()[:1].expand(2, 3, 96, 128)
    out = jpeg_compress(images, torch.tensor([20.0, 95.0]))
    error_low, error_high = ((out - images) ** 2).mean(dim=(1, 2, 3)).tolist()
    assert error_low > 2 * error_high


def test_jpeg_tables_follow_ijg_scaling():
    luma, chroma = quantization_tables(torch.tensor([50.0, 10.0, 100.0]), layout="ijg")
    assert luma[0, 0, 1] == 11 and luma[0, 1, 0] == 12  # quality 50 = the Annex K table
    assert luma[1, 0, 0] == 16 * 5  # below 50: 50 / q
    assert luma[2].min() == 1 and chroma[1].max() == 255  # clipped to [1, 255]
    transposed, _ = quantization_tables(torch.tensor([50.0]), layout="diffjpeg")
    assert torch.equal(transposed[0], luma[0].T)


def test_quantize_rounds_to_8_bit_levels():
    values = torch.tensor([-0.2, 0.0, 0.5, 1.0 / 255 * 0.6, 1.3])
    assert torch.allclose(quantize(values), torch.tensor([0.0, 0.0, 128 / 255, 1 / 255, 1.0]))
