"""Loading and validating recipe YAML files into the typed specs of ``specs.py``.

Every mistake is a ``RecipeError`` naming the file and the key path, e.g.
``degradations/x.yml: stages[2].noise.types[0].sigma: empty range [30, 1]``.

Values that are drawn per sample (sigmas, scales, qualities, ...) accept:
  ``3``, ``pi/3``          a constant (``pi`` expressions: ``-pi``, ``2*pi``, ``pi/5``)
  ``[0.2, 3]``             uniform between the two
  ``{uniform: [a, b]}``    the same, spelled out
  ``{integer: [a, b]}``    an integer from a to b inclusive
  ``{inverse_uniform: [a, b]}``   1 / U(a, b)
  ``{mixture: [d1, d2, ...], probs: [...]}``   one of the distributions (equal odds without probs)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import yaml

from realciao.degradations.jpeg import PADDINGS, TABLE_LAYOUTS
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
from realciao.degradations.specs import (
    KERNEL_FAMILY_NAMES,
    NOISE_TYPES,
    RESIZE_RELATIVE_TO,
    BlurOp,
    Branch,
    JpegOp,
    KernelSpec,
    NoiseOp,
    NoiseSpec,
    OneOf,
    QuantizeOp,
    Recipe,
    ResizeOp,
    SharpenOp,
    Shuffle,
    Stage,
)

# Recipes shipped with realciao: the repository's degradations/ folder, which setup.py also
# installs as the package data folder realciao/degradations/recipes/.
PACKAGED_RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
REPOSITORY_RECIPE_DIR = Path(__file__).resolve().parents[2] / "degradations"

_PI_EXPRESSION = re.compile(r"^\s*(-)?\s*(?:(\d+(?:\.\d*)?)\s*\*\s*)?pi\s*(?:/\s*(\d+(?:\.\d*)?))?\s*$")
_PROBABILITY_TOLERANCE = 1e-6


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the key path."""

    def __init__(self, file: str, key_path: str, message: str):
        self.file = file
        self.key_path = key_path
        location = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{location}: {message}")


def recipe_search_dirs() -> list[Path]:
    return [d for d in (PACKAGED_RECIPE_DIR, REPOSITORY_RECIPE_DIR) if d.is_dir()]


