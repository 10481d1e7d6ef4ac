"""The typed form of a recipe file: what each op draws and does, with its defaults, once.

A recipe is an ordered list of stages. A stage is an op (blur, resize, noise, jpeg, sharpen,
quantize) applied with probability ``p``, or a composite: ``one_of`` picks one branch (a
list of stages) per sample, ``shuffle`` runs its stages in a random order per sample
(optionally keeping some in their written order). All draws are per sample.

In a file a stage is a mapping with one key, the op's name: ``- blur: {kernels: [...]}``.
A drawn value (sigma, scale, quality...) is written as a constant (``3``, ``pi/3``), a range
``[low, high]`` (uniform), ``{uniform: [a, b]}``, ``{integer: [a, b]}``,
``{inverse_uniform: [a, b]}`` or ``{mixture: [d1, d2, ...], probs: [...]}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from realciao.degradations.jpeg import PADDINGS, TABLE_LAYOUTS
from realciao.degradations.kernels import KERNEL_FAMILIES
from realciao.degradations.resize import RESIZE_MODES
from realciao.degradations.sampling import (
    Constant,
    Distribution,
    IntegerUniform,
    InverseUniform,
    Mixture,
    OddRange,
    Uniform,
)
from realciao.typed import Typed

Probability = Annotated[float, Field(ge=0, le=1)]
_PI_EXPRESSION = re.compile(r"^\s*(-)?\s*(?:(\d+(?:\.\d*)?)\s*\*\s*)?pi\s*(?:/\s*(\d+(?:\.\d*)?))?\s*$")
PROBABILITY_TOLERANCE = 1e-6


class Spec(Typed):
    """Recipe parts are immutable values (``replace_ops`` makes changed copies)."""

    model_config = ConfigDict(frozen=True)


# ----------------------------------------------------------------------------- values
def number(value: Any) -> float:
    """A finite number, or a pi expression: ``pi``, ``-pi``, ``2*pi``, ``pi/3``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _PI_EXPRESSION.match(value)
        if match:
            sign, factor, divisor = match.groups()
            result = math.pi * float(factor or 1) / float(divisor or 1)
            return -result if sign else result
    raise ValueError(f"expected a number (or a pi expression like pi/3), got {value!r}")


def _plain(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range(value: Any, convert=number, where: str = "") -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}expected a range [low, high], got {value!r}")
    low, high = convert(value[0]), convert(value[1])
    if low > high:
        raise ValueError(f"{where}empty range [{_plain(low)}, {_plain(high)}]")
    return low, high


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def parse_distribution(value: Any, where: str = "") -> Distribution:
    if isinstance(value, (Constant, Uniform, IntegerUniform, InverseUniform, Mixture)):
        return value
    if isinstance(value, (list, tuple)):
        return Uniform(*_range(value, number, where))
    if isinstance(value, Mapping):
        if "mixture" in value:
            unknown = sorted(set(value) - {"mixture", "probs"})
            if unknown:
                raise ValueError(f"{where}{unknown[0]}: unknown key in a mixture (allowed: mixture, probs)")
            parts = value["mixture"]
            if not isinstance(parts, (list, tuple)) or not parts:
                raise ValueError(f"{where}mixture: expected a non-empty list of distributions, got {parts!r}")
            components = tuple(parse_distribution(v, f"{where}mixture[{i}]: ") for i, v in enumerate(parts))
            probs = value.get("probs", [1.0 / len(components)] * len(components))
            if not isinstance(probs, (list, tuple)) or len(probs) != len(components):
                raise ValueError(f"{where}probs: expected {len(components)} probabilities, got {probs!r}")
            probs = tuple(number(p) for p in probs)
            if any(not 0 <= p <= 1 for p in probs) or abs(sum(probs) - 1) > PROBABILITY_TOLERANCE:
                raise ValueError(
                    f"{where}probs: expected probabilities in [0, 1] summing to 1, got {list(probs)}"
                )
            return Mixture(components, probs)
        kinds = {"uniform": Uniform, "integer": IntegerUniform, "inverse_uniform": InverseUniform}
        if len(value) != 1 or next(iter(value)) not in kinds:
            raise ValueError(
                f"{where}expected exactly one of uniform, integer, inverse_uniform or mixture, got {value!r}"
            )
        ((kind, bounds),) = value.items()
        if kind == "integer":
            return IntegerUniform(*_range(bounds, _integer, f"{where}integer: "))
        low, high = _range(bounds, number, f"{where}{kind}: ")
        if kind == "inverse_uniform" and low <= 0:
            raise ValueError(f"{where}inverse_uniform: expected a positive range, got {bounds!r}")
        return kinds[kind](low, high)
    return Constant(number(value))


