"""The docs site's generated sections (an MkDocs hook: ``hooks:`` in ``mkdocs.yml``).

What the code already states is not written twice by hand: a page asks for a generated
section with a marker line, ``<!-- generated: NAME -->``, and the build replaces the line
with the section, made from the code as it is at build time:

- ``options``: every training option, from the typed option models (``realciao/train/config.py``;
  each field's description is its docstring there);
- ``recipe-ops``: every recipe stage and its fields, from the recipe types
  (``realciao/degradations/specs.py``);
- ``recipes``: the shipped recipes in ``degradations/``;
- ``benchmarks``: every results file in ``docs/benchmarks/*.json`` (written by the scripts'
  ``--json PATH``, ``realciao/benchmarks.py``) as tables with their command and machine.

An unknown marker, or a generated section no page asks for, fails the build.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)
_used: set[str] = set()


def fail(message: str):
    """Stop the build with one line (mkdocs is imported here only, so the generators run without it)."""
    from mkdocs.exceptions import PluginError

    raise PluginError(message)


# ----------------------------------------------------------------------------- types as text
def _bounds(metadata: list, base=None) -> list[str]:
    """Bounds a field's metadata states (annotated_types' Ge, Gt, Le, Lt, MinLen, MaxLen)."""
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    found = []
    for item in metadata:
        for bound in getattr(item, "metadata", None) or [item]:  # a FieldInfo carries its own list
            found += [
                f"{symbol} {getattr(bound, name):g}"
                for name, symbol in symbols.items()
                if hasattr(bound, name)
            ]
            if getattr(bound, "min_length", None):
                found.append("not empty" if base is str else f"at least {bound.min_length}")
            if getattr(bound, "max_length", None) is not None:
                found.append(f"at most {bound.max_length}")
    return found


def _with_bounds(text: str, bounds: list[str]) -> str:
    return f"{text} ({', '.join(bounds)})" if bounds else text


def type_text(annotation, name_of: Callable[[type], str | None], unions: dict[frozenset, str]) -> str:
    """A field's type in words: ``integer (>= 1)``, ``list of text``, ``one of `a`, `b```...;
    ``name_of`` names a class (None: not one it knows), ``unions`` names a union by its members."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _with_bounds(type_text(args[0], name_of, unions), _bounds(list(args[1:]), args[0]))
    if origin in (Union, types.UnionType):
        if frozenset(args) in unions:
            return unions[frozenset(args)]
        parts = [type_text(a, name_of, unions) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (list, tuple):
        return "list of " + type_text(args[0], name_of, unions) if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0], name_of, unions)} to {type_text(args[1], name_of, unions)}"
    named = name_of(annotation) if isinstance(annotation, type) else None
    if named:
        return named
    plain = {
        bool: "true or false",
        int: "integer",
        float: "number",
        str: "text",
        dict: "mapping",
        Path: "path",
    }
    return plain.get(annotation, getattr(annotation, "__name__", str(annotation)))


def field_type(field, name_of: Callable[[type], str | None], unions: dict[frozenset, str]) -> str:
    return _with_bounds(
        type_text(field.annotation, name_of, unions), _bounds(field.metadata, field.annotation)
    )


def default_text(field) -> str:
    """The default as it is written in a file (its YAML/JSON form), or *required*."""
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    written = TypeAdapter(annotation).dump_python(value, mode="json")
    return f"`{json.dumps(written)}`"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def fields_table(rows: list[tuple[str, str, str, str]], first: str = "option") -> str:
    lines = [f"| {first} | type | default | description |", "| --- | --- | --- | --- |"]
    lines += [
        f"| `{key}` | {_one_line(kind)} | {_one_line(default)} | {_one_line(text)} |"
        for key, kind, default, text in rows
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- training options
def option_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, field) for every leaf option of ``model``: nested option models are walked."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from option_fields(field.annotation, key + ".")
        else:
            yield key, field


def options_reference() -> str:
    from realciao.train.config import TrainConfig

    def name_of(model: type) -> None:
        return None  # nested option models are walked, not named

    sections: dict[str, list] = {}
    for key, field in option_fields(TrainConfig):
        section = key.split(".")[0] if "." in key else ""
        sections.setdefault(section, []).append(
            (key, field_type(field, name_of, {}), default_text(field), field.description)
        )
    parts = []
    for section, rows in sections.items():
        described = TrainConfig.model_fields[section].description if section else None
        parts.append(f"### `{section}`" if section else "### Top level")
        if described:
            parts.append(_one_line(described))
        parts.append(fields_table(rows))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- recipe ops