def available_recipes() -> list[str]:
    """Names of the shipped recipes."""
    return sorted({p.stem for d in recipe_search_dirs() for p in d.glob("*.yml")})


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A path to an existing file, or a shipped recipe's name ("realesrgan" or "realesrgan.yml")."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    text = str(name_or_path)
    if "/" not in text and "\\" not in text:
        file_name = text if text.endswith((".yml", ".yaml")) else f"{text}.yml"
        for folder in recipe_search_dirs():
            if (folder / file_name).is_file():
                return folder / file_name
    searched = ", ".join(str(d) for d in recipe_search_dirs()) or "no recipe folder found"
    raise RecipeError(
        _display(candidate), "", f"recipe file not found (shipped recipes: {available_recipes()}; searched {searched})"
    )


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Read and validate a recipe: a shipped name like "realesrgan", or a path to a YAML file."""
    path = resolve_recipe_path(name_or_path)
    label = _display(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(label, "", f"not valid YAML ({error})") from error
    return _Parser(label).recipe(data, default_name=path.stem, path=path)


def parse_recipe(data: Any, label: str = "<recipe>") -> Recipe:
    """Validate an already-loaded mapping (e.g. a recipe embedded in a training config)."""
    return _Parser(label).recipe(data, default_name="recipe", path=None)


def replace_ops(recipe: Recipe, op_type: type, **changes: Any) -> Recipe:
    """A copy of ``recipe`` with ``changes`` applied to every op of ``op_type``, at any depth.

    E.g. ``replace_ops(recipe, ResizeOp, antialias=False)`` for the reference's aliasing.
    """

    def visit(stage: Stage) -> Stage:
        if isinstance(stage, OneOf):
            branches = tuple(Branch(b.p, tuple(visit(s) for s in b.stages)) for b in stage.choices)
            return dataclasses.replace(stage, choices=branches)
        if isinstance(stage, Shuffle):
            return dataclasses.replace(stage, stages=tuple(visit(s) for s in stage.stages))
        return dataclasses.replace(stage, **changes) if isinstance(stage, op_type) else stage

    return dataclasses.replace(recipe, stages=tuple(visit(s) for s in recipe.stages))


def _display(path: Path) -> str:
    for base in (Path.cwd(), REPOSITORY_RECIPE_DIR.parent):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Parser:
    def __init__(self, label: str):
        self.label = label
        self._auto_names: dict[str, int] = {}

    def fail(self, path: str, message: str) -> RecipeError:
        return RecipeError(self.label, path, message)

    # ------------------------------------------------------------------ structure
    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {value!r}")
        for key in value:
            if key not in allowed:
                raise self.fail(_join(path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing")
        return dict(value)

    def sequence(self, value: Any, path: str, non_empty: bool = True) -> list:
        if not isinstance(value, (list, tuple)):
            raise self.fail(path, f"expected a list, got {value!r}")
        if non_empty and not value:
            raise self.fail(path, "must not be empty")
        return list(value)

    # ------------------------------------------------------------------ scalars
    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool):
            raise self.fail(path, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise self.fail(path, f"expected a finite number, got {value!r}")
            return float(value)
        if isinstance(value, str):
            match = _PI_EXPRESSION.match(value)
            if match:
                sign, factor, divisor = match.groups()
                result = math.pi * float(factor or 1) / float(divisor or 1)
                return -result if sign else result
        raise self.fail(path, f"expected a number (or a pi expression like pi/3), got {value!r}")

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {value!r}")
        return value

    def probability(self, value: Any, path: str) -> float:
        p = self.number(value, path)
        if not 0.0 <= p <= 1.0:
            raise self.fail(path, f"probability {value} outside [0, 1]")
        return p

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {value!r}")
        return value

    def choice(self, value: Any, path: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(path, f"{value!r} is not one of {', '.join(options)}")
        return value

    def probabilities(self, values: list[float], path: str) -> tuple[float, ...]:
        total = sum(values)
        if abs(total - 1.0) > _PROBABILITY_TOLERANCE:
            raise self.fail(path, f"probabilities sum to {total:g}, expected 1")
        return tuple(values)

    def range_pair(self, value: Any, path: str, convert: Callable[[Any, str], float]) -> tuple[Any, Any]:
        items = self.sequence(value, path)
        if len(items) != 2:
            raise self.fail(path, f"expected a range [low, high], got {value!r}")
        low, high = convert(items[0], _join(path, 0)), convert(items[1], _join(path, 1))
        if low > high:
            raise self.fail(path, f"empty range [{_plain(low)}, {_plain(high)}]")
        return low, high

    # ------------------------------------------------------------------ distributions
    def distribution(self, value: Any, path: str, bounds: tuple[float, float] | None = None) -> Distribution:
        dist = self._distribution(value, path)
        if bounds is not None:
            low, high = _support(dist)
            if low < bounds[0] or high > bounds[1]:
                raise self.fail(path, f"values must lie in [{_plain(bounds[0])}, {_plain(bounds[1])}], got {value!r}")
        return dist

    def _distribution(self, value: Any, path: str) -> Distribution:
        if isinstance(value, (list, tuple)):
            return Uniform(*self.range_pair(value, path, self.number))
        if isinstance(value, Mapping):
            if "mixture" in value:
                fields = self.mapping(value, path, ("mixture", "probs"), ("mixture",))
                parts = self.sequence(fields["mixture"], _join(path, "mixture"))
                components = tuple(self._distribution(v, _join(_join(path, "mixture"), i)) for i, v in enumerate(parts))
                if "probs" in fields:
                    probs_path = _join(path, "probs")
                    probs = [self.probability(v, _join(probs_path, i)) for i, v in enumerate(
                        self.sequence(fields["probs"], probs_path))]
                    if len(probs) != len(components):
                        raise self.fail(probs_path, f"{len(probs)} probabilities for {len(components)} components")
                    probs = self.probabilities(probs, probs_path)
                else:
                    probs = tuple(1.0 / len(components) for _ in components)
                return Mixture(components, probs)
            kinds = {"uniform": Uniform, "integer": IntegerUniform, "inverse_uniform": InverseUniform}
            fields = self.mapping(value, path, tuple(kinds) + ("mixture",))
            if len(fields) != 1:
                raise self.fail(path, f"expected exactly one of {', '.join(kinds)} or mixture")
            (kind, bounds), = fields.items()
            if kind == "integer":
                return IntegerUniform(*self.range_pair(bounds, _join(path, kind), self.integer))
            low, high = self.range_pair(bounds, _join(path, kind), self.number)
            if kind == "inverse_uniform" and low <= 0:
                raise self.fail(_join(path, kind), "inverse_uniform needs a positive range")
            return kinds[kind](low, high)
        return Constant(self.number(value, path))

    def odd_range(self, value: Any, path: str) -> OddRange:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        low, high = self.range_pair(value, path, self.integer)
        for bound in (low, high):
            if bound < 1 or bound % 2 == 0:
                raise self.fail(path, f"kernel sizes must be odd and positive, got {bound}")
        return OddRange(low, high)

    # ------------------------------------------------------------------ recipe
    def recipe(self, data: Any, default_name: str, path: Path | None) -> Recipe:
        keys = ("name", "description", "gt_sharpening", "degrade_sharpened_gt", "stages")
        fields = self.mapping(data, "", keys, ("stages",))
        gt_sharpening = None
        if fields.get("gt_sharpening") is not None:
            gt_sharpening = self.sharpen(fields["gt_sharpening"], "gt_sharpening", default_name="gt_sharpening")
        degrade_sharpened = self.boolean(fields.get("degrade_sharpened_gt", False), "degrade_sharpened_gt")
        if degrade_sharpened and gt_sharpening is None:
            raise self.fail("degrade_sharpened_gt", "needs gt_sharpening")
        name = fields.get("name", default_name)
        if not isinstance(name, str):
            raise self.fail("name", f"expected a string, got {name!r}")
        description = fields.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", f"expected a string, got {description!r}")
        return Recipe(
            name=name,
            stages=self.stages(fields["stages"], "stages"),
            description=description.strip(),
            gt_sharpening=gt_sharpening,
            degrade_sharpened_gt=degrade_sharpened,
            path=path,
        )

    def stages(self, value: Any, path: str) -> tuple[Stage, ...]:
        return tuple(self.stage(item, _join(path, i)) for i, item in enumerate(self.sequence(value, path)))

    def stage(self, value: Any, path: str) -> Stage:
        builders = {
            "blur": self.blur,
            "resize": self.resize,
            "noise": self.noise,
            "jpeg": self.jpeg,
            "sharpen": self.sharpen,
            "quantize": self.quantize,
            "one_of": self.one_of,
            "shuffle": self.shuffle,
        }
        if not isinstance(value, Mapping) or len(value) != 1:
            raise self.fail(path, f"a stage is a mapping with one op ({', '.join(builders)}), got {value!r}")
        (op, body), = value.items()
        if op not in builders:
            raise self.fail(_join(path, str(op)), f"unknown op (known: {', '.join(builders)})")
        return builders[op](body if body is not None else {}, _join(path, op), default_name=None)

    def name(self, fields: dict, path: str, kind: str, default_name: str | None) -> str:
        if "name" in fields:
            if not isinstance(fields["name"], str) or not fields["name"]:
                raise self.fail(_join(path, "name"), f"expected a non-empty string, got {fields['name']!r}")
            return fields["name"]
        if default_name:
            return default_name
        self._auto_names[kind] = self._auto_names.get(kind, 0) + 1
        return f"{kind}{self._auto_names[kind]}"

    def gate(self, fields: dict, path: str) -> float:
        return self.probability(fields.get("p", 1.0), _join(path, "p"))

    def blur(self, value: Any, path: str, default_name: str | None) -> BlurOp:
        fields = self.mapping(value, path, ("name", "p", "size", "kernels"), ("kernels",))
        size = self.odd_range(fields.get("size", [7, 21]), _join(path, "size"))
        kernels_path = _join(path, "kernels")
        kernels = tuple(
            self.kernel(item, _join(kernels_path, i)) for i, item in enumerate(self.sequence(fields["kernels"], kernels_path))
        )
        self.probabilities([k.p for k in kernels], kernels_path)
        return BlurOp(self.name(fields, path, "blur", default_name), kernels, size, self.gate(fields, path))

    def kernel(self, value: Any, path: str) -> KernelSpec:
        common = ("family", "p", "size")
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {value!r}")
        family = self.choice(value.get("family"), _join(path, "family"), KERNEL_FAMILY_NAMES)
        if family == "sinc":
            fields = self.mapping(value, path, common + ("cutoff",), ("p", "cutoff"))
            spec = KernelSpec(family, self.probability(fields["p"], _join(path, "p")),
                              cutoff=self.distribution(fields["cutoff"], _join(path, "cutoff"), (1e-6, math.pi)))
        else:
            shaped = family != "gaussian"
            allowed = common + ("isotropic", "sigma", "variance", "rotation") + (("beta",) if shaped else ())
            fields = self.mapping(value, path, allowed, ("p",))
            if ("sigma" in fields) == ("variance" in fields):
                raise self.fail(path, "give exactly one of sigma and variance")
            isotropic = self.boolean(fields.get("isotropic", True), _join(path, "isotropic"))
            if isotropic and "rotation" in fields:
                raise self.fail(_join(path, "rotation"), "an isotropic kernel has no rotation")
            spread = "sigma" if "sigma" in fields else "variance"
            spread_dist = self.distribution(fields[spread], _join(path, spread), (0.0, math.inf))
            spec = KernelSpec(
                family,
                self.probability(fields["p"], _join(path, "p")),
                isotropic=isotropic,
                sigma=spread_dist if spread == "sigma" else None,
                variance=spread_dist if spread == "variance" else None,
                rotation=self.distribution(fields.get("rotation", ["-pi", "pi"]), _join(path, "rotation")),
                beta=self.distribution(fields.get("beta", 1.0), _join(path, "beta"), (1e-6, math.inf)),
            )
        if "size" in value:
            spec = KernelSpec(**{**spec.__dict__, "size": self.odd_range(value["size"], _join(path, "size"))})
        return spec

    def resize(self, value: Any, path: str, default_name: str | None) -> ResizeOp:
        allowed = ("name", "p", "scale", "relative_to", "modes", "mode_probs", "antialias")
        fields = self.mapping(value, path, allowed)
        modes_path = _join(path, "modes")
        modes = tuple(self.choice(m, _join(modes_path, i), RESIZE_MODES)
                      for i, m in enumerate(self.sequence(fields.get("modes", ["bicubic"]), modes_path)))
        mode_probs = None
        if "mode_probs" in fields:
            probs_path = _join(path, "mode_probs")
            probs = [self.probability(v, _join(probs_path, i)) for i, v in enumerate(self.sequence(fields["mode_probs"], probs_path))]
            if len(probs) != len(modes):
                raise self.fail(probs_path, f"{len(probs)} probabilities for {len(modes)} modes")
            mode_probs = self.probabilities(probs, probs_path)
        return ResizeOp(
            name=self.name(fields, path, "resize", default_name),
            scale=self.distribution(fields.get("scale", 1.0), _join(path, "scale"), (1e-6, math.inf)),
            relative_to=self.choice(fields.get("relative_to", "input"), _join(path, "relative_to"), RESIZE_RELATIVE_TO),
            modes=modes,
            mode_probs=mode_probs,
            antialias=self.boolean(fields.get("antialias", True), _join(path, "antialias")),
            p=self.gate(fields, path),
        )

    def noise(self, value: Any, path: str, default_name: str | None) -> NoiseOp:
        fields = self.mapping(value, path, ("name", "p", "types"), ("types",))
        types_path = _join(path, "types")
        types = tuple(self.noise_type(v, _join(types_path, i)) for i, v in enumerate(self.sequence(fields["types"], types_path)))
        self.probabilities([t.p for t in types], types_path)
        return NoiseOp(self.name(fields, path, "noise", default_name), types, self.gate(fields, path))

    def noise_type(self, value: Any, path: str) -> NoiseSpec:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {value!r}")
        kind = self.choice(value.get("type"), _join(path, "type"), NOISE_TYPES)
        if kind == "gaussian":
            fields = self.mapping(value, path, ("type", "p", "sigma", "gray_p", "correlated_p"), ("p", "sigma"))
            gray_p = self.probability(fields.get("gray_p", 0.0), _join(path, "gray_p"))
            correlated_p = self.probability(fields.get("correlated_p", 0.0), _join(path, "correlated_p"))
            if gray_p + correlated_p > 1 + _PROBABILITY_TOLERANCE:
                raise self.fail(path, f"gray_p + correlated_p = {gray_p + correlated_p:g} exceeds 1")
            return NoiseSpec(kind, self.probability(fields["p"], _join(path, "p")),
                             sigma=self.distribution(fields["sigma"], _join(path, "sigma"), (0.0, math.inf)),
                             gray_p=gray_p, correlated_p=correlated_p)
        fields = self.mapping(value, path, ("type", "p", "scale", "gray_p"), ("p", "scale"))
        return NoiseSpec(kind, self.probability(fields["p"], _join(path, "p")),
                         scale=self.distribution(fields["scale"], _join(path, "scale"), (0.0, math.inf)),
                         gray_p=self.probability(fields.get("gray_p", 0.0), _join(path, "gray_p")))

    def jpeg(self, value: Any, path: str, default_name: str | None) -> JpegOp:
        fields = self.mapping(value, path, ("name", "p", "quality", "padding", "table_layout"), ("quality",))
        return JpegOp(
            name=self.name(fields, path, "jpeg", default_name),
            quality=self.distribution(fields["quality"], _join(path, "quality"), (1.0, 100.0)),
            padding=self.choice(fields.get("padding", "edge"), _join(path, "padding"), PADDINGS),
            table_layout=self.choice(fields.get("table_layout", "ijg"), _join(path, "table_layout"), TABLE_LAYOUTS),
            p=self.gate(fields, path),
        )

    def sharpen(self, value: Any, path: str, default_name: str | None) -> SharpenOp:
        fields = self.mapping(value, path, ("name", "p", "weight", "threshold", "radius", "sigma"))
        radius = self.integer(fields.get("radius", 51), _join(path, "radius"))
        if radius < 1:
            raise self.fail(_join(path, "radius"), f"must be positive, got {radius}")
        threshold = self.number(fields.get("threshold", 10.0), _join(path, "threshold"))
        if threshold < 0:
            raise self.fail(_join(path, "threshold"), f"must not be negative, got {threshold:g}")
        return SharpenOp(
            name=self.name(fields, path, "sharpen", default_name),
            weight=self.distribution(fields.get("weight", 0.5), _join(path, "weight"), (0.0, math.inf)),
            threshold=threshold,
            radius=radius,
            sigma=self.number(fields.get("sigma", 0.0), _join(path, "sigma")),
            p=self.gate(fields, path),
        )

    def quantize(self, value: Any, path: str, default_name: str | None) -> QuantizeOp:
        fields = self.mapping(value, path, ("name", "p", "bits"))
        bits = self.integer(fields.get("bits", 8), _join(path, "bits"))
        if not 1 <= bits <= 16:
            raise self.fail(_join(path, "bits"), f"must be in [1, 16], got {bits}")
        return QuantizeOp(self.name(fields, path, "quantize", default_name), bits, self.gate(fields, path))

    def one_of(self, value: Any, path: str, default_name: str | None) -> OneOf:
        fields = self.mapping(value, path, ("name", "choices"), ("choices",))
        choices_path = _join(path, "choices")
        branches = []
        for i, item in enumerate(self.sequence(fields["choices"], choices_path)):
            branch_path = _join(choices_path, i)
            branch = self.mapping(item, branch_path, ("p", "stages"), ("p", "stages"))
            branches.append(Branch(self.probability(branch["p"], _join(branch_path, "p")),
                                   self.stages(branch["stages"], _join(branch_path, "stages"))))
        self.probabilities([b.p for b in branches], choices_path)
        return OneOf(self.name(fields, path, "one_of", default_name), tuple(branches))

    def shuffle(self, value: Any, path: str, default_name: str | None) -> Shuffle:
        fields = self.mapping(value, path, ("name", "stages", "keep_order"), ("stages",))
        stages = self.stages(fields["stages"], _join(path, "stages"))
        names = [s.name for s in stages]
        for name in names:
            if names.count(name) > 1:
                raise self.fail(_join(path, "stages"), f"two stages named {name!r}; keep_order needs unique names")
        chains = []
        seen: set[str] = set()
        order_path = _join(path, "keep_order")
        for i, chain in enumerate(self.sequence(fields.get("keep_order", []), order_path, non_empty=False)):
            chain_path = _join(order_path, i)
            chain = self.sequence(chain, chain_path)
            for j, name in enumerate(chain):
                if name not in names:
                    raise self.fail(_join(chain_path, j), f"no stage named {name!r} here (stages: {', '.join(names)})")
                if name in seen:
                    raise self.fail(_join(chain_path, j), f"{name!r} is in two keep_order chains")
                seen.add(name)
            chains.append(tuple(chain))
        return Shuffle(self.name(fields, path, "shuffle", default_name), stages, tuple(chains))


def _plain(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _support(dist: Distribution) -> tuple[float, float]:
    """Smallest and largest value ``dist`` can produce."""
    if isinstance(dist, Constant):
        return dist.value, dist.value
    if isinstance(dist, InverseUniform):
        return 1.0 / dist.high, 1.0 / dist.low
    if isinstance(dist, Mixture):
        supports = [_support(c) for c in dist.components]
        return min(s[0] for s in supports), max(s[1] for s in supports)
    return float(dist.low), float(dist.high)