def support(dist: Distribution) -> tuple[float, float]:
    """Smallest and largest value ``dist`` can produce."""
    if isinstance(dist, Constant):
        return dist.value, dist.value
    if isinstance(dist, InverseUniform):
        return 1.0 / dist.high, 1.0 / dist.low
    if isinstance(dist, Mixture):
        supports = [support(c) for c in dist.components]
        return min(s[0] for s in supports), max(s[1] for s in supports)
    return float(dist.low), float(dist.high)


def dump_distribution(dist: Distribution) -> Any:
    """The YAML form of a distribution (inverse of ``parse_distribution``)."""
    if isinstance(dist, Constant):
        return dist.value
    if isinstance(dist, Uniform):
        return [dist.low, dist.high]
    if isinstance(dist, IntegerUniform):
        return {"integer": [dist.low, dist.high]}
    if isinstance(dist, InverseUniform):
        return {"inverse_uniform": [dist.low, dist.high]}
    return {"mixture": [dump_distribution(c) for c in dist.components], "probs": list(dist.probs)}


_DISTRIBUTION_SCHEMA = {
    "description": "a constant, [low, high] (uniform), {uniform|integer|inverse_uniform: [a, b]} or "
    "{mixture: [...], probs: [...]}",
    "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "array"}, {"type": "object"}],
}


def Drawn(low: float = -math.inf, high: float = math.inf):  # noqa: N802 (a type, used in annotations)
    """A per-sample drawn value whose support must lie in [low, high]."""

    def check(value: Any) -> Distribution:
        dist = parse_distribution(value)
        lowest, highest = support(dist)
        if lowest < low or highest > high:
            raise ValueError(f"expected values in [{_plain(low)}, {_plain(high)}], got {value!r}")
        return dist

    return Annotated[
        Distribution,
        PlainValidator(check),
        PlainSerializer(dump_distribution),
        WithJsonSchema(_DISTRIBUTION_SCHEMA),
    ]


def _odd_range(value: Any) -> OddRange:
    if isinstance(value, OddRange):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    low, high = _range(value, _integer)
    for bound in (low, high):
        if bound < 1 or bound % 2 == 0:
            raise ValueError(f"expected odd positive kernel sizes, got {bound}")
    return OddRange(low, high)


KernelSizes = Annotated[
    OddRange,
    PlainValidator(_odd_range),
    PlainSerializer(lambda r: [r.low, r.high]),
    WithJsonSchema({"description": "odd kernel size or [low, high] odd sizes"}),
]


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def Items(item: Any, min_length: int = 0):  # noqa: N802 (a type, used in annotations)
    """A tuple of ``item`` written as a YAML list (elements checked strictly)."""
    return Annotated[tuple[item, ...], BeforeValidator(_as_tuple), Field(min_length=min_length)]


def check_probabilities(values: list[float], field: str) -> None:
    total = sum(values)
    if abs(total - 1.0) > PROBABILITY_TOLERANCE:
        raise ValueError(f"{field}: probabilities sum to {total:g}, expected 1")


# ----------------------------------------------------------------------------- what a fit moves
@dataclass(frozen=True)
class SearchRange:
    """A drawn value a recipe fit (``realciao.fitting.space``) moves: the field holding its
    distribution, the bounds the search stays in (widened to hold the base recipe's values)
    and its label, formatted with the fields of the spec that holds the value."""

    field: str
    bounds: tuple[float, float]
    label: str
    keeps_one: bool = False
    """Resize scales: 1 ("keep the size") stays 1, and a fixed factor is structure, not searched."""
    mixture_label: Optional[str] = None
    """A mixture's component probabilities are searched too, under this label."""


