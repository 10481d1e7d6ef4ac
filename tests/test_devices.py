"""realciao.devices: the thread count and the precision each machine gets, with the
machine's facts (affinity, launcher environment, CPU capability) mocked."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from realciao import devices
from realciao.autoprecision import candidate_precisions
from realciao.devices import choose_threads, resolve_precision

ACCELERATE_CHILD = {"ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("environ,launcher,cores,expected", [
    ({}, None, 8, 8),  # plain python: every core of the affinity mask
    ({}, None, 3, 3),  # a process pinned to 3 cores by taskset or a container
    ({"LOCAL_WORLD_SIZE": "4"}, None, 16, 4),  # four local processes share 16 cores
    ({"OMP_NUM_THREADS": "6"}, None, 16, 6),  # the user's own setting
    (ACCELERATE_CHILD, {}, 16, 16),  # accelerate launch's default of 1: not the user's
    (ACCELERATE_CHILD, {"OMP_NUM_THREADS": "1"}, 16, 1),  # the user exported it for accelerate launch
    ({**ACCELERATE_CHILD, "LOCAL_WORLD_SIZE": "2"}, {}, 16, 8),
    (ACCELERATE_CHILD, None, 4, 4),  # launcher environment unreadable: the cores decide
])
def test_thread_count_decision(environ, launcher, cores, expected):
    choice = choose_threads(None, environ=environ, launcher=launcher, cores=cores)
    assert choice.count == expected, choice.reason


def test_an_explicit_thread_count_wins():
    choice = choose_threads(3, environ={"OMP_NUM_THREADS": "7"}, launcher=None, cores=16)
    assert choice.count == 3 and "threads option" in choice.reason


def test_the_launcher_environment_is_the_one_the_parent_started_with():
    """A child reads its parent's own environment, not the one the parent exported."""
    code = "from realciao.devices import launcher_environment as e; print(e().get('REALCIAO_PARENT_MARK'))"
    env = {"PATH": "/usr/bin:/bin", "REALCIAO_PARENT_MARK": "from-parent"}
    wrapper = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"
    done = subprocess.run([sys.executable, "-c", wrapper], env={**env, "PYTHONPATH": ":".join(sys.path)},
                          capture_output=True, text=True)
    assert done.stdout.strip() == "from-parent", done.stderr


@pytest.fixture
def cpu_caps(monkeypatch):
    """Set the CPU's capability string, flags and measured bf16 slowdown."""
    def apply(capability: str, flags: set[str], slowdown: float = 190.0):
        monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(devices, "_cache", {"flags": set(flags), "bf16_slowdown": slowdown})
    return apply


@pytest.mark.parametrize("capability,flags,slowdown,expected", [
    ("AVX2", {"avx2", "fma"}, 190.0, ["fp32"]),  # AMD EPYC with AVX2 only: bf16 emulated, not measured
    ("AVX512", {"avx512f", "avx512_bf16"}, 0.4, ["fp32", "bf16"]),  # capability says AVX512, the flags know better
    ("AMX", set(), 0.1, ["fp32", "bf16"]),
    ("AVX512_BF16", set(), 0.3, ["fp32", "bf16"]),
    ("DEFAULT", set(), 0.5, ["fp32", "bf16"]),  # flags unknown (not Linux): a micro-benchmark says native
    ("DEFAULT", set(), 40.0, ["fp32"]),
])
def test_auto_measures_bf16_only_where_the_cpu_runs_it_natively(cpu_caps, capability, flags, slowdown, expected):
    cpu_caps(capability, flags, slowdown)
    assert candidate_precisions(torch.device("cpu"))[0] == expected


def test_resolve_precision_takes_explicit_precisions_only():
    with pytest.raises(ValueError, match="decide_precision"):
        resolve_precision("auto", torch.device("cpu"))


def test_explicit_bf16_on_an_emulating_cpu_warns_once_with_the_slowdown(cpu_caps):
    cpu_caps("AVX2", {"avx2"}, 190.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
        resolve_precision("bf16", torch.device("cpu"))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "190x slower than fp32" in messages[0] and "fp32" in messages[0]


def test_native_bf16_gives_no_warning(cpu_caps):
    cpu_caps("AMX", set(), 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_cuda_candidates(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "is_bf16_supported", lambda: True)
    assert candidate_precisions(torch.device("cuda"))[0] == ["fp32", "bf16", "fp16"]
    monkeypatch.setattr(devices.torch.cuda, "is_bf16_supported", lambda: False)
    assert candidate_precisions(torch.device("cuda"))[0] == ["fp32", "fp16"]
    assert candidate_precisions(torch.device("mps"))[0] == ["fp32"]
