"""Finding, loading, writing and editing recipe files (their typed form is ``specs.py``).

Every mistake is a ``RecipeError`` naming the file and the key path, e.g.
``degradations/x.yml: stages[2].noise.types[0].sigma: empty range [30, 1]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

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
    OneOf,
    OpSpec,
    Recipe,
    SharpenOp,
    Shuffle,
    Stage,
    dump_distribution,
)
from realciao.typed import TypedFileError, key_path, read_yaml, validate_data

# Recipes shipped with realciao: the repository's degradations/ folder, which setup.py also
# installs as the package data folder realciao/degradations/recipes/.
PACKAGED_RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
REPOSITORY_RECIPE_DIR = Path(__file__).resolve().parents[2] / "degradations"


class RecipeError(TypedFileError):
    """A recipe file that cannot be used; the message names the file and the key path."""


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
        data = read_yaml(path, "recipe file")
    except TypedFileError as error:
        raise RecipeError(label, error.key_path, error.detail) from None
    recipe = parse_recipe(data, label, default_name=path.stem)
    return recipe.model_copy(update={"path": path})


def parse_recipe(data: Any, label: str = "<recipe>", default_name: str = "recipe") -> Recipe:
    """Validate an already-loaded mapping (e.g. a recipe built in code)."""
    try:
        recipe = validate_data(Recipe, data, label)
    except TypedFileError as error:
        raise RecipeError(error.file, error.key_path, error.detail) from None
    counters: dict[str, int] = {}
    stages = tuple(_named(stage, counters, label, ("stages", i)) for i, stage in enumerate(recipe.stages))
    sharpening = recipe.gt_sharpening
    if sharpening is not None and sharpening.name is None:
        sharpening = sharpening.model_copy(update={"name": "gt_sharpening"})
    return recipe.model_copy(update={"name": recipe.name or default_name, "description": recipe.description.strip(),
                                     "stages": stages, "gt_sharpening": sharpening})


def _kind(stage: Stage) -> str:
    return type(stage).model_fields["op"].default


def _named(stage: Stage, counters: dict[str, int], label: str, loc: tuple) -> Stage:
    """The stage with default names filled in (op name + running number per op, depth first),
    and shuffles' keep_order chains checked against the names."""
    loc = (*loc, _kind(stage))
    if isinstance(stage, OneOf):
        branches = tuple(
            branch.model_copy(update={"stages": tuple(_named(s, counters, label, (*loc, "choices", b, "stages", i))
                                                      for i, s in enumerate(branch.stages))})
            for b, branch in enumerate(stage.choices)
        )
        stage = stage.model_copy(update={"choices": branches})
    elif isinstance(stage, Shuffle):
        stage = stage.model_copy(update={"stages": tuple(_named(s, counters, label, (*loc, "stages", i))
                                                         for i, s in enumerate(stage.stages))})
        _check_keep_order(stage, label, loc)
    if stage.name is None:
        kind = _kind(stage)
        counters[kind] = counters.get(kind, 0) + 1
        stage = stage.model_copy(update={"name": f"{kind}{counters[kind]}"})
    return stage


def _check_keep_order(stage: Shuffle, label: str, loc: tuple) -> None:
    names = [s.name for s in stage.stages]
    for name in names:
        if names.count(name) > 1:
            raise RecipeError(label, key_path((*loc, "stages")), f"two stages named {name!r}; keep_order needs unique names")
    seen: set[str] = set()
    for i, chain in enumerate(stage.keep_order):
        for j, name in enumerate(chain):
            where = key_path((*loc, "keep_order", i, j))
            if name not in names:
                raise RecipeError(label, where, f"expected a stage name of this shuffle ({', '.join(names)}), got {name!r}")
            if name in seen:
                raise RecipeError(label, where, f"{name!r} is in two keep_order chains")
            seen.add(name)


def replace_ops(recipe: Recipe, op_type: type, **changes: Any) -> Recipe:
    """A copy of ``recipe`` with ``changes`` applied to every op of ``op_type``, at any depth.

    E.g. ``replace_ops(recipe, ResizeOp, antialias=False)`` for the reference's aliasing.
    """

    def visit(stage: Stage) -> Stage:
        if isinstance(stage, OneOf):
            branches = tuple(b.model_copy(update={"stages": tuple(visit(s) for s in b.stages)}) for b in stage.choices)
            return stage.model_copy(update={"choices": branches})
        if isinstance(stage, Shuffle):
            return stage.model_copy(update={"stages": tuple(visit(s) for s in stage.stages)})
        return stage.model_copy(update=changes) if isinstance(stage, op_type) else stage

    return recipe.model_copy(update={"stages": tuple(visit(s) for s in recipe.stages)})


# ----------------------------------------------------------------------------- writing
def recipe_to_data(recipe: Recipe) -> dict:
    """The file form of a recipe: ``load_recipe`` of its YAML gives the same recipe back."""
    data: dict[str, Any] = {"name": recipe.name}
    if recipe.description:
        data["description"] = recipe.description
    if recipe.fitted_scale is not None:
        data["fitted_scale"] = recipe.fitted_scale
    if recipe.gt_sharpening is not None:
        data["gt_sharpening"] = _fields(recipe.gt_sharpening)
        data["degrade_sharpened_gt"] = recipe.degrade_sharpened_gt
    data["stages"] = [_stage_data(s) for s in recipe.stages]
    return data


def dump_recipe(recipe: Recipe, header: str = "") -> str:
    """YAML text of ``recipe`` with an optional comment header."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(recipe_to_data(recipe), sort_keys=False, default_flow_style=None, width=110)


def _stage_data(stage: Stage) -> dict:
    if isinstance(stage, OneOf):
        body = {"name": stage.name, "choices": [{"p": b.p, "stages": [_stage_data(s) for s in b.stages]}
                                                for b in stage.choices]}
    elif isinstance(stage, Shuffle):
        body = {"name": stage.name, "stages": [_stage_data(s) for s in stage.stages],
                "keep_order": [list(chain) for chain in stage.keep_order]}
    else:
        body = _fields(stage)
    return {_kind(stage): body}


def _fields(spec: OpSpec | SharpenOp) -> dict:
    """Fields that differ from their defaults (and the name), in YAML form."""
    out: dict[str, Any] = {}
    for field_name, field in type(spec).model_fields.items():
        if field.exclude:
            continue
        value = getattr(spec, field_name)
        if field_name != "name" and not field.is_required() and value == field.get_default(call_default_factory=True):
            continue
        out[field_name] = _value(value)
    return out


def _value(value: Any) -> Any:
    if isinstance(value, (Constant, Uniform, IntegerUniform, InverseUniform, Mixture)):
        return dump_distribution(value)
    if isinstance(value, OddRange):
        return [value.low, value.high]
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    if isinstance(value, BaseModel):
        return _fields(value)
    return value


def _display(path: Path) -> str:
    for base in (Path.cwd(), REPOSITORY_RECIPE_DIR.parent):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


__all__ = ["Distribution", "RecipeError", "available_recipes", "dump_recipe", "load_recipe", "parse_recipe",
           "recipe_to_data", "replace_ops", "resolve_recipe_path"]
