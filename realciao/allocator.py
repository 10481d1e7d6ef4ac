"""Keep freed host memory in the process (glibc only): training, upscaling and evaluation.

Training steps and the upsampler's query chunks allocate and free the same few-MB to
few-hundred-MB buffers over and over. glibc's defaults hand large blocks back to the
kernel on free (mmap above a threshold, trimming of the heap top), so the next chunk
touches fresh pages again:
- about 680,000 page faults per EDSR-baseline-CiaoSR Net step on a 2-core machine, about
  17,000 with these settings, and 0.3-0.6 s less per step (``scripts/bench_train.py``
  with and without ``--no-keep-memory``);
- about 440,000-560,000 page faults per 48x48 -> x4 image and a third of its wall time
  (2.83 s against 1.93 s), about 3,000 with these settings (``scripts/bench_generator.py``
  with and without ``--no-keep-memory``); at 96x96 -> x2 glibc's own threshold adapts and
  little changes.
The memory kept is what the process already reached at its peak; it is not given back
until the process ends, which suits commands that run the same work many times.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and never trim it; True when glibc took the settings."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = ctypes.CDLL(name).mallopt
    # mallopt returns 1 on success; -1 for the trim threshold means "never trim"
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
