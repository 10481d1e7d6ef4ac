"""One typed loader for every YAML file realciao reads: training options and degradation recipes.

Files are described by pydantic models (``Typed``): field types, choices, element types,
bounds and defaults are written once, on the model, and give both the checks and the
JSON schema editors use (``options/schema.json``). Every mistake becomes one line,

    FILE: key.path: expected ..., got ...

pydantic was chosen over a hand-written checker: it already ships with the requested stack
(albumentations depends on it), it checks nested types and bounds declaratively, and it
generates the JSON schema from the same declarations, so the checks and the schema cannot
drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from realciao.errors import RealciaoError

Model = TypeVar("Model", bound="Typed")
# a validator's message may start with the field it is about ("scale_min: ..."): the key path gets it
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): (.*)$", re.S)


class Typed(BaseModel):
    """Base of realciao's file models: unknown keys are errors, values are not coerced
    (``"2"`` is not a number, ``2.0`` is not an integer; an integer is a valid float), and
    each field's docstring is its description in the schema."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True, validate_assignment=True)


class TypedFileError(RealciaoError, ValueError):
    """A file (or its ``--set`` overrides) that does not match its model; one line naming
    the file and the key path."""

    def __init__(self, file: str, key_path: str, message: str):
        self.file = file
        self.key_path = key_path
        self.detail = message
        super().__init__(f"{file}: {key_path}: {message}" if key_path else f"{file}: {message}")


def key_path(loc: Sequence[str | int]) -> str:
    """('stages', 2, 'noise', 'types', 0, 'sigma') -> 'stages[2].noise.types[0].sigma'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_error(error: dict, model: type[BaseModel] | None) -> tuple[list, str]:
    """(loc, message) for one pydantic error, phrased as 'expected ..., got ...'."""
    loc = list(error["loc"])
    kind = error["type"]
    message = error["msg"]
    got = error.get("input")
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1]) if model is not None else None
        return loc, "unknown key" + (f"; allowed: {allowed}" if allowed else "")
    if kind == "union_tag_invalid":  # a recipe stage under an unknown op name
        return [*loc, error["ctx"]["tag"]], f"unknown op; expected one of {error['ctx']['expected_tags']}"
    if kind == "missing":
        return loc, "missing (required)"
    if kind in ("value_error", "assertion_error"):
        message = re.sub(r"^(Value|Assertion) error, ", "", message)
        match = _FIELD_PREFIX.match(message)
        if match:  # a model-level check about one of its fields
            loc.append(match.group(1))
            message = match.group(2)
        return loc, message
    if kind == "model_type" or kind == "model_attributes_type" or kind == "dict_type":
        return loc, f"expected a mapping of options, got {_shown(got)}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(error["ctx"].values()))
        return loc, f"expected a value {bounds[kind]} {limit:g}, got {_shown(got)}"
    message = re.sub(r"^Input should be ", "expected ", message)
    message = re.sub(r"^(List|Tuple|Dictionary) should have ", "expected ", message)
    message = message.replace("a valid integer", "an integer").replace("a valid number", "a number")
    message = message.replace("a valid string", "a string").replace("a valid boolean", "true or false")
    message = message.replace("a valid list", "a list")
    message = re.sub(r" after validation, not (\d+)", "", message)
    return loc, f"{message}, got {_shown(got)}"


def allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found by following ``loc`` from ``model``."""
    from typing import get_args

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            candidates = [field.annotation, *get_args(field.annotation)]
            current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if current is None:
                return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def raise_first(error: ValidationError, file: str, model: type[BaseModel] | None, prefix: Sequence = ()) -> None:
    """Raise the first error of ``error`` as a ``TypedFileError`` (one line; the count of the rest)."""
    errors = error.errors(include_url=False)
    loc, message = describe_error(errors[0], model)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    raise TypedFileError(file, key_path([*prefix, *loc]), message) from None


def validate_data(model: type[Model], data: Any, file: str, prefix: Sequence = (), context: dict | None = None) -> Model:
    """``model`` from loaded YAML; a mismatch raises ``TypedFileError`` naming ``file`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TypedFileError(file, key_path(prefix), f"expected a mapping of options, got {_shown(data)}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        raise_first(error, file, model, prefix)
    raise AssertionError("unreachable")


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """The YAML document at ``path``; a missing file or bad YAML is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise TypedFileError(str(path), "", f"no such {what}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        reason = " ".join(str(getattr(error, "problem", "") or error).split())
        raise TypedFileError(str(path), "", f"not valid YAML{line} ({reason})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TypedFileError(str(path), "", f"cannot read the {what} ({error})") from None


def apply_overrides(data: Any, overrides: Sequence[str], file: str) -> dict:
    """``key.path=value`` overrides (values parsed as YAML) applied to the loaded mapping."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise TypedFileError(file, "", f"expected a mapping of options, got {_shown(data)}")
    for text in overrides:
        if "=" not in text:
            raise TypedFileError(file, "", f"--set expects key.path=value, got {text!r}")
        key, raw = text.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise TypedFileError(file, key.strip(), f"--set {text}: the value is not valid YAML") from None
        keys = key.strip().split(".")
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TypedFileError(file, key.strip(), f"--set {text}: {part} is not a mapping")
        node[keys[-1]] = value
    return data
