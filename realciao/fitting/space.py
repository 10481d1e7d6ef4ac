"""The search space of a fit: the base recipe's ranges and probabilities, its structure kept.

Every op keeps its place, kind, kernel families, modes and names; what moves is:

- each blur, noise, JPEG and sharpen op's probability ``p`` where the base sets one below 1
  (an op the base always runs stays always on; its ranges can still make it mild);
- the support [low, high] of each drawn value: a blur's Gaussian sigma (or variance; one
  support per blur op, shared by its Gaussian-like kernels), each noise type's sigma or
  Poisson scale, a JPEG's quality, a sharpen's weight. A distribution is mapped onto the
  new support affinely, so a uniform range becomes the new range and a mixture keeps its
  shape; a constant stays a constant (one value);
- resize scales: the smallest and the largest scale, mapped piecewise so that 1 ("keep the
  size") stays 1 (a range wholly below or above 1 moves like the others);
- the probabilities among a noise op's types, a resize mixture's components and a
  ``one_of``'s branches.

Sinc cutoffs, kernel sizes and shapes, resize modes, gray-noise probabilities, fixed resize
factors (BSRGAN's 1/2 pre-downscale) and the GT sharpening stay as they are. Two equal stages
with one name (a YAML anchor used twice, as in ``realesrgan``'s final stage) share their
parameters; different stages with one name get their own (``blur1``, ``blur1~2``).

Values are rounded to 4 significant digits when a recipe is built, so the recipe written
to a file is exactly the one that was evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from realciao.degradations.recipe import parse_recipe, recipe_to_data
from realciao.degradations.sampling import (
    Constant,
    Distribution,
    IntegerUniform,
    InverseUniform,
    Mixture,
    Uniform,
)
from realciao.degradations.specs import (
    BlurOp,
    JpegOp,
    NoiseOp,
    OneOf,
    QuantizeOp,
    Recipe,
    ResizeOp,
    SharpenOp,
    Shuffle,
    Stage,
    support,
)

# search bounds of each drawn quantity (widened to hold the base recipe's values)
SIGMA_BOUNDS = (0.1, 4.0)  # blur sigma, px
VARIANCE_BOUNDS = (0.01, 16.0)  # BSRGAN-style kernel eigenvalues, px^2
NOISE_SIGMA_BOUNDS = (0.0, 30.0)  # 8-bit levels
POISSON_SCALE_BOUNDS = (0.0, 3.0)
QUALITY_BOUNDS = (10.0, 100.0)
SHARPEN_WEIGHT_BOUNDS = (0.0, 2.0)
SCALE_BOUNDS = (0.1, 2.0)  # resize factors
_DIGITS = 4


@dataclass(frozen=True)
class Parameter:
    """One coordinate of the search: a float in [low, high]; ``base`` is the base recipe's.

    ``role``: "p" (a probability or a weight), "value" (a constant's value), "centre" and
    "width" of a range (its middle and its length: location and spread move the measurements
    nearly independently, which suits the optimiser better than two sorted ends), or
    "min"/"max" (a resize range's smallest and largest scale)."""

    name: str
    low: float
    high: float
    base: float
    role: str = "p"
    quantity: str = ""


@dataclass(frozen=True)
class Quantity:
    """A readable value of a recipe in the space (a range, a probability, probabilities)."""

    name: str
    label: str
    value: tuple[float, ...]

    def text(self) -> str:
        if self.name.endswith((".p", ".choices", ".types", ".probs")):
            return ", ".join(f"{v:.2f}" for v in self.value)
        return f"[{', '.join(f'{v:.3g}' for v in self.value)}]" if len(self.value) > 1 else f"{self.value[0]:.3g}"


def rounded(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def remap(dist: Distribution, f: Callable[[float], float]) -> Distribution:
    """``dist`` with every value v moved to f(v) (f increasing): ranges' ends, constants."""
    if isinstance(dist, Constant):
        return Constant(f(dist.value))
    if isinstance(dist, IntegerUniform):
        low, high = round(f(dist.low)), round(f(dist.high))
        return IntegerUniform(low, max(low, high))
    if isinstance(dist, InverseUniform):  # values 1 / U(low, high): support [1 / high, 1 / low]
        low, high = rounded(1 / f(1 / dist.low)), rounded(1 / f(1 / dist.high))
        return InverseUniform(min(low, high), high)
    if isinstance(dist, Uniform):
        low, high = f(dist.low), f(dist.high)
        return Uniform(low, max(low, high))
    if isinstance(dist, Mixture):
        return Mixture(tuple(remap(c, f) for c in dist.components), dist.probs)
    raise TypeError(f"not a distribution: {dist!r}")


def _affine(old: tuple[float, float], new: tuple[float, float], bounds: tuple[float, float]):
    span = old[1] - old[0]
    ratio = (new[1] - new[0]) / span if span > 0 else 0.0

    def f(value: float) -> float:
        return rounded(min(max(new[0] + (value - old[0]) * ratio, bounds[0]), bounds[1]))

    return f


def _around_one(old: tuple[float, float], new: tuple[float, float], bounds: tuple[float, float]):
    """Scales below 1 stretched towards new[0], above 1 towards new[1]; 1 stays 1."""

    def f(value: float) -> float:
        if value < 1:
            moved = 1 - (1 - value) * (1 - new[0]) / (1 - old[0])
        elif value > 1:
            moved = 1 + (value - 1) * (new[1] - 1) / (old[1] - 1)
        else:
            moved = 1.0
        return rounded(min(max(moved, bounds[0]), bounds[1]))

    return f


def normalised(weights: list[float]) -> tuple[float, ...]:
    """Probabilities from non-negative weights, rounded to 3 decimals and summing to 1."""
    total = sum(weights)
    probs = [w / total for w in weights] if total > 0 else [1 / len(weights)] * len(weights)
    probs = [round(p, 3) for p in probs]
    largest = max(range(len(probs)), key=probs.__getitem__)
    probs[largest] = round(1 - sum(p for i, p in enumerate(probs) if i != largest), 6)
    return tuple(probs)


# ----------------------------------------------------------------------------- the walk
class _Tuner:
    """Collects the space's parameters (and the recipe's readable values) or, given values,
    builds a recipe from them: one walk over the recipe does both."""

    def __init__(self, values: Mapping[str, float] | None = None):
        self.values = values
        self.parameters: dict[str, Parameter] = {}
        self.quantities: dict[str, Quantity] = {}
        self.stages: dict[str, list[Stage]] = {}

    def key(self, stage: Stage) -> str:
        """The stage's name; a different stage met under a name already seen gets ``name~2``..."""
        seen = self.stages.setdefault(stage.name, [])
        if stage not in seen:
            seen.append(stage)
        index = seen.index(stage)
        return stage.name if index == 0 else f"{stage.name}~{index + 1}"

    def value(self, name: str, base: float, low: float, high: float, role: str = "p", quantity: str = "") -> float:
        low, high = min(low, base), max(high, base)
        if name not in self.parameters:
            self.parameters[name] = Parameter(name, low, high, base, role, quantity or name)
        if self.values is None or name not in self.values:
            return base
        return min(max(float(self.values[name]), low), high)

    def note(self, name: str, label: str, value: tuple[float, ...]) -> None:
        self.quantities.setdefault(name, Quantity(name, label, tuple(float(v) for v in value)))

    def probability(self, name: str, label: str, base: float) -> float:
        p = round(self.value(name, base, 0.0, 1.0), 3)
        self.note(name, label, (p,))
        return p

    def probabilities(self, name: str, label: str, base: tuple[float, ...]) -> tuple[float, ...]:
        if len(base) == 2:
            first = self.value(name, base[0], 0.0, 1.0)
            probs = normalised([first, 1 - first])
        else:
            top = max(base) or 1.0
            probs = normalised([self.value(f"{name}.{i}", p / top, 0.0, 1.0) for i, p in enumerate(base)])
        self.note(name, label, probs)
        return probs

    def support(self, name: str, label: str, old: tuple[float, float], bounds: tuple[float, float]):
        """The new [low, high] for a quantity whose base support is ``old``, and the map onto it."""
        bounds = (min(bounds[0], old[0]), max(bounds[1], old[1]))
        if old[1] == old[0]:
            value = rounded(self.value(name, old[0], *bounds, "value"))
            new = (value, value)
            self.note(name, label, (value,))
            return new, lambda v: value
        centre = self.value(f"{name}.centre", (old[0] + old[1]) / 2, *bounds, "centre", name)
        width = self.value(f"{name}.width", old[1] - old[0], 0.0, bounds[1] - bounds[0], "width", name)
        new = (rounded(max(bounds[0], centre - width / 2)), rounded(min(bounds[1], centre + width / 2)))
        self.note(name, label, new)
        return new, _affine(old, new, bounds)

    def scale(self, name: str, label: str, old: tuple[float, float]):
        """Resize scales: the map of the smallest and largest scale, 1 kept when inside."""
        if old[0] == old[1]:
            return None  # a fixed factor is part of the structure (BSRGAN's 1/2 pre-downscale)
        if not old[0] <= 1 <= old[1]:
            return self.support(name, label, old, SCALE_BOUNDS)[1]
        bounds = (min(SCALE_BOUNDS[0], old[0]), max(SCALE_BOUNDS[1], old[1]))
        smallest = rounded(self.value(f"{name}.min", old[0], bounds[0], 1.0, "min", name)) if old[0] < 1 else 1.0
        largest = rounded(self.value(f"{name}.max", old[1], 1.0, bounds[1], "max", name)) if old[1] > 1 else 1.0
        self.note(name, label, (smallest, largest))
        return _around_one(old, (smallest, largest), bounds)


def _walk_stage(stage: Stage, tuner: _Tuner) -> Stage:
    name = tuner.key(stage)
    if isinstance(stage, OneOf):
        choices = stage.choices
        if len(choices) > 1:
            probs = tuner.probabilities(f"{name}.choices", f"{name}: branch probabilities",
                                        tuple(b.p for b in choices))
            choices = tuple(b.model_copy(update={"p": p}) for b, p in zip(choices, probs))
        choices = tuple(b.model_copy(update={"stages": tuple(_walk_stage(s, tuner) for s in b.stages)}) for b in choices)
        return stage.model_copy(update={"choices": choices})
    if isinstance(stage, Shuffle):
        return stage.model_copy(update={"stages": tuple(_walk_stage(s, tuner) for s in stage.stages)})
    if isinstance(stage, QuantizeOp):
        return stage
    if isinstance(stage, ResizeOp):
        return _walk_resize(stage, name, tuner)
    update = {} if stage.p >= 1 else {"p": tuner.probability(f"{name}.p", f"{name}: probability", stage.p)}
    if isinstance(stage, BlurOp):
        update["kernels"] = _walk_kernels(stage, name, tuner)
    elif isinstance(stage, NoiseOp):
        update["types"] = _walk_noise(stage, name, tuner)
    elif isinstance(stage, JpegOp):
        _, f = tuner.support(f"{name}.quality", f"{name}: quality", support(stage.quality), QUALITY_BOUNDS)
        update["quality"] = remap(stage.quality, f)
    elif isinstance(stage, SharpenOp):
        _, f = tuner.support(f"{name}.weight", f"{name}: weight", support(stage.weight),
                             SHARPEN_WEIGHT_BOUNDS)
        update["weight"] = remap(stage.weight, f)
    return stage.model_copy(update=update)


def _walk_kernels(stage: BlurOp, name: str, tuner: _Tuner) -> tuple:
    kernels = list(stage.kernels)
    for field, bounds, unit in (("sigma", SIGMA_BOUNDS, "px"), ("variance", VARIANCE_BOUNDS, "px^2")):
        tuned = [i for i, k in enumerate(kernels) if k.family != "sinc" and getattr(k, field) is not None]
        if not tuned:
            continue
        supports = [support(getattr(kernels[i], field)) for i in tuned]
        old = (min(s[0] for s in supports), max(s[1] for s in supports))
        _, f = tuner.support(f"{name}.{field}", f"{name}: Gaussian {field} ({unit})", old, bounds)
        for i in tuned:
            kernels[i] = kernels[i].model_copy(update={field: remap(getattr(kernels[i], field), f)})
    return tuple(kernels)


def _walk_noise(stage: NoiseOp, name: str, tuner: _Tuner) -> tuple:
    types = list(stage.types)
    if len(types) > 1:
        probs = tuner.probabilities(f"{name}.types", f"{name}: probabilities of "
                                    f"{', '.join(t.type for t in types)}", tuple(t.p for t in types))
        types = [t.model_copy(update={"p": p}) for t, p in zip(types, probs)]
    kinds = [t.type for t in types]
    for i, spec in enumerate(types):
        tag = spec.type if kinds.count(spec.type) == 1 else f"{spec.type}{i}"
        if spec.type == "gaussian":
            field, bounds, label = "sigma", NOISE_SIGMA_BOUNDS, "sigma (8-bit levels)"
        else:
            field, bounds, label = "scale", POISSON_SCALE_BOUNDS, "scale"
        dist = getattr(spec, field)
        _, f = tuner.support(f"{name}.{tag}.{field}", f"{name}: {spec.type} {label}", support(dist), bounds)
        types[i] = spec.model_copy(update={field: remap(dist, f)})
    return tuple(types)


def _walk_resize(stage: ResizeOp, name: str, tuner: _Tuner) -> ResizeOp:
    scale = stage.scale
    update = {}
    if isinstance(scale, Mixture) and len(scale.components) > 1:
        probs = tuner.probabilities(f"{name}.scale.probs", f"{name}: probabilities of the scale ranges",
                                    scale.probs)
        scale = Mixture(scale.components, probs)
    f = tuner.scale(f"{name}.scale", f"{name}: scale range (x {stage.relative_to} size)", support(scale))
    if f is not None:
        scale = remap(scale, f)
    if scale != stage.scale:
        update["scale"] = scale
    return stage.model_copy(update=update)


class SearchSpace:
    """The parameters a fit searches for ``base``, and the recipe at given values."""

    def __init__(self, base: Recipe):
        self.base = base
        tuner = _Tuner()
        self._walk(tuner)
        self.parameters: list[Parameter] = list(tuner.parameters.values())

    def _walk(self, tuner: _Tuner) -> tuple:
        return tuple(_walk_stage(stage, tuner) for stage in self.base.stages)

    def base_values(self) -> dict[str, float]:
        return {p.name: p.base for p in self.parameters}

    def ranges(self) -> list[str]:
        """The quantities that are ranges (what ``widened`` widens), in recipe order."""
        return list(dict.fromkeys(p.quantity for p in self.parameters if p.role in ("width", "min", "max")))

    def widened(self, values: Mapping[str, float], fraction: float, only: str | None = None) -> dict[str, float]:
        """``values`` with every range (or the range ``only``) widened on both sides by
        ``fraction`` of its search bounds (e.g. 0.05 x 90 = 4.5 JPEG qualities, 0.05 x 30 = 1.5
        noise levels), clipped to the bounds; probabilities and constants as they are."""
        out = dict(values)
        for p in self.parameters:
            if only is not None and p.quantity != only:
                continue
            value = float(values.get(p.name, p.base))
            margin = fraction * (p.high - p.low)
            if p.role == "width":  # both sides: the range stays centred and is clipped to its bounds
                out[p.name] = min(p.high, value + 2 * margin)
            elif p.role == "min":  # resize: the smallest scale (below 1)
                out[p.name] = max(p.low, value - margin)
            elif p.role == "max":  # and the largest (above 1)
                out[p.name] = min(p.high, value + margin)
        return out

    def recipe(self, values: Mapping[str, float], name: str | None = None, description: str | None = None) -> Recipe:
        """The base recipe with ``values`` (missing ones: the base's), validated as a file would be."""
        stages = self._walk(_Tuner(values))
        recipe = self.base.model_copy(update={"stages": stages, "name": name or self.base.name,
                                              "description": self.base.description if description is None
                                              else description})
        return parse_recipe(recipe_to_data(recipe), f"<fitted from {self.base.name}>")


def quantities(recipe: Recipe) -> list[Quantity]:
    """The readable values (ranges, probabilities) of ``recipe`` in its search space, in order."""
    tuner = _Tuner()
    for stage in recipe.stages:
        _walk_stage(stage, tuner)
    return list(tuner.quantities.values())
