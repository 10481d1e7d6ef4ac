"""realciao: real-world arbitrary-scale super-resolution with CiaoSR."""

from realciao.archs import GENERATORS, build_generator
from realciao.checkpoint import CheckpointError, load_generator, save_generator
from realciao.inference import upscale
from realciao.version import __version__

__all__ = [
    "GENERATORS",
    "CheckpointError",
    "__version__",
    "build_generator",
    "load_generator",
    "save_generator",
    "upscale",
]
