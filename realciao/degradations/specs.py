"""The typed form of a recipe: what each op draws and does. ``recipe.py`` builds these from YAML.

A recipe is an ordered list of stages. A stage is an op (blur, resize, noise, jpeg, sharpen,
quantize) applied with probability ``p``, or a composite: ``OneOf`` picks one branch (a
list of stages) per sample, ``Shuffle`` runs its stages in a random order per sample
(optionally keeping some in their written order). All draws are per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from realciao.degradations.sampling import Constant, Distribution, OddRange, Uniform

KERNEL_FAMILY_NAMES = ("gaussian", "generalized_gaussian", "plateau", "sinc")
NOISE_TYPES = ("gaussian", "poisson")
RESIZE_RELATIVE_TO = ("input", "target")


@dataclass(frozen=True)
class KernelSpec:
    """One kernel family in a blur's mixture, chosen with probability ``p``.

    Gaussian-like families take ``sigma`` (standard deviation in pixels, drawn separately
    for each principal axis when not isotropic) or ``variance`` (BSRGAN's eigenvalues);
    ``beta`` shapes generalized Gaussian and plateau kernels; sinc takes ``cutoff`` in
    radians per pixel. ``size`` overrides the blur's kernel sizes for this family.
    """

    family: str
    p: float
    isotropic: bool = True
    sigma: Distribution | None = None
    variance: Distribution | None = None
    rotation: Distribution = Uniform(-math.pi, math.pi)
    beta: Distribution = Constant(1.0)
    cutoff: Distribution | None = None
    size: OddRange | None = None


@dataclass(frozen=True)
class BlurOp:
    name: str
    kernels: tuple[KernelSpec, ...]
    size: OddRange = OddRange(7, 21)
    p: float = 1.0

    @property
    def canvas(self) -> int:
        """The odd side every kernel of this op fits in."""
        return max([self.size.high] + [k.size.high for k in self.kernels if k.size is not None])


@dataclass(frozen=True)
class ResizeOp:
    """Resize by ``scale`` times the input size or times the requested LR (``target``) size."""

    name: str
    scale: Distribution = Constant(1.0)
    relative_to: str = "input"
    modes: tuple[str, ...] = ("bicubic",)
    mode_probs: tuple[float, ...] | None = None
    antialias: bool = True
    p: float = 1.0


@dataclass(frozen=True)
class NoiseSpec:
    """Gaussian noise (``sigma`` in 8-bit levels) or Poisson shot noise (times ``scale``)."""

    type: str
    p: float
    sigma: Distribution | None = None
    scale: Distribution | None = None
    gray_p: float = 0.0
    correlated_p: float = 0.0


@dataclass(frozen=True)
class NoiseOp:
    name: str
    types: tuple[NoiseSpec, ...]
    p: float = 1.0


@dataclass(frozen=True)
class JpegOp:
    name: str
    quality: Distribution
    padding: str = "edge"
    table_layout: str = "ijg"
    p: float = 1.0


@dataclass(frozen=True)
class SharpenOp:
    """Unsharp masking; ``threshold`` in 8-bit levels, ``radius`` the odd Gaussian size."""

    name: str
    weight: Distribution = Constant(0.5)
    threshold: float = 10.0
    radius: int = 51
    sigma: float = 0.0
    p: float = 1.0


@dataclass(frozen=True)
class QuantizeOp:
    name: str
    bits: int = 8
    p: float = 1.0


Op = Union[BlurOp, ResizeOp, NoiseOp, JpegOp, SharpenOp, QuantizeOp]


@dataclass(frozen=True)
class Branch:
    p: float
    stages: tuple[Stage, ...]


@dataclass(frozen=True)
class OneOf:
    name: str
    choices: tuple[Branch, ...]


@dataclass(frozen=True)
class Shuffle:
    """Stages in a random order per sample; each ``keep_order`` chain stays in written order."""

    name: str
    stages: tuple[Stage, ...]
    keep_order: tuple[tuple[str, ...], ...] = ()


Stage = Union[Op, OneOf, Shuffle]


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[Stage, ...]
    description: str = ""
    gt_sharpening: SharpenOp | None = None
    degrade_sharpened_gt: bool = False
    path: Path | None = field(default=None, compare=False)

