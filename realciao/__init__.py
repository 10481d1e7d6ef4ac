"""realciao: real-world arbitrary-scale super-resolution with CiaoSR."""

from realciao.version import __version__

__all__ = ["__version__"]