def recipe_ops_reference() -> str:
    from realciao.degradations import sampling, specs

    stage_names = {t: t.model_fields["op"].default for t in specs.STAGE_TYPES}
    parts_of = {
        specs.KernelSpec: ("blur", "kernels"),
        specs.NoiseSpec: ("noise", "types"),
        specs.Branch: ("one_of", "choices"),
    }

    def name_of(model: type) -> str | None:
        if model is sampling.OddRange:
            return "odd size, or [low, high] odd sizes"
        if model in stage_names:
            return f"[{stage_names[model]}](#{stage_names[model]})"
        if model in parts_of:
            op, field = parts_of[model]
            return f"[{op}.{field} entry](#{op}-{field})"
        return None

    unions = {
        frozenset(get_args(sampling.Distribution)): "[drawn value](#drawn-values)",
        frozenset(specs.STAGE_TYPES): "stage",
    }

    def table(model: type[BaseModel]) -> str:
        rows = [
            (name, field_type(field, name_of, unions), default_text(field), field.description)
            for name, field in model.model_fields.items()
            if not field.exclude
        ]
        return fields_table(rows, "field")

    def described(model: type) -> str:
        own = model.__dict__.get("__doc__")  # a docstring of the class itself, not a base's
        return inspect.cleandoc(own) if own else ""

    parts = ["### The recipe file", described(specs.Recipe), table(specs.Recipe)]
    for model in specs.STAGE_TYPES:
        name = stage_names[model]
        parts += [
            f"### {name}",
            f"Written as `- {name}: {{...}}` in a list of stages.",
            described(model),
            table(model),
        ]
        for part, (op, field) in parts_of.items():
            if op == name:
                parts += [
                    f"#### {op}: {field}",
                    f"Each entry of `{op}.{field}`.",
                    described(part),
                    table(part),
                ]
    return "\n\n".join(p for p in parts if p)


def shipped_recipes() -> str:
    from realciao.degradations import available_recipes, load_recipe

    lines = ["| recipe | stages (top level, in order) | description |", "| --- | --- | --- |"]
    for name in available_recipes():
        recipe = load_recipe(name)
        stages = ", ".join(f"`{stage.name}`" for stage in recipe.stages)
        lines.append(f"| `{name}` | {stages} | {_one_line(recipe.description)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- benchmarks
def benchmark_tables(folder: Path) -> str:
    """Every results file in ``folder`` as a section, in file name order; a note when there is none."""
    from realciao.benchmarks import read_results, results_markdown
    from realciao.typed import TypedFileError

    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return (
            f"No results files yet: `{folder.name}/` holds none. A benchmark script run with "
            f"`--json docs/benchmarks/NAME.json` adds its tables here at the next build."
        )
    listing = ", ".join(f"`{path.name}`" for path in files)
    parts = [f"Results files in `{folder.name}/`: {listing}."]
    for path in files:
        try:
            parts.append(results_markdown(read_results(path)))
        except TypedFileError as error:
            fail(str(error))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- the hook
def generators(docs_dir: Path) -> dict[str, Callable[[], str]]:
    return {
        "options": options_reference,
        "recipe-ops": recipe_ops_reference,
        "recipes": shipped_recipes,
        "benchmarks": lambda: benchmark_tables(docs_dir / "benchmarks"),
    }


def on_pre_build(config) -> None:
    _used.clear()


def on_page_markdown(markdown: str, page, config, files) -> str:
    made = generators(Path(config["docs_dir"]))

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in made:
            fail(f"{page.file.src_uri}: unknown generated section {name!r}; known: {sorted(made)}")
        _used.add(name)
        return made[name]()

    return MARKER.sub(replace, markdown)


def on_post_build(config) -> None:
    unused = sorted(set(generators(Path(config["docs_dir"]))) - _used)
    if unused:
        fail(f"generated sections no page asks for: {unused} (add <!-- generated: NAME --> to a page)")
