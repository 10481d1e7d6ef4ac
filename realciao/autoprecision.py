"""``auto`` precision by measurement: the faster of the precisions this device runs, timed on
a short run of the command's own model at the sizes the command will use, decided once per
device, torch version, thread count and model configuration and kept in the user's cache.

CPU flags do not decide it: on an Intel Xeon with AVX512-BF16 and no AMX a bf16 matrix
product of the upsampler's shapes ran at 75 GFLOP/s against 102 in fp32, while an AMD EPYC
with the same flag ran bf16 about twice as fast as fp32. A reduced precision is chosen only
when it is more than ``MARGIN`` faster than fp32, so noise never trades accuracy for nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from realciao.devices import AUTO, cpu_model, cpu_runs_bf16_natively, resolve_precision
from realciao.files import atomic_write

MARGIN = 0.05  # a reduced precision must be more than 5 % faster than fp32 to be chosen
CACHE_ENV = "REALCIAO_PRECISION_CACHE"  # a file path that overrides the cache's place (tests, clusters)
CACHE_VERSION = 1


@dataclass(frozen=True)
class PrecisionProbe:
    """A short run of the work a command is about to do, in a given precision.

    ``what`` names the model configuration and shapes (it is part of the cache key: a probe
    of other shapes measures again); ``run(precision)`` does the work once."""

    what: str
    run: Callable[[str], None]


@dataclass(frozen=True)
class PrecisionDecision:
    precision: str
    seconds: dict[str, float] = field(default_factory=dict)  # median seconds of the probe per candidate
    source: str = "measured"  # measured, cache, only candidate
    why: str = ""

    def describe(self) -> str:
        """One line for the user: the choice and the figures it rests on."""
        if self.source == "asked for":
            return f"{self.precision} (asked for)"
        if not self.seconds:
            return f"{self.precision} (auto: {self.why})"
        figures = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in self.seconds.items())
        told = "cached measurement" if self.source == "cache" else "measured"
        return f"{self.precision} (auto, {told}: {figures} for {self.why})"


def candidate_precisions(device: torch.device) -> tuple[list[str], str]:
    """The precisions ``auto`` chooses between on this device, and why only fp32 where that is all."""
    if device.type == "cuda":
        return (["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]), ""
    if device.type == "cpu":
        if cpu_runs_bf16_natively():
            return ["fp32", "bf16"], ""
        return ["fp32"], "bf16 is emulated on this CPU (no AVX512-BF16 or AMX)"
    return ["fp32"], f"reduced precision is not measured on {device.type}"


def synchronize() -> None:
    """Wait for queued GPU work: CUDA kernels run asynchronously, so a run ends when they do."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_probe(probe: PrecisionProbe, precision: str, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""
    probe.run(precision)
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        probe.run(precision)
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pick_fastest(seconds: dict[str, float]) -> str:
    """The fastest precision, unless fp32 is within ``MARGIN`` of it (then fp32)."""
    fastest = min(seconds, key=seconds.get)
    if "fp32" in seconds and seconds["fp32"] <= seconds[fastest] * (1 + MARGIN):
        return "fp32"
    return fastest


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"
    return device.type


def cache_key(device: torch.device, probe: PrecisionProbe) -> str:
    text = f"{device_name(device)}|torch {torch.__version__}|{torch.get_num_threads()} threads|{probe.what}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_path() -> Path:
    """``REALCIAO_PRECISION_CACHE``, else ``precision.json`` in the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("realciao")) / "precision.json"


def read_cache(path: Path) -> dict:
    """The cached decisions; an unreadable or malformed file counts as empty (it is rewritten)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if (
        not isinstance(data, dict)
        or data.get("version") != CACHE_VERSION
        or not isinstance(data.get("decisions"), dict)
    ):
        return {}
    return {key: entry for key, entry in data["decisions"].items() if cached_decision(entry) is not None}


def cached_decision(entry) -> PrecisionDecision | None:
    try:
        seconds = {str(k): float(v) for k, v in entry["seconds"].items()}
        return PrecisionDecision(pick_fastest(seconds), seconds, "cache", str(entry["what"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def write_cache(path: Path, decisions: dict) -> None:
    """Best effort: a cache that cannot be written costs a measurement next time, nothing else."""
    try:
        atomic_write(path, json.dumps({"version": CACHE_VERSION, "decisions": decisions}, indent=1).encode())
    except OSError:
        pass


def choose_precision(
    device: torch.device, probe: PrecisionProbe, timer=None, path: Path | None = None
) -> PrecisionDecision:
    """What ``auto`` means for this probe on this device: measured once, then read from the cache."""
    candidates, why_only = candidate_precisions(device)
    if len(candidates) == 1:
        return PrecisionDecision(candidates[0], {}, "only candidate", why_only)
    path = cache_path() if path is None else path
    key = cache_key(device, probe)
    decisions = read_cache(path)
    if key in decisions and (decision := cached_decision(decisions[key])) is not None:
        return decision
    timer = timer or time_probe
    seconds = {precision: timer(probe, precision) for precision in candidates}
    decisions = read_cache(path)  # another process may have written meanwhile: keep its entries
    decisions[key] = {
        "what": probe.what,
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_cache(path, decisions)
    return PrecisionDecision(pick_fastest(seconds), seconds, "measured", probe.what)


def decide_precision(
    asked: str, device: torch.device, probe: PrecisionProbe | None = None
) -> PrecisionDecision:
    """The precision a command runs in: an explicit one as asked (checked, never overridden);
    ``auto`` measured on ``probe`` (fp32 where there is nothing of a model's to measure)."""
    if asked != AUTO:
        return PrecisionDecision(resolve_precision(asked, device), {}, "asked for", "asked for")
    if probe is None:
        return PrecisionDecision("fp32", {}, "no model", "no model of realciao's to measure")
    return choose_precision(device, probe)


def model_digest(model: torch.nn.Module) -> str:
    """A short name for a model's configuration: its parameters' names and shapes (not values),
    so checkpoints of one architecture share a decision."""
    layout = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    return hashlib.sha256(layout.encode()).hexdigest()[:12]


__all__ = [
    "MARGIN",
    "PrecisionDecision",
    "PrecisionProbe",
    "cache_path",
    "candidate_precisions",
    "choose_precision",
    "decide_precision",
    "model_digest",
    "pick_fastest",
    "time_probe",
]
