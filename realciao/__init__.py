"""realciao: real-world arbitrary-scale super-resolution with CiaoSR."""

# the command-line module realciao/upscale.py is imported before the name `upscale` is bound
# to the function below: a later `import realciao.upscale` then leaves the function in place
from realciao import upscale as _upscale_cli  # noqa: F401
from realciao.archs import GENERATORS, build_generator
from realciao.checkpoint import CheckpointError, load_generator, save_generator
from realciao.inference import upscale
from realciao.upscale import upscale_image
from realciao.version import __version__

__all__ = [
    "GENERATORS",
    "CheckpointError",
    "__version__",
    "build_generator",
    "load_generator",
    "save_generator",
    "upscale",
    "upscale_image",
]