@dataclass(frozen=True)
class Search:
    """What a fit may move in one op. Every op declares one (``OpSpec.search``); one that
    moves nothing says so with ``Search(fits_p=False)``."""

    fits_p: bool = True
    """The op's probability ``p`` is searched where the base sets one below 1."""
    fits_p_at_one: bool = False
    """... and, when the fit asks for it (``SearchSpace(p_at_one=True)``), where the base
    leaves it at 1: a JPEG's, when some photos are not JPEG files (was the image saved as a
    JPEG at that point at all?)."""
    ranges: tuple[SearchRange, ...] = ()
    """Drawn values of the op itself."""
    entries: Optional[str] = None
    """A field listing sub-specs (a blur's kernels, a noise op's types) whose values are searched."""
    entry_ranges: tuple[SearchRange, ...] = ()
    """Drawn values of each entry (an entry without the field, e.g. a sinc kernel's sigma, is left out)."""
    shared: bool = False
    """The entries share one support per field (a blur's Gaussian-like kernels) instead of one each."""
    entry_probs: bool = False
    """The entries' probabilities are searched, where there are several."""
    entry_tag: str = ""
    """The entry field that names an entry in parameter names (noise: its type)."""
    entry_probabilities: tuple[SearchRange, ...] = ()
    """Probability fields of each entry that are searched (noise: ``gray_p``), one for all the
    entries where the base gives them one value, else one each; the bounds are (0, 1), capped
    by what the entry's other ``*_p`` mode probabilities leave."""


# search bounds of each drawn quantity
SIGMA_BOUNDS = (0.1, 4.0)  # blur sigma, px
VARIANCE_BOUNDS = (0.01, 16.0)  # BSRGAN-style kernel eigenvalues, px^2
NOISE_SIGMA_BOUNDS = (0.0, 30.0)  # 8-bit levels
POISSON_SCALE_BOUNDS = (0.0, 3.0)
QUALITY_BOUNDS = (10.0, 100.0)
SHARPEN_WEIGHT_BOUNDS = (0.0, 2.0)
SCALE_BOUNDS = (0.1, 2.0)  # resize factors


# ----------------------------------------------------------------------------- ops
class OpSpec(Spec):
    """Fields every op has; ``op`` is the key the stage is written under in a file."""

    search: ClassVar[Optional[Search]] = None
    """What a recipe fit may move in this op; None (not declared) makes a fit refuse the op."""

    name: Optional[Annotated[str, Field(min_length=1)]] = None
    """Name shown in parameter records and used by shuffle's keep_order (default: op name + number)."""
    p: Probability = 1.0
    """Probability that the op runs, drawn per sample."""


class KernelSpec(Spec):
    """One kernel family in a blur's mixture, chosen with probability ``p``.

    Gaussian-like families take ``sigma`` (standard deviation in pixels, drawn separately
    for each principal axis when not isotropic) or ``variance`` (BSRGAN's eigenvalues);
    ``beta`` shapes generalized Gaussian and plateau kernels; sinc takes ``cutoff`` in
    radians per pixel. ``size`` overrides the blur's kernel sizes for this family.
    """

    family: Literal[KERNEL_FAMILIES]
    p: Probability
    isotropic: bool = True
    sigma: Optional[Drawn(0.0)] = None
    variance: Optional[Drawn(0.0)] = None
    rotation: Drawn() = Uniform(-math.pi, math.pi)
    beta: Drawn(1e-6) = Constant(1.0)
    cutoff: Optional[Drawn(1e-6, math.pi)] = None
    size: Optional[KernelSizes] = None

    @model_validator(mode="after")
    def _family_fields(self) -> KernelSpec:
        given = self.model_fields_set
        if self.family == "sinc":
            extra = sorted(given & {"isotropic", "sigma", "variance", "rotation", "beta"})
            if extra:
                raise ValueError(f"{extra[0]}: not an option of the sinc family (it takes cutoff)")
            if self.cutoff is None:
                raise ValueError("cutoff: missing (required for the sinc family)")
            return self
        if "cutoff" in given:
            raise ValueError("cutoff: only the sinc family takes a cutoff")
        if (self.sigma is None) == (self.variance is None):
            raise ValueError("expected exactly one of sigma and variance")
        if self.isotropic and "rotation" in given:
            raise ValueError("rotation: an isotropic kernel has no rotation")
        if self.family == "gaussian" and "beta" in given:
            raise ValueError("beta: only generalized_gaussian and plateau kernels take a beta")
        return self


