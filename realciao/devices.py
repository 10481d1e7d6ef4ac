"""Where and in what precision models run: device choice, the one precision vocabulary,
autocast, and the memory a device has free.

Precisions are named ``fp32``, ``bf16`` and ``fp16`` everywhere (upscaling, evaluation,
training's ``train.mixed_precision``). Reduced precision runs under autocast; inference
entry points first switch off any autocast their caller opened, so a caller's
``torch.autocast`` block cannot give the model mixed input types.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass

import torch

from realciao.errors import RealciaoError

LOGGER = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------
# Precision by capability
# ---------------------------------------------------------------------------------------

AUTO = "auto"
_CPU_FLAGS_FOR_BF16 = ("avx512_bf16", "amx_bf16")
_cache: dict = {}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    if "flags" not in _cache:
        flags: set[str] = set()
        try:
            with open("/proc/cpuinfo") as info:
                for line in info:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        _cache["flags"] = flags
    return _cache["flags"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def matmul_seconds(dtype: torch.dtype, side: int = 384, repeats: int = 3) -> float:
    """Median seconds of one (side x side) matrix product in ``dtype`` on the CPU."""
    import time

    a = torch.randn(side, side).to(dtype)
    b = torch.randn(side, side).to(dtype)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def cpu_bf16_slowdown() -> float:
    """How many times slower a bf16 matrix product is than fp32 here (measured once per process)."""
    if "bf16_slowdown" not in _cache:
        _cache["bf16_slowdown"] = matmul_seconds(torch.bfloat16) / max(matmul_seconds(torch.float32), 1e-9)
    return _cache["bf16_slowdown"]


def cpu_runs_bf16_natively() -> bool:
    """AVX512-BF16 or AMX (from the CPU's flags, or torch's capability string); where neither
    says, a one-off micro-benchmark: bf16 counts as native when it is not slower than fp32."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AMX" in capability or "BF16" in capability or cpu_flags() & set(_CPU_FLAGS_FOR_BF16):
        return True
    if cpu_flags():
        return False  # the flags are known and lack bf16: emulated
    return cpu_bf16_slowdown() <= 1.0


def resolve_precision(precision: str, device: torch.device) -> str:
    """An explicit precision, checked for the device; bf16 on a CPU that only emulates it is
    kept, with one warning giving the measured slowdown. ``auto`` is decided by measurement in
    ``realciao.autoprecision.decide_precision``, which calls this for explicit choices."""
    if precision == AUTO:
        raise ValueError(
            "resolve_precision takes an explicit precision; auto is decided by "
            "realciao.autoprecision.decide_precision"
        )
    check_precision(precision, device)
    if (
        precision == "bf16"
        and device.type == "cpu"
        and not cpu_runs_bf16_natively()
        and not _cache.get("warned")
    ):
        _cache["warned"] = True
        LOGGER.warning(
            f"warning: bf16 is emulated on this CPU ({cpu_model()}; no AVX512-BF16 or AMX): a bf16 matrix "
            f"product measured {cpu_bf16_slowdown():.0f}x slower than fp32 here. Choose fp32 "
            f"(--precision fp32, train.mixed_precision: fp32) or auto."
        )
    return precision


