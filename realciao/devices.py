"""Where and in what precision models run: device choice, the one precision vocabulary,
autocast, and the memory a device has free.

Precisions are named ``fp32``, ``bf16`` and ``fp16`` everywhere (upscaling, evaluation,
training's ``train.mixed_precision``). Reduced precision runs under autocast; inference
entry points first switch off any autocast their caller opened, so a caller's
``torch.autocast`` block cannot give the model mixed input types.
"""

from __future__ import annotations

import contextlib

import torch

from realciao.errors import RealciaoError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(RealciaoError, ValueError):
    """A device or precision that this machine cannot provide."""


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple's MPS, then the CPU; or an explicit device that must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f"--device {name}: expected {DEVICE_CHOICES}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not mps_available():
            raise DeviceError(f"--device {name}: Apple's MPS backend is not available here; use --device cpu")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: expected {DEVICE_CHOICES}")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type not in ("cuda", "mps"):
        raise DeviceError(
            f"fp16 runs only on CUDA or Apple MPS GPUs (this model is on {device.type}); use bf16 for reduced "
            "precision on the CPU"
        )


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name; None for fp32."""
    return _DTYPES[precision]


def autocast(device: torch.device, precision: str):
    """Autocast for ``precision`` on ``device`` (plain fp32 when precision is fp32)."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def without_autocast(device: torch.device):
    """Leave any autocast the caller opened: inference code sets its own precision."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def available_memory(device: torch.device) -> int:
    """Bytes free for a tile's working set on the device (Linux MemAvailable on the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