class BlurOp(OpSpec):
    # one support per field for the whole op, shared by its Gaussian-like kernels; sinc cutoffs stay
    search: ClassVar[Search] = Search(
        entries="kernels",
        shared=True,
        entry_ranges=(
            SearchRange("sigma", SIGMA_BOUNDS, "Gaussian sigma (px)"),
            SearchRange("variance", VARIANCE_BOUNDS, "Gaussian variance (px^2)"),
        ),
    )

    op: Literal["blur"] = Field("blur", exclude=True)
    kernels: Items(KernelSpec, 1)
    """The kernel families of the mixture; their probabilities sum to 1."""
    size: KernelSizes = OddRange(7, 21)
    """Odd kernel sizes drawn uniformly."""

    @model_validator(mode="after")
    def _mixture(self) -> BlurOp:
        check_probabilities([k.p for k in self.kernels], "kernels")
        return self

    @property
    def canvas(self) -> int:
        """The odd side every kernel of this op fits in."""
        return max([self.size.high] + [k.size.high for k in self.kernels if k.size is not None])


class ResizeOp(OpSpec):
    """Resize by ``scale`` times the input size or times the requested LR (``target``) size."""

    search: ClassVar[Search] = Search(
        fits_p=False,
        ranges=(
            SearchRange(
                "scale",
                SCALE_BOUNDS,
                "scale range (x {relative_to} size)",
                keeps_one=True,
                mixture_label="probabilities of the scale ranges",
            ),
        ),
    )

    op: Literal["resize"] = Field("resize", exclude=True)
    scale: Drawn(1e-6) = Constant(1.0)
    relative_to: Literal["input", "target"] = "input"
    modes: Items(Literal[RESIZE_MODES], 1) = ("bicubic",)
    mode_probs: Optional[Items(Probability, 1)] = None
    """Probabilities of the modes (default: equal)."""
    antialias: bool = True
    """Widen bilinear/bicubic kernels when shrinking."""

    @model_validator(mode="after")
    def _modes(self) -> ResizeOp:
        if self.mode_probs is not None:
            if len(self.mode_probs) != len(self.modes):
                raise ValueError(
                    f"mode_probs: expected {len(self.modes)} probabilities (one per mode), "
                    f"got {len(self.mode_probs)}"
                )
            check_probabilities(list(self.mode_probs), "mode_probs")
        return self


class NoiseSpec(Spec):
    """Gaussian noise (``sigma`` in 8-bit levels) or Poisson shot noise (times ``scale``)."""

    type: Literal["gaussian", "poisson"]
    p: Probability
    sigma: Optional[Drawn(0.0)] = None
    scale: Optional[Drawn(0.0)] = None
    gray_p: Probability = 0.0
    correlated_p: Probability = 0.0

    @model_validator(mode="after")
    def _type_fields(self) -> NoiseSpec:
        wanted, other = ("sigma", "scale") if self.type == "gaussian" else ("scale", "sigma")
        if getattr(self, wanted) is None:
            raise ValueError(f"{wanted}: missing (required for {self.type} noise)")
        if other in self.model_fields_set:
            raise ValueError(f"{other}: not an option of {self.type} noise (it takes {wanted})")
        if self.type == "poisson" and "correlated_p" in self.model_fields_set:
            raise ValueError("correlated_p: only gaussian noise can be channel-correlated")
        if self.gray_p + self.correlated_p > 1 + PROBABILITY_TOLERANCE:
            raise ValueError(f"expected gray_p + correlated_p <= 1, got {self.gray_p + self.correlated_p:g}")
        return self


class NoiseOp(OpSpec):
    # the gray-noise probability is searched (luminance-only sensor noise against colour noise:
    # measure.chroma_noise tells them apart); the channel-correlated one stays as it is
    search: ClassVar[Search] = Search(
        entries="types",
        entry_probs=True,
        entry_tag="type",
        entry_probabilities=(SearchRange("gray_p", (0.0, 1.0), "gray-noise probability"),),
        entry_ranges=(
            SearchRange("sigma", NOISE_SIGMA_BOUNDS, "{type} sigma (8-bit levels)"),
            SearchRange("scale", POISSON_SCALE_BOUNDS, "{type} scale"),
        ),
    )

    op: Literal["noise"] = Field("noise", exclude=True)
    types: Items(NoiseSpec, 1)
    """The noise types of the mixture; their probabilities sum to 1."""

    @model_validator(mode="after")
    def _mixture(self) -> NoiseOp:
        check_probabilities([t.p for t in self.types], "types")
        return self


