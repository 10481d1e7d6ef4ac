"""realciao: real-world arbitrary-scale super-resolution with CiaoSR.

The public names load on first use (PEP 562), so a command that refuses its arguments
does so before torch is imported (about two seconds).
"""

from importlib import import_module

from realciao.errors import RealciaoError
from realciao.version import __version__

_PUBLIC = {
    "GENERATORS": "realciao.archs",
    "build_generator": "realciao.archs",
    "register_encoder": "realciao.archs",
    "CheckpointError": "realciao.checkpoint",
    "load_generator": "realciao.checkpoint",
    "save_generator": "realciao.checkpoint",
    "upscale": "realciao.inference",
    "upscale_image": "realciao.upscaling",
    "install_spandrel": "realciao.spandrel_support",  # imports spandrel and its architectures
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'realciao' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = [
    "GENERATORS",
    "CheckpointError",
    "RealciaoError",
    "__version__",
    "build_generator",
    "install_spandrel",
    "load_generator",
    "register_encoder",
    "save_generator",
    "upscale",
    "upscale_image",
]

