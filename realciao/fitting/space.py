"""The search space of a fit: the base recipe's ranges and probabilities, its structure kept.

Every op keeps its place, kind, kernel families, modes and names; what moves is what the op
declares in its own spec (``search`` in ``realciao/degradations/specs.py``: an op that declares
nothing is refused, never silently tuned on ``p`` alone):

- an op's probability ``p`` where the base sets one below 1 (an op the base always runs stays
  always on; its ranges can still make it mild);
- the support [low, high] of each declared drawn value: a blur's Gaussian sigma (or variance;
  one support per blur op, shared by its Gaussian-like kernels), each noise type's sigma or
  Poisson scale, a JPEG's quality, a sharpen's weight. A distribution is mapped onto the
  new support affinely, so a uniform range becomes the new range and a mixture keeps its
  shape; a constant stays a constant (one value);
- resize scales: the smallest and the largest scale, mapped piecewise so that 1 ("keep the
  size") stays 1 (a range wholly below or above 1 moves like the others);
- the probabilities among a noise op's types, a resize mixture's components and a
  ``one_of``'s branches.

- a noise op's gray-noise probability (one for all its types where the base gives them one
  value), up to what its channel-correlated probability leaves.

Sinc cutoffs, kernel sizes and shapes, resize modes, channel-correlated noise, fixed resize
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
    OneOf,
    OpSpec,
    Recipe,
    Search,
    SearchRange,
    Shuffle,
    Stage,
    support,
)

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
    bounds: tuple[float, float] = (0.0, 1.0)  # what the search may reach (probabilities: 0..1)

    @property
    def is_probability(self) -> bool:
        return self.name.endswith((".p", ".choices", ".types", ".probs", ".gray_p"))

    def ends_on_bounds(self, tolerance: float = 0.005) -> list[str]:
        """Which ends sit on the search's bounds (within ``tolerance`` of their span): "low",
        "high" for a range or a value; for probabilities, "0" when one is switched off and
        "1" when one is always on (a branch among several at 1 leaves the others at 0)."""
        low, high = self.bounds
        slack = tolerance * (high - low)
        if self.is_probability:
            ends = []
            if len(self.value) == 1 and self.value[0] >= high - tolerance:
                ends.append("1")
            if min(self.value) <= tolerance:
                ends.append("0")
            return ends
        ends = []
        if self.value[0] <= low + slack:
            ends.append("low")
        if self.value[-1] >= high - slack:
            ends.append("high")
        return ends

    def text(self) -> str:
        if self.is_probability:
            return ", ".join(f"{v:.2f}" for v in self.value)
        return (
            f"[{', '.join(f'{v:.3g}' for v in self.value)}]"
            if len(self.value) > 1
            else f"{self.value[0]:.3g}"
        )


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

    def __init__(self, values: Mapping[str, float] | None = None, p_at_one: bool = False):
        self.values = values
        self.p_at_one = p_at_one  # search the probabilities ops declare searchable at 1 (``Search.fits_p_at_one``)
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

    def value(
        self, name: str, base: float, low: float, high: float, role: str = "p", quantity: str = ""
    ) -> float:
        low, high = min(low, base), max(high, base)
        if name not in self.parameters:
            self.parameters[name] = Parameter(name, low, high, base, role, quantity or name)
        if self.values is None or name not in self.values:
            return base
        return min(max(float(self.values[name]), low), high)

    def note(self, name: str, label: str, value: tuple[float, ...], bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        self.quantities.setdefault(name, Quantity(name, label, tuple(float(v) for v in value), bounds))

    def probability(self, name: str, label: str, base: float) -> float:
        p = round(self.value(name, base, 0.0, 1.0), 3)
        self.note(name, label, (p,))
        return p

    def bounded_probability(self, name: str, label: str, base: float, high: float) -> float:
        """A probability searched in [0, ``high``] (what another probability of the op leaves)."""
        p = round(min(self.value(name, base, 0.0, high), high), 3)
        self.note(name, label, (p,), (0.0, high))
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
            self.note(name, label, (value,), bounds)
            return new, lambda v: value
        centre = self.value(f"{name}.centre", (old[0] + old[1]) / 2, *bounds, "centre", name)
        width = self.value(f"{name}.width", old[1] - old[0], 0.0, bounds[1] - bounds[0], "width", name)
        new = (rounded(max(bounds[0], centre - width / 2)), rounded(min(bounds[1], centre + width / 2)))
        self.note(name, label, new, bounds)
        return new, _affine(old, new, bounds)

    def scale(self, name: str, label: str, old: tuple[float, float], bounds: tuple[float, float]):
        """Resize scales: the map of the smallest and largest scale, 1 kept when inside."""
        if old[0] == old[1]:
            return None  # a fixed factor is part of the structure (BSRGAN's 1/2 pre-downscale)
        if not old[0] <= 1 <= old[1]:
            return self.support(name, label, old, bounds)[1]
        bounds = (min(bounds[0], old[0]), max(bounds[1], old[1]))
        smallest = (
            rounded(self.value(f"{name}.min", old[0], bounds[0], 1.0, "min", name)) if old[0] < 1 else 1.0
        )
        largest = (
            rounded(self.value(f"{name}.max", old[1], 1.0, bounds[1], "max", name)) if old[1] > 1 else 1.0
        )
        self.note(name, label, (smallest, largest), bounds)
        return _around_one(old, (smallest, largest), bounds)


def _walk_stage(stage: Stage, tuner: _Tuner) -> Stage:
    name = tuner.key(stage)
    if isinstance(stage, OneOf):
        choices = stage.choices
        if len(choices) > 1:
            probs = tuner.probabilities(
                f"{name}.choices", f"{name}: branch probabilities", tuple(b.p for b in choices)
            )
            choices = tuple(b.model_copy(update={"p": p}) for b, p in zip(choices, probs))
        choices = tuple(
            b.model_copy(update={"stages": tuple(_walk_stage(s, tuner) for s in b.stages)}) for b in choices
        )
        return stage.model_copy(update={"choices": choices})
    if isinstance(stage, Shuffle):
        return stage.model_copy(update={"stages": tuple(_walk_stage(s, tuner) for s in stage.stages)})
    search = declared_search(stage)
    update = {}
    if search.fits_p and (stage.p < 1 or (search.fits_p_at_one and tuner.p_at_one)):
        update["p"] = tuner.probability(f"{name}.p", f"{name}: probability", stage.p)
    if search.entries:
        update[search.entries] = _walk_entries(stage, search, name, tuner)
    for entry in search.ranges:
        update[entry.field] = _walk_range(getattr(stage, entry.field), entry, name, name, dict(stage), tuner)
    return stage.model_copy(update=update)


def declared_search(op: OpSpec) -> Search:
    """What a fit may move in ``op``, as its spec declares; an op that declares nothing is an error."""
    search = getattr(type(op), "search", None)
    if search is None:
        kind = type(op).model_fields["op"].default if "op" in type(op).model_fields else type(op).__name__
        raise TypeError(
            f"the {kind} op{f' {op.name!r}' if getattr(op, 'name', None) else ''} declares no search "
            f"(its spec's `search` in realciao/degradations/specs.py): a fit cannot tell what to move in it"
        )
    return search


def _walk_range(dist, entry: SearchRange, name: str, prefix: str, fields: dict, tuner: _Tuner):
    """One drawn value: its mixture's probabilities (where declared), then its support. Its
    parameters are named ``prefix.field``, its labels ``name: label`` with ``fields`` filled in."""
    key, label = f"{prefix}.{entry.field}", entry.label.format(**fields)
    if entry.mixture_label and isinstance(dist, Mixture) and len(dist.components) > 1:
        dist = Mixture(
            dist.components, tuner.probabilities(f"{key}.probs", f"{name}: {entry.mixture_label}", dist.probs)
        )
    if entry.keeps_one:
        f = tuner.scale(key, f"{name}: {label}", support(dist), entry.bounds)
    else:
        _, f = tuner.support(key, f"{name}: {label}", support(dist), entry.bounds)
    return dist if f is None else remap(dist, f)


def _walk_entries(stage: OpSpec, search: Search, name: str, tuner: _Tuner) -> tuple:
    """The sub-specs of an op (kernels, noise types): their probabilities, then their drawn values,
    one support per field for all of them (``shared``) or one per entry."""
    entries = list(getattr(stage, search.entries))
    tags = [str(getattr(e, search.entry_tag)) if search.entry_tag else str(i) for i, e in enumerate(entries)]
    if search.entry_probs and len(entries) > 1:
        probs = tuner.probabilities(
            f"{name}.{search.entries}",
            f"{name}: probabilities of {', '.join(tags)}",
            tuple(e.p for e in entries),
        )
        entries = [e.model_copy(update={"p": p}) for e, p in zip(entries, probs)]
    for entry in search.entry_probabilities:
        entries = _walk_entry_probability(entries, entry, tags, name, tuner)
    if search.shared:
        for entry in search.entry_ranges:
            tuned = [i for i, e in enumerate(entries) if getattr(e, entry.field) is not None]
            if not tuned:
                continue
            supports = [support(getattr(entries[i], entry.field)) for i in tuned]
            old = (min(s[0] for s in supports), max(s[1] for s in supports))
            _, f = tuner.support(f"{name}.{entry.field}", f"{name}: {entry.label}", old, entry.bounds)
            for i in tuned:
                entries[i] = entries[i].model_copy(
                    update={entry.field: remap(getattr(entries[i], entry.field), f)}
                )
        return tuple(entries)
    for i, spec in enumerate(entries):
        tag = tags[i] if tags.count(tags[i]) == 1 else f"{tags[i]}{i}"
        for entry in search.entry_ranges:
            dist = getattr(spec, entry.field)
            if dist is None:
                continue
            spec = spec.model_copy(
                update={entry.field: _walk_range(dist, entry, name, f"{name}.{tag}", dict(spec), tuner)}
            )
        entries[i] = spec
    return tuple(entries)


def _probability_room(entry, field: str, high: float) -> float:
    """What ``entry``'s other mode probabilities (``*_p``, e.g. ``correlated_p``) leave to
    ``field``, at most ``high``."""
    others = sum(getattr(entry, f) for f in type(entry).model_fields if f.endswith("_p") and f != field)
    return min(high, 1.0 - others)


def _walk_entry_probability(
    entries: list, searched: SearchRange, tags: list[str], name: str, tuner: _Tuner
) -> list:
    """A probability field of each entry (e.g. ``gray_p``): one parameter for all the entries
    where the base gives them one value, else one each; each capped at what the entry's other
    mode probabilities leave (``correlated_p``)."""
    field, label = searched.field, searched.label
    room = [_probability_room(e, field, searched.bounds[1]) for e in entries]
    if len({getattr(e, field) for e in entries}) == 1:
        base = getattr(entries[0], field)
        value = tuner.bounded_probability(f"{name}.{field}", f"{name}: {label}", base, min(room))
        return [e.model_copy(update={field: value}) for e in entries]
    out = []
    for i, entry in enumerate(entries):
        tag = tags[i] if tags.count(tags[i]) == 1 else f"{tags[i]}{i}"
        value = tuner.bounded_probability(
            f"{name}.{tag}.{field}", f"{name}: {tag} {label}", getattr(entry, field), room[i]
        )
        out.append(entry.model_copy(update={field: value}))
    return out


class SearchSpace:
    """The parameters a fit searches for ``base``, and the recipe at given values.
    ``p_at_one``: also the probabilities the base leaves at 1 where the op declares them
    searchable there (a JPEG's: ``Search.fits_p_at_one``)."""

    def __init__(self, base: Recipe, p_at_one: bool = False):
        self.base = base
        self.p_at_one = p_at_one
        tuner = _Tuner(p_at_one=p_at_one)
        self._walk(tuner)
        self.parameters: list[Parameter] = list(tuner.parameters.values())

    def _walk(self, tuner: _Tuner) -> tuple:
        return tuple(_walk_stage(stage, tuner) for stage in self.base.stages)

    def base_values(self) -> dict[str, float]:
        return {p.name: p.base for p in self.parameters}

    def ranges(self) -> list[str]:
        """The quantities that are ranges (what ``widened`` widens), in recipe order."""
        return list(dict.fromkeys(p.quantity for p in self.parameters if p.role in ("width", "min", "max")))

    def widened(
        self, values: Mapping[str, float], fraction: float, only: str | None = None
    ) -> dict[str, float]:
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

    def recipe(
        self, values: Mapping[str, float], name: str | None = None, description: str | None = None
    ) -> Recipe:
        """The base recipe with ``values`` (missing ones: the base's), validated as a file would be."""
        stages = self._walk(_Tuner(values, self.p_at_one))
        recipe = self.base.model_copy(
            update={
                "stages": stages,
                "name": name or self.base.name,
                "description": self.base.description if description is None else description,
            }
        )
        return parse_recipe(recipe_to_data(recipe), f"<fitted from {self.base.name}>")


def quantities(recipe: Recipe, p_at_one: bool = False) -> list[Quantity]:
    """The readable values (ranges, probabilities) of ``recipe`` in its search space, in order
    (``p_at_one``: as ``SearchSpace``'s)."""
    tuner = _Tuner(p_at_one=p_at_one)
    for stage in recipe.stages:
        _walk_stage(stage, tuner)
    return list(tuner.quantities.values())


def on_bounds(recipe: Recipe, base: Recipe) -> list[str]:
    """One line per range or probability of ``recipe`` that sits on the search's bounds: the
    photos pulled it as far as the search allows (or it traded off against another), so its
    value is the box's, not the photos'. Said also when the base recipe was there already."""
    before = {q.name: q for q in quantities(base)}
    lines = []
    for quantity in quantities(recipe):
        ends = quantity.ends_on_bounds()
        if not ends:
            continue
        base_quantity = before.get(quantity.name)
        same = base_quantity is not None and set(base_quantity.ends_on_bounds()) >= set(ends)
        if quantity.is_probability:
            top = "probability 1 (always on)" if quantity.bounds[1] >= 1 else f"at its bound {quantity.bounds[1]:.3g}"
            where = " and ".join({"0": "a probability at 0 (switched off)", "1": top}[e] for e in ends)
        else:
            where = " and ".join(f"{end} end at the search bound {quantity.bounds[0 if end == 'low' else 1]:.3g}"
                                 for end in ends)
        lines.append(f"{quantity.label} {quantity.text()}: {where}{' (as in the base)' if same else ''}")
    return lines
