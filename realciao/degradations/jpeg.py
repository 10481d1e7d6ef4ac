"""JPEG as a DCT model (like the reference's DiffJPEG), one quality per sample, no loops.

Baseline JPEG: RGB -> YCbCr (JFIF), 4:2:0 chroma by 2 x 2 averaging, 8 x 8 DCT-II per
block, quantisation with the IJG tables scaled by quality, and back (chroma upsampled by
repetition). Images are padded to multiples of 16 (one 4:2:0 macroblock). Unlike libjpeg,
pixels are not rounded to integers between stages and quality may be fractional
(Real-ESRGAN draws it from U(30, 95)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from realciao.color import RGB_TO_YCBCR, YCBCR_TO_RGB

# IJG (Annex K) tables, rows = vertical frequency, columns = horizontal frequency.
IJG_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
IJG_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


TABLE_LAYOUTS = ("diffjpeg", "ijg")
PADDINGS = ("zeros", "edge")


def quality_to_scale(quality: torch.Tensor) -> torch.Tensor:
    """IJG quality scaling: table multiplier 50 / q below 50, 2 - q / 50 from 50 up."""
    quality = quality.clamp(1, 100)
    return torch.where(quality < 50, 50.0 / quality, 2.0 - quality / 50.0)


def quantization_tables(quality: torch.Tensor, layout: str = "diffjpeg") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample luma and chroma tables (B, 8, 8), entries clipped to [1, 255] as IJG does.

    ``layout="diffjpeg"`` transposes the tables as DiffJPEG (and so Real-ESRGAN's data) does:
    its vertical frequencies get the IJG horizontal entries. ``"ijg"`` is the standard layout.
    """
    if layout not in TABLE_LAYOUTS:
        raise ValueError(f"unknown JPEG table layout {layout!r}; expected one of {TABLE_LAYOUTS}")
    scale = quality_to_scale(quality.float()).view(-1, 1, 1)
    tables = []
    for table in (IJG_LUMA_TABLE, IJG_CHROMA_TABLE):
        base = torch.tensor(table, dtype=torch.float32, device=quality.device)
        if layout == "diffjpeg":
            base = base.T
        tables.append((base * scale).clamp(1, 255))
    return tables[0], tables[1]


def dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Orthonormal 8-point DCT-II: coefficients = D @ block @ D^T."""
    index = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * index[None, :] + 1) * index[:, None] * math.pi / 16) * 0.5
    matrix[0] /= math.sqrt(2)
    return matrix.to(device=device, dtype=dtype)


def block_dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 2-D block DCT on flattened 8 x 8 blocks: coefficients = blocks @ M (64, 64).

    One large matrix product instead of many 8 x 8 ones; M is orthonormal, so M^T inverts it.
    """
    dct = dct_matrix(torch.device("cpu"), torch.float64)
    return torch.kron(dct, dct).T.to(device=device, dtype=dtype)


def _to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, H/8 * W/8, 64), blocks in raster order, pixels row-major."""
    batch, height, width = plane.shape
    blocks = plane.view(batch, height // 8, 8, width // 8, 8).transpose(2, 3)
    return blocks.reshape(batch, -1, 64)


def _from_blocks(blocks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch = blocks.shape[0]
    plane = blocks.view(batch, height // 8, width // 8, 8, 8).transpose(2, 3)
    return plane.reshape(batch, height, width)


def _code_plane(plane: torch.Tensor, table: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """DCT, quantise, dequantise and invert planes (B, H, W) in the 0..255 range; table (B, 8, 8)."""
    height, width = plane.shape[-2:]
    coefficients = _to_blocks(plane - 128) @ transform
    table = table.reshape(-1, 1, 64)
    coefficients = torch.round(coefficients / table) * table
    return _from_blocks(coefficients @ transform.T, height, width) + 128


def jpeg_compress(
    images: torch.Tensor, quality: torch.Tensor, padding: str = "zeros", table_layout: str = "diffjpeg"
) -> torch.Tensor:
    """JPEG-code (B, 3, H, W) in [0, 1] at ``quality`` (B,) and decode; output in [0, 1].

    ``padding`` fills the area up to multiples of 16: "zeros" as DiffJPEG (dark bleed into
    the last blocks), "edge" repeats the border as libjpeg does.
    """
    if padding not in PADDINGS:
        raise ValueError(f"unknown JPEG padding {padding!r}; expected one of {PADDINGS}")
    batch, channels, height, width = images.shape
    if channels != 3:
        raise ValueError(f"JPEG needs RGB images, got {channels} channels")
    quality = quality.to(images.device).expand(batch)
    pad_h, pad_w = -height % 16, -width % 16
    x = images.clamp(0, 1) * 255
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="constant" if padding == "zeros" else "replicate")
    to_ycbcr = torch.tensor(RGB_TO_YCBCR, device=x.device, dtype=x.dtype)
    ycbcr = torch.einsum("ij,bjhw->bihw", to_ycbcr, x)
    luma, chroma = ycbcr[:, 0], ycbcr[:, 1:] + 128
    chroma = F.avg_pool2d(chroma, kernel_size=2)

    luma_table, chroma_table = quantization_tables(quality, table_layout)
    transform = block_dct_matrix(x.device, x.dtype)
    luma = _code_plane(luma, luma_table, transform)
    half_h, half_w = chroma.shape[-2:]
    chroma = _code_plane(
        chroma.reshape(batch * 2, half_h, half_w), chroma_table.repeat_interleave(2, 0), transform
    )
    chroma = chroma.view(batch, 2, half_h, half_w).repeat_interleave(2, -2).repeat_interleave(2, -1) - 128

    to_rgb = torch.tensor(YCBCR_TO_RGB, device=x.device, dtype=x.dtype)
    rgb = torch.einsum("ij,bjhw->bihw", to_rgb, torch.cat([luma[:, None], chroma], dim=1))
    return (rgb.clamp(0, 255) / 255)[:, :, :height, :width]
