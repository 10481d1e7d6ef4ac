"""``data.augment``: an albumentations pipeline on the HR crops, checked when the options load.

The pipeline is given in albumentations' own serialised form (what ``A.to_dict`` returns and
``A.save`` writes), inline or as the path of a YAML/JSON file. Each node is built here rather
than by ``A.from_dict`` so that a mistake names its key (``transform.transforms[2]...``),
arguments are checked strictly, and a transform that changes the image size is refused: a
crop is sized for its batch's scale and must keep that size.

Draws are seeded per sample. albumentations' ``set_random_seed`` on a Compose gives every
child the *same* seed, so two transforms with the same ``p`` would always fire together;
``seed_pipeline`` instead gives each transform in the tree its own seed derived from
(sample seed, position). Re-seeding before each image of a real pair gives both images the
same draw of every transform, whatever the images' sizes.
"""

from __future__ import annotations

import difflib
import warnings
from itertools import count
from typing import Any

import numpy as np

from realciao.errors import RealciaoError

PROBE_SHAPE = (40, 56, 3)  # not square: a transpose or a 90-degree rotation shows up as a size change
PROBE_DRAWS = 4


class AugmentError(RealciaoError, ValueError):
    """A ``data.augment`` pipeline that cannot be used; ``key`` is where in it the problem is."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}" if key else message)


def _registry() -> dict[str, type]:
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY

    return SERIALIZABLE_REGISTRY


def read_spec(spec: dict | str) -> tuple[dict, str]:
    """(the serialised pipeline, the file it came from or ''), from an inline mapping or a path."""
    if isinstance(spec, dict):
        return spec, ""
    from realciao.typed import TypedFileError, read_yaml

    try:
        data = read_yaml(spec, "albumentations pipeline file")
    except TypedFileError as error:
        raise AugmentError("", str(error)) from None
    if not isinstance(data, dict):
        raise AugmentError("", f"{spec}: expected an albumentations pipeline (A.save's form), got {data!r:.60}")
    return data, str(spec)


def build_pipeline(spec: dict | str):
    """The albumentations transform described by ``spec``, checked node by node and probed
    for size changes. Raises ``AugmentError`` naming the key (and the file, for a path)."""
    data, file = read_spec(spec)
    try:
        root, prefix = (data["transform"], "transform") if "transform" in data else (data, "")
        pipeline = _build(root, prefix)
        _refuse_size_changes(pipeline, prefix)
    except AugmentError as error:
        if file:
            raise AugmentError("", f"{file}: {error}") from None
        raise
    return pipeline


def _build(node: Any, key: str):
    if not isinstance(node, dict):
        raise AugmentError(key, f"expected a transform (a mapping with __class_fullname__), got {node!r:.60}")
    name = node.get("__class_fullname__")
    name_key = f"{key}.__class_fullname__" if key else "__class_fullname__"
    if not isinstance(name, str):
        raise AugmentError(name_key, "missing: the transform's class name (e.g. HorizontalFlip)")
    registry = _registry()
    short = name.rsplit(".", 1)[-1]
    cls = registry.get(name) or registry.get(short)
    if cls is None:
        near = difflib.get_close_matches(short, list(registry), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise AugmentError(name_key, f"unknown albumentations transform {name!r}{hint}")
    args = {k: v for k, v in node.items() if k not in ("__class_fullname__", "id")}
    if "transforms" in args:
        children = args["transforms"]
        if not isinstance(children, list):
            raise AugmentError(f"{key}.transforms", f"expected a list of transforms, got {children!r:.60}")
        args["transforms"] = [_build(child, f"{key}.transforms[{i}]") for i, child in enumerate(children)]
    elif _is_compose(cls):
        raise AugmentError(f"{key}.transforms", f"missing: {short} needs a list of transforms")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transform = cls(**args)
    except Exception as error:  # albumentations' own checks (pydantic or ValueError): one line
        raise AugmentError(key or short, f"{short}: {_one_line(error)}") from None
    for warning in caught:  # albumentations only warns about an unknown argument: refuse it
        if "are not valid for transform" in str(warning.message):
            raise AugmentError(key or short, f"{short}: {warning.message}")
    return transform


def _is_compose(cls: type) -> bool:
    from albumentations.core.composition import BaseCompose

    return issubclass(cls, BaseCompose)


def _one_line(error: Exception) -> str:
    from pydantic import ValidationError

    cause = error if isinstance(error, ValidationError) else error.__cause__
    if isinstance(cause, ValidationError):
        errors = cause.errors(include_url=False)
        field = str(errors[0]["loc"][0]) if errors[0]["loc"] else "arguments"
        messages = list(dict.fromkeys(e["msg"] for e in errors if e["loc"][:1] == errors[0]["loc"][:1]))
        return f"{field}: {' or '.join(messages)}, got {errors[0].get('input')!r:.60}"
    return " ".join(str(error).split())


def iter_transforms(pipeline, key: str = ""):
    """(key, transform) for every node of the tree, parents before children."""
    yield key, pipeline
    for i, child in enumerate(pipeline.transforms if _is_compose(type(pipeline)) else []):
        yield from iter_transforms(child, f"{key}.transforms[{i}]" if key else f"transforms[{i}]")


def seed_pipeline(pipeline, seed: int) -> None:
    """Each transform of the tree its own generator, from (seed, its position)."""
    position = count()
    for _, transform in iter_transforms(pipeline):
        transform.set_random_seed(int(np.random.default_rng([seed, next(position)]).integers(2**32)))


def apply_pipeline(pipeline, images: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """``images`` (float32 HxWx3 in [0, 1]) through ``pipeline``, each with the same draws."""
    out = []
    for image in images:
        seed_pipeline(pipeline, seed)
        result = pipeline(image=np.ascontiguousarray(image, dtype=np.float32))["image"]
        if result.shape != image.shape:
            raise AugmentError("data.augment", f"the pipeline changed a {_size(image)} crop to {_size(result)}; "
                                               "transforms must keep the crop size")
        out.append(np.clip(result, 0.0, 1.0).astype(np.float32, copy=False))
    return out


def _size(image: np.ndarray) -> str:
    return f"{image.shape[0]}x{image.shape[1]}"


def _refuse_size_changes(pipeline, prefix: str) -> None:
    """Every leaf transform, always applied, on a non-square probe image: the size must stay."""
    probe = np.random.default_rng(0).random(PROBE_SHAPE, dtype=np.float32)
    for key, transform in iter_transforms(pipeline, prefix):
        if _is_compose(type(transform)):
            continue
        name = type(transform).__name__
        single = _always(transform)
        for draw in range(PROBE_DRAWS):
            single.set_random_seed(draw)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = single(image=probe.copy())["image"]
            except Exception as error:
                raise AugmentError(key or name, f"{name} cannot transform an RGB float crop: {_one_line(error)}") from None
            shape = getattr(result, "shape", None)
            if shape != PROBE_SHAPE:
                got = f"{shape[0]}x{shape[1]}" if shape is not None and len(shape) >= 2 else type(result).__name__
                raise AugmentError(key or name, f"{name} changes the crop size ({_size(probe)} -> {got}); crops are "
                                                "sized for their scale, so only size-keeping transforms are allowed "
                                                "(90-degree rotations of square crops: data.rotate)")


def _always(transform):
    """A copy of a leaf transform with p = 1 (so the probe sees what it does)."""
    import copy

    single = copy.deepcopy(transform)
    single.p = 1.0
    return single