# ---------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    reason: str
    # the count came from the cores, not from the user: it may follow other processes' load
    # (``ThreadGovernor``)
    from_cores: bool = False


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def launcher_environment() -> dict[str, str] | None:
    """The environment the parent process (e.g. ``accelerate launch``) was started with, as the
    user set it; None where it cannot be read (not Linux)."""
    try:
        raw = open(f"/proc/{os.getppid()}/environ", "rb").read()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def choose_threads(
    requested: int | None = None,
    environ: dict[str, str] | None = None,
    launcher: dict[str, str] | None | bool = False,
    cores: int | None = None,
) -> ThreadChoice:
    """Threads for torch in this process: the user's number (a ``threads`` option or flag, or an
    ``OMP_NUM_THREADS`` they exported), else the available cores divided among the local
    processes. ``accelerate launch`` always exports OMP_NUM_THREADS to its children (1 unless
    the user had set it), so under it the value counts as the user's only when the launcher's
    own environment holds it (read from /proc/PPID/environ)."""
    environ = dict(os.environ) if environ is None else environ
    cores = available_cores() if cores is None else cores
    local = max(1, int(environ.get("LOCAL_WORLD_SIZE") or environ.get("ACCELERATE_NUM_PROCESSES") or 1))
    if requested:
        return ThreadChoice(int(requested), "asked for with the threads option")
    omp = environ.get("OMP_NUM_THREADS", "").strip()
    under_accelerate = "ACCELERATE_DYNAMO_BACKEND" in environ  # set in every process accelerate launches
    if omp.isdigit() and int(omp) > 0:
        if not under_accelerate:
            return ThreadChoice(int(omp), "OMP_NUM_THREADS set in the environment")
        parent = launcher_environment() if launcher is False else launcher
        if parent is not None and "OMP_NUM_THREADS" in parent:
            return ThreadChoice(int(omp), "OMP_NUM_THREADS set for accelerate launch")
    count = max(1, cores // local)
    return ThreadChoice(
        count, f"{cores} cores available to this process, {local} local process(es)", local == 1
    )


def configure_threads(requested: int | None = None) -> ThreadChoice:
    """Apply ``choose_threads`` to torch and return the choice (commands print it once)."""
    choice = choose_threads(requested)
    torch.set_num_threads(choice.count)
    return choice


def busy_cpu_seconds(cores: set[int] | None = None) -> float | None:
    """CPU seconds the cores of this process's affinity mask have spent not idle since boot,
    for every process on them, time stolen by the hypervisor included (Linux /proc/stat);
    None where it cannot be read."""
    cores = os.sched_getaffinity(0) if cores is None and hasattr(os, "sched_getaffinity") else cores
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    busy = 0
    for fields in lines:
        if cores is None or int(fields[0][3:]) in cores:
            values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Threads that give way to other processes. OpenMP threads spin-wait for each other at
    every parallel region, so when another process holds one of two cores the thread that
    shares it is descheduled and the other spins: with one core busy elsewhere, a 160 px image
    at x2 took 18-21 s on 2 threads against 8 s on one. ``adjust()``, called between pieces of
    work (images), measures the cores other processes used since the last call (busy time of
    this process's cores minus its own CPU time) and runs on the cores left, at most the
    chosen count. Only a count chosen from the cores follows the load; one the user set is kept."""

    MIN_WINDOW = 0.05  # seconds: /proc/stat counts in 10 ms ticks

    def __init__(self, choice: ThreadChoice, busy_seconds=None, clock=None, own_seconds=None):
        self.choice = choice
        self.busy_seconds = busy_seconds or busy_cpu_seconds
        self.clock, self.own_seconds = clock or time.perf_counter, own_seconds or time.process_time
        self.count = choice.count
        self.told = False
        self._mark = self._sample()

    def _sample(self) -> tuple[float | None, float, float]:
        return self.busy_seconds(), self.own_seconds(), self.clock()

    def others(self) -> float | None:
        """Cores used by other processes since the window began (None: unknown, or the window is
        still too short to tell; it then goes on), and a new window."""
        busy0, own0, wall0 = self._mark
        if self.clock() - wall0 < self.MIN_WINDOW:
            return None
        self._mark = busy1, own1, wall1 = self._sample()
        if busy0 is None or busy1 is None or wall1 <= wall0:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)

    def adjust(self) -> int:
        """Set torch's threads for the next piece of work (an image, a tile); returns the count."""
        others = self.others()
        if not self.choice.from_cores or others is None or self.choice.count < 2:
            return self.count
        count = max(1, min(self.choice.count, self.choice.count - math.floor(others + 0.5)))
        if count != self.count:
            torch.set_num_threads(count)
            if not self.told:
                self.told = True
                LOGGER.info(
                    f"other processes are using {others:.1f} of this process's {self.choice.count} cores: "
                    f"running on {count} thread(s) while they do (threads waiting on a busy core spin; "
                    f"--threads N fixes the count)"
                )
            self.count = count
        return count


def describe_cpu() -> str:
    """One line for benchmark output: the CPU model, torch's capability and whether bf16 is native."""
    native = (
        "native" if cpu_runs_bf16_natively() else f"emulated, {cpu_bf16_slowdown():.0f}x slower than fp32"
    )
    return (
        f"CPU: {cpu_model()}; {available_cores()} cores available; torch {torch.__version__}, capability "
        f"{torch.backends.cpu.get_cpu_capability()}; bf16 {native}"
    )
