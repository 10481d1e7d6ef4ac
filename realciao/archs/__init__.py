"""Generator registry: ``build_generator(name, **overrides)``.

A generator is an encoder (EDSR-baseline, RDN, SwinIR or RRDB trunk) followed by the CiaoSR
upsampler, and is named after its encoder: ``<encoder>-ciaosr``. ``ENCODERS`` is the only
list of encoders; ``register_encoder`` adds one (see ``realciao.archs.encoder``). A
generator's config is a plain dict, saved in checkpoints, that rebuilds it exactly.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from realciao.archs.ciaosr import CiaoSR, CiaoSRUpsampler
from realciao.archs.edsr import EDSRBaselineEncoder
from realciao.archs.encoder import Encoder
from realciao.archs.rdn import RDNEncoder
from realciao.archs.rrdb import RRDBEncoder, load_esrgan_trunk
from realciao.archs.swinir import SwinIREncoder

ENCODERS: dict[str, type[Encoder]] = {}
GENERATOR_SUFFIX = "-ciaosr"
UPSAMPLER_KEYS = ("mlp_hidden", "non_local")
DEFAULT_MLP_HIDDEN = (256, 256, 256, 256)
CONFIG_KEYS = ("name", "encoder", "encoder_args", "mlp_hidden", "non_local")


def register_encoder(encoder: type[Encoder]) -> type[Encoder]:
    """Make ``<encoder.name>-ciaosr`` a generator name (usable as a class decorator)."""
    if not (isinstance(encoder, type) and issubclass(encoder, Encoder)):
        raise TypeError(f"an encoder must subclass realciao.archs.encoder.Encoder, got {encoder!r}")
    registered = ENCODERS.get(encoder.name)
    if registered is not None and registered is not encoder:
        raise ValueError(f"an encoder named {encoder.name!r} is already registered ({registered.__qualname__})")
    ENCODERS[encoder.name] = encoder
    return encoder


for _builtin in (EDSRBaselineEncoder, RDNEncoder, SwinIREncoder, RRDBEncoder):
    register_encoder(_builtin)


class GeneratorNames(Mapping):
    """Generator name -> encoder name, read from ``ENCODERS`` each time (never a second list)."""

    def __getitem__(self, name: str) -> str:
        if name.endswith(GENERATOR_SUFFIX) and name[: -len(GENERATOR_SUFFIX)] in ENCODERS:
            return name[: -len(GENERATOR_SUFFIX)]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([f"{encoder}{GENERATOR_SUFFIX}" for encoder in ENCODERS])

    def __len__(self) -> int:
        return len(ENCODERS)


GENERATORS = GeneratorNames()


def generator_name(encoder: str) -> str:
    return f"{encoder}{GENERATOR_SUFFIX}"


def encoder_keys(encoder: str) -> list[str]:
    return [p for p in inspect.signature(ENCODERS[encoder]).parameters if p != "in_channels"]


def option_keys(name: str) -> list[str]:
    """The overrides ``build_generator(name, ...)`` accepts: the encoder's, then the upsampler's."""
    return encoder_keys(GENERATORS[name]) + list(UPSAMPLER_KEYS)


def options_model(name: str) -> type:
    """A typed model of ``build_generator(name, ...)``'s overrides, from the encoder's
    constructor signature (types and defaults) plus the upsampler's options."""
    from pydantic import Field, create_model

    from realciao.typed import Typed

    encoder = ENCODERS[GENERATORS[name]]
    hints = typing.get_type_hints(encoder.__init__)
    fields: dict[str, Any] = {}
    for key in encoder_keys(encoder.name):
        parameter = inspect.signature(encoder).parameters[key]
        annotation = hints.get(key, Any)
        if typing.get_origin(annotation) is collections.abc.Sequence:
            annotation = list[typing.get_args(annotation)[0]]  # YAML gives lists
        fields[key] = (annotation, parameter.default)
    fields["mlp_hidden"] = (list[typing.Annotated[int, Field(ge=1)]], list(DEFAULT_MLP_HIDDEN))
    fields["non_local"] = (bool, True)
    return create_model(f"{encoder.__name__}Options", __base__=Typed, **fields)


def generator_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The full config of a registered generator with overrides applied; unknown keys and
    values of the wrong type are errors."""
    from pydantic import ValidationError

    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    encoder = GENERATORS[name]
    allowed = option_keys(name)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; allowed: {allowed}")
    try:
        options_model(name).model_validate(overrides)
    except ValidationError as error:
        from realciao.typed import describe_error

        loc, message = describe_error(error.errors(include_url=False)[0], None)
        raise ValueError(f"{name}: option {'.'.join(map(str, loc))}: {message}") from None
    encoder_args = {k: v for k, v in overrides.items() if k in encoder_keys(encoder)}
    for key, value in encoder_args.items():
        if isinstance(value, (list, tuple)):
            encoder_args[key] = [int(v) for v in value]
    return {
        "name": name,
        "encoder": encoder,
        "encoder_args": encoder_args,
        "mlp_hidden": [int(v) for v in overrides.get("mlp_hidden", DEFAULT_MLP_HIDDEN)],
        "non_local": bool(overrides.get("non_local", True)),
    }


def build_from_config(config: dict[str, Any]) -> CiaoSR:
    if set(config) != set(CONFIG_KEYS):
        raise ValueError(f"generator config must have exactly the keys {sorted(CONFIG_KEYS)}, got {sorted(config)}")
    if config["encoder"] not in ENCODERS:
        raise ValueError(f"unknown encoder {config['encoder']!r}; registered: {sorted(ENCODERS)}")
    encoder = ENCODERS[config["encoder"]](**config["encoder_args"])
    upsampler = CiaoSRUpsampler(encoder.out_channels, config["mlp_hidden"], config["non_local"])
    return CiaoSR(encoder, upsampler, name=config["name"], config=config)


def build_generator(name: str, encoder_weights: str | os.PathLike | None = None, **overrides: Any) -> CiaoSR:
    """A randomly initialised generator, e.g. ``build_generator("edsr-baseline-ciaosr", num_blocks=4)``.

    ``encoder_weights``: a checkpoint whose trunk initialises the encoder instead (for
    ``rrdb-ciaosr``: any ESRGAN-family RRDBNet file, e.g. Real-ESRGAN x4plus); the upsampler
    stays random. It is where training starts, not part of the architecture, so the
    generator's config does not record it."""
    generator = build_from_config(generator_config(name, **overrides))
    if encoder_weights is not None:
        if not isinstance(generator.encoder, RRDBEncoder):
            from realciao.errors import RealciaoError

            raise RealciaoError(f"encoder_weights: only rrdb-ciaosr starts from a peer's trunk, not {name}")
        load_esrgan_trunk(generator.encoder, encoder_weights)
    return generator


__all__ = [
    "CiaoSR",
    "CiaoSRUpsampler",
    "ENCODERS",
    "Encoder",
    "GENERATORS",
    "build_from_config",
    "build_generator",
    "generator_config",
    "generator_name",
    "options_model",
    "register_encoder",
]
