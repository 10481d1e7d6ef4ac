"""Generator checkpoints: realciao safetensors files and official CiaoSR checkpoints.

A realciao file is safetensors with the generator config in its metadata. An official
checkpoint (plain state dict, mmediting ``state_dict`` with ``generator.`` keys, BasicSR
``params_ema``/``params``, ``module.`` prefixes) has its encoder type and sizes inferred
from its keys and shapes, so official models of any width load without a config.
Pickle files (.pth/.pt) are read with torch's restricted (weights-only) unpickler, which cannot
run code; one that needs full unpickling (which can) is read only with the user's consent.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from realciao.archs import ENCODERS, CiaoSR, build_from_config, generator_name
from realciao.archs.swinir import relative_position_index
from realciao.errors import RealciaoError
from realciao.files import atomic_path

FORMAT_TAG = "realciao.generator/1"
PICKLE_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".pkl"}
UPSAMPLER_PREFIXES = ("imnet_q.", "imnet_k.", "imnet_v.", "cs_attn.")
# buffers that official checkpoints carry but that are constants or derived from the window size
DERIVED_SUFFIXES = ("attn_mask", "relative_position_index", "cs_attn.escape_NaN")


class CheckpointError(RealciaoError, ValueError):
    """A checkpoint file that cannot become a CiaoSR generator; the message names the file."""


class PickleRefused(CheckpointError):
    """A pickle that only full unpickling (which can run code) reads, and no consent was given."""


def save_generator(model: CiaoSR, path: str | os.PathLike) -> Path:
    """Write the generator as safetensors with its config, atomically (never a half-written file)."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT_TAG, "config": json.dumps(model.config)}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path


def load_generator(
    path: str | os.PathLike,
    name: str | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    consent: str = "allow_pickle=True (command line: --allow-pickle)",
) -> CiaoSR:
    """Load a realciao or official CiaoSR checkpoint as a generator in eval mode.

    ``name`` (e.g. ``"swinir-ciaosr"``) only checks that the file holds that kind of
    generator; sizes always come from the file. ``consent`` is how the caller's user allows
    full unpickling, named in the refusal.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give the checkpoint file in it (e.g. net_g_ema.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    metadata, state = read_state(path, allow_pickle, consent)
    return generator_from_state(metadata, state, path, name).to(device).eval()


def is_ciaosr_state(metadata: Mapping[str, str], state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a file's contents are a CiaoSR generator (realciao or official keys)."""
    if metadata.get("format") == FORMAT_TAG:
        return True
    return any("imnet_q.layers." in key for key in state)  # the upsampler's decoder, under any prefix


def generator_from_state(metadata: Mapping[str, str], state: dict[str, torch.Tensor], path: Path,
                         name: str | None = None) -> CiaoSR:
    if metadata.get("format") == FORMAT_TAG:
        config = json.loads(metadata["config"])
    else:
        state = official_to_realciao(state, path)
        config = infer_config(state, path)
    if name is not None and name != config["name"]:
        raise CheckpointError(f"{path}: holds a {config['name']} generator, not {name!r}")
    try:
        model = build_from_config(config)
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: does not fit the {config.get('name')} generator described by it: {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: does not match the {config['name']} generator inferred from it: "
            f"missing {result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}"
        )
    return model


def read_state(path: Path, allow_pickle: bool = False, consent: str = "--allow-pickle"
               ) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a weights file. Safetensors, and pickles that torch's restricted
    (weights-only) unpickler accepts, load as they are: neither can run code. A pickle that
    needs full unpickling raises ``PickleRefused`` unless ``allow_pickle``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
        except Exception as error:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if path.suffix not in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .safetensors or .pth/.pt")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            raise PickleRefused(
                f"{path}: holds Python objects that only full unpickling can read, which can run arbitrary code. "
                f"Load it only if you trust its source, with {consent}, or convert it to .safetensors "
                f"({str(error).splitlines()[0][:120]})"
            ) from None
        loaded = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError) as error:
        # torch raises KeyError/IndexError on files that are not pickles at all (text, images)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    return {}, unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
    for entry in ("state_dict", "params_ema", "params", "model"):
        if entry in loaded and isinstance(loaded[entry], Mapping):
            return unwrap_state_dict(loaded[entry], path)
    state = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: holds no tensors")
    return state


def official_to_realciao(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Official keys -> realciao keys: strip wrappers, file trunk keys under ``encoder.``, upsampler keys
    under ``upsampler.``, drop derived buffers (checking them)."""
    stripped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("generator.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        stripped[key] = value
    if any(k.startswith(("encoder.", "upsampler.")) for k in stripped):
        return stripped  # already realciao keys (a state dict saved without metadata)
    converted: dict[str, torch.Tensor] = {}
    for key, value in stripped.items():
        if key.endswith(DERIVED_SUFFIXES):
            if key.endswith("relative_position_index"):
                window = int(round(math.sqrt(value.shape[0])))
                if not torch.equal(value.long(), relative_position_index(window)):
                    raise CheckpointError(f"{path}: {key} is not the standard Swin relative position index")
            continue
        target = "upsampler." if key.startswith(UPSAMPLER_PREFIXES) else "encoder."
        converted[target + key] = value
    return converted


def infer_config(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Encoder type and sizes from the keys and shapes of a (converted) state dict: each
    registered encoder reads its own options (``Encoder.options_from_state_dict``)."""
    encoder = encoder_args = None
    for candidate in ENCODERS.values():
        try:
            encoder_args = candidate.options_from_state_dict(state)
        except KeyError as error:
            raise CheckpointError(f"{path}: expected key {error.args[0]!r} for a {candidate.name} encoder; "
                                  f"not found") from error
        if encoder_args is not None:
            encoder = candidate.name
            break
    if encoder is None:
        raise CheckpointError(f"{path}: no keys of a known encoder ({', '.join(ENCODERS)}) found")
    layer_regex = re.compile(r"upsampler\.imnet_q\.layers\.(\d+)\.weight")
    linear_indices = sorted(int(m.group(1)) for k in state if (m := layer_regex.match(k)))
    if len(linear_indices) < 2:
        raise CheckpointError(f"{path}: no CiaoSR upsampler keys (imnet_q.layers.*) found")
    mlp_hidden = [int(state[f"upsampler.imnet_q.layers.{i}.weight"].shape[0]) for i in linear_indices[:-1]]
    return {
        "name": generator_name(encoder),
        "encoder": encoder,
        "encoder_args": {k: [int(x) for x in v] if isinstance(v, list) else int(v) for k, v in encoder_args.items()},
        "mlp_hidden": mlp_hidden,
        "non_local": "upsampler.cs_attn.down.weight" in state,
    }