class JpegOp(OpSpec):
    search: ClassVar[Search] = Search(ranges=(SearchRange("quality", QUALITY_BOUNDS, "quality"),), fits_p_at_one=True)

    op: Literal["jpeg"] = Field("jpeg", exclude=True)
    quality: Drawn(1.0, 100.0)
    padding: Literal[PADDINGS] = "edge"
    table_layout: Literal[TABLE_LAYOUTS] = "ijg"


class SharpenOp(OpSpec):
    """Unsharp masking; ``threshold`` in 8-bit levels, ``radius`` the odd Gaussian size."""

    search: ClassVar[Search] = Search(ranges=(SearchRange("weight", SHARPEN_WEIGHT_BOUNDS, "weight"),))

    op: Literal["sharpen"] = Field("sharpen", exclude=True)
    weight: Drawn(0.0) = Constant(0.5)
    threshold: Annotated[float, Field(ge=0)] = 10.0
    radius: Annotated[int, Field(ge=1)] = 51
    sigma: float = 0.0
    """Gaussian sigma; <= 0 takes OpenCV's default for the radius."""


class QuantizeOp(OpSpec):
    search: ClassVar[Search] = Search(fits_p=False)  # nothing drawn; its bits are structure

    op: Literal["quantize"] = Field("quantize", exclude=True)
    bits: Annotated[int, Field(ge=1, le=16)] = 8


class Branch(Spec):
    p: Probability
    stages: Items(Stage, 1)


class OneOf(Spec):
    op: Literal["one_of"] = Field("one_of", exclude=True)
    name: Optional[Annotated[str, Field(min_length=1)]] = None
    choices: Items(Branch, 1)

    @model_validator(mode="after")
    def _mixture(self) -> OneOf:
        check_probabilities([b.p for b in self.choices], "choices")
        return self


class Shuffle(Spec):
    """Stages in a random order per sample; each ``keep_order`` chain stays in written order."""

    op: Literal["shuffle"] = Field("shuffle", exclude=True)
    name: Optional[Annotated[str, Field(min_length=1)]] = None
    stages: Items(Stage, 1)
    keep_order: Items(Items(str, 1)) = ()


Op = Union[BlurOp, ResizeOp, NoiseOp, JpegOp, SharpenOp, QuantizeOp]
STAGE_TYPES = (BlurOp, ResizeOp, NoiseOp, JpegOp, SharpenOp, QuantizeOp, OneOf, Shuffle)
STAGE_KEYS = tuple(t.model_fields["op"].default for t in STAGE_TYPES)


def _stage_mapping(value: Any) -> Any:
    """``{blur: {...}}`` (the file form) -> ``{op: blur, ...}`` (the tagged form pydantic reads)."""
    if isinstance(value, STAGE_TYPES):
        return value
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"expected a stage: a mapping with one op ({', '.join(STAGE_KEYS)}), got {value!r}")
    ((key, body),) = value.items()
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ValueError(f"{key}: expected a mapping of the op's options, got {body!r}")
    if "op" in body:
        raise ValueError(f"{key}: 'op' is not an option (the op is the key)")
    return {**body, "op": key}


Stage = Annotated[
    Union[BlurOp, ResizeOp, NoiseOp, JpegOp, SharpenOp, QuantizeOp, OneOf, Shuffle],
    Field(discriminator="op"),
    BeforeValidator(_stage_mapping),
]


class Recipe(Spec):
    name: Optional[str] = None
    """Default: the file's stem."""
    description: str = ""
    fitted_scale: Optional[Annotated[float, Field(ge=1)]] = None
    """The training scale (GT size / LR size) realciao-fit-recipe fitted the ranges for; training
    whose scale range leaves it out is warned (a recipe's blur and noise mean something else at
    another scale)."""
    gt_sharpening: Optional[SharpenOp] = None
    """USM applied to the GT: the sharpened GT is the target of the pixel and perceptual losses (Real-ESRGAN)."""
    degrade_sharpened_gt: bool = False
    """Degrade the sharpened GT instead of the plain GT (needs gt_sharpening)."""
    stages: Items(Stage, 1)
    path: Optional[Path] = Field(default=None, exclude=True, repr=False)
    """The file it was read from (set by load_recipe, not written in files)."""

    @model_validator(mode="after")
    def _sharpening(self) -> Recipe:
        if self.degrade_sharpened_gt and self.gt_sharpening is None:
            raise ValueError("degrade_sharpened_gt: needs gt_sharpening")
        return self


for _model in (Branch, OneOf, Shuffle, Recipe):
    _model.model_rebuild()
