"""realciao: real-world arbitrary-scale super-resolution with CiaoSR."""

from realciao.archs import GENERATORS, build_generator, register_encoder
from realciao.checkpoint import CheckpointError, load_generator, save_generator
from realciao.errors import RealciaoError
from realciao.inference import upscale
from realciao.upscaling import upscale_image
from realciao.version import __version__

__all__ = [
    "GENERATORS",
    "CheckpointError",
    "RealciaoError",
    "__version__",
    "build_generator",
    "load_generator",
    "register_encoder",
    "save_generator",
    "upscale",
    "upscale_image",
]
