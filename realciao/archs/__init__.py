"""Generator registry: ``build_generator(name, **overrides)``.

A generator is an encoder (EDSR-baseline, RDN or SwinIR trunk) followed by the CiaoSR
upsampler. Its config is a plain dict, saved in checkpoints, that rebuilds it exactly.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from realciao.archs.ciaosr import RGB_MEAN, CiaoSR, CiaoSRUpsampler
from realciao.archs.edsr import EDSRBaselineEncoder
from realciao.archs.rdn import RDNEncoder
from realciao.archs.swinir import SwinIREncoder

ENCODERS: dict[str, type[nn.Module]] = {
    "edsr-baseline": EDSRBaselineEncoder,
    "rdn": RDNEncoder,
    "swinir": SwinIREncoder,
}

# registry name -> encoder type; the encoders' defaults are the paper's configurations
GENERATORS: dict[str, str] = {
    "edsr-baseline-ciaosr": "edsr-baseline",
    "rdn-ciaosr": "rdn",
    "swinir-ciaosr": "swinir",
}

UPSAMPLER_KEYS = ("mlp_hidden", "non_local")
DEFAULT_MLP_HIDDEN = (256, 256, 256, 256)


def encoder_keys(encoder: str) -> list[str]:
    return [p for p in inspect.signature(ENCODERS[encoder]).parameters if p != "in_channels"]


def generator_config(name: str, **overrides: Any) -> dict[str, Any]:
    """The full config of a registered generator with overrides applied; unknown keys are an error."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    encoder = GENERATORS[name]
    allowed = encoder_keys(encoder) + list(UPSAMPLER_KEYS)
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; allowed: {allowed}")
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
    expected = {"name", "encoder", "encoder_args", "mlp_hidden", "non_local"}
    if set(config) != expected:
        raise ValueError(f"generator config must have exactly the keys {sorted(expected)}, got {sorted(config)}")
    encoder = ENCODERS[config["encoder"]](**config["encoder_args"])
    upsampler = CiaoSRUpsampler(encoder.out_channels, config["mlp_hidden"], config["non_local"])
    return CiaoSR(encoder, upsampler, name=config["name"], config=config)


def build_generator(name: str, **overrides: Any) -> CiaoSR:
    """A randomly initialised generator, e.g. ``build_generator("edsr-baseline-ciaosr", num_blocks=4)``."""
    return build_from_config(generator_config(name, **overrides))


__all__ = ["CiaoSR", "CiaoSRUpsampler", "ENCODERS", "GENERATORS", "RGB_MEAN", "build_generator", "build_from_config", "generator_config"]
