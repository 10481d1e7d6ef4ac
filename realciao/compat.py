"""The one place that imports basicsr.

basicsr 1.4.2 (its last release) imports ``torchvision.transforms.functional_tensor``,
which torchvision removed; since its package ``__init__`` imports every submodule, no
part of basicsr imports without a stand-in registered under that name first.
"""

from __future__ import annotations

import importlib
import sys
import types

_LEGACY_MODULE = "torchvision.transforms.functional_tensor"


def _register_functional_tensor_stand_in() -> None:
    if _LEGACY_MODULE in sys.modules:
        return
    try:
        importlib.import_module(_LEGACY_MODULE)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    stand_in = types.ModuleType(_LEGACY_MODULE)
    stand_in.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[_LEGACY_MODULE] = stand_in


def import_basicsr(submodule: str = "") -> types.ModuleType:
    """Import ``basicsr`` or ``basicsr.<submodule>`` with the torchvision stand-in in place."""
    _register_functional_tensor_stand_in()
    name = f"basicsr.{submodule}" if submodule else "basicsr"
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"could not import {name!r}: install realciao's dependencies with `pip install -e .` ({error})"
        ) from error
