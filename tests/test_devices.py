"""realciao.devices: the thread count and the precision each machine gets, with the
machine's facts (affinity, launcher environment, CPU capability) mocked."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from realciao import devices
from realciao.autoprecision import candidate_precisions
from realciao.devices import choose_threads, resolve_precision

ACCELERATE_CHILD = {"ACCELERATE_DYNAMO_BACKEND": "NO", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    "environ,launcher,cores,expected",
    [
        ({}, None, 8, 8),  # plain python: every core of the affinity mask
        ({}, None, 3, 3),  # a process pinned to 3 cores by taskset or a container
        ({"LOCAL_WORLD_SIZE": "4"}, None, 16, 4),  # four local processes share 16 cores
        ({"OMP_NUM_THREADS": "6"}, None, 16, 6),  # the user's own setting
        (ACCELERATE_CHILD, {}, 16, 16),  # accelerate launch's default of 1: not the user's
        (ACCELERATE_CHILD, {"OMP_NUM_THREADS": "1"}, 16, 1),  # the user exported it for accelerate launch
        ({**ACCELERATE_CHILD, "LOCAL_WORLD_SIZE": "2"}, {}, 16, 8),
        (ACCELERATE_CHILD, None, 4, 4),  # launcher environment unreadable: the cores decide
    ],
)
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
    done = subprocess.run(
        [sys.executable, "-c", wrapper],
        env={**env, "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "from-parent", done.stderr


@pytest.fixture
def cpu_caps(monkeypatch):
    """Set the CPU's capability string, flags and measured bf16 slowdown."""

    def apply(capability: str, flags: set[str], slowdown: float = 190.0):
        monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(devices, "_cache", {"flags": set(flags), "bf16_slowdown": slowdown})

    return apply


@pytest.mark.parametrize(
    "capability,flags,slowdown,expected",
    [
        ("AVX2", {"avx2", "fma"}, 190.0, ["fp32"]),  # AMD EPYC with AVX2 only: bf16 emulated, not measured
        (
            "AVX512",
            {"avx512f", "avx512_bf16"},
            0.4,
            ["fp32", "bf16"],
        ),  # capability says AVX512, the flags know better
        ("AMX", set(), 0.1, ["fp32", "bf16"]),
        ("AVX512_BF16", set(), 0.3, ["fp32", "bf16"]),
        ("DEFAULT", set(), 0.5, ["fp32", "bf16"]),  # flags unknown (not Linux): a micro-benchmark says native
        ("DEFAULT", set(), 40.0, ["fp32"]),
    ],
)
def test_auto_measures_bf16_only_where_the_cpu_runs_it_natively(
    cpu_caps, capability, flags, slowdown, expected
):
    cpu_caps(capability, flags, slowdown)
    assert candidate_precisions(torch.device("cpu"))[0] == expected


def test_resolve_precision_takes_explicit_precisions_only():
    with pytest.raises(ValueError, match="decide_precision"):
        resolve_precision("auto", torch.device("cpu"))


def test_explicit_bf16_on_an_emulating_cpu_warns_once_with_the_slowdown(cpu_caps, capsys):
    cpu_caps("AVX2", {"avx2"}, 190.0)
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    resolve_precision("bf16", torch.device("cpu"))
    captured = capsys.readouterr()
    messages = captured.err.splitlines()  # a warning: on stderr, as the commands show it
    assert len(messages) == 1 and "190x slower than fp32" in messages[0] and "fp32" in messages[0]
    assert captured.out == "" and messages[0].startswith("warning: bf16 is emulated")


def test_native_bf16_gives_no_warning(cpu_caps, capsys):
    cpu_caps("AMX", set(), 0.1)
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert capsys.readouterr() == ("", "")


def test_cuda_candidates(monkeypatch):
    monkeypatch.setattr(devices.torch.cuda, "is_bf16_supported", lambda: True)
    assert candidate_precisions(torch.device("cuda"))[0] == ["fp32", "bf16", "fp16"]
    monkeypatch.setattr(devices.torch.cuda, "is_bf16_supported", lambda: False)
    assert candidate_precisions(torch.device("cuda"))[0] == ["fp32", "fp16"]
    assert candidate_precisions(torch.device("mps"))[0] == ["fp32"]


class FakeMachine:
    """A clock, this process's CPU time and the busy time of its cores, advanced by hand."""

    def __init__(self):
        self.wall = self.own = self.busy = 0.0

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)


def governor_on(machine: FakeMachine, choice):
    return devices.ThreadGovernor(
        choice,
        busy_seconds=lambda: machine.busy,
        clock=lambda: machine.wall,
        own_seconds=lambda: machine.own,
    )


def test_threads_give_way_while_another_process_holds_a_core_and_come_back(monkeypatch, capsys):
    counts = []
    monkeypatch.setattr(devices.torch, "set_num_threads", counts.append)
    machine = FakeMachine()
    governor = governor_on(machine, choose_threads(None, environ={}, launcher=None, cores=2))
    machine.run(1.0, own_cores=1.0, other_cores=0.05)  # quiet: loading the model
    assert governor.adjust() == 2 and counts == []
    machine.run(2.0, own_cores=4 / 3, other_cores=2 / 3)  # a busy loop elsewhere: 3 threads share 2 cores
    assert governor.adjust() == 1 and counts == [1]
    told = capsys.readouterr().out.splitlines()
    assert len(told) == 1 and "0.7 of this process's 2 cores" in told[0] and "--threads" in told[0]
    machine.run(2.0, own_cores=1.0, other_cores=1.0)  # still busy: stays at one, says nothing more
    assert governor.adjust() == 1 and counts == [1]
    machine.run(2.0, own_cores=1.0, other_cores=0.0)  # the other process ended
    assert governor.adjust() == 2 and counts == [1, 2]
    told += capsys.readouterr().out.splitlines()
    assert len(told) == 1


def test_a_window_too_short_to_tell_goes_on(monkeypatch):
    monkeypatch.setattr(devices.torch, "set_num_threads", lambda n: None)
    machine = FakeMachine()
    governor = governor_on(machine, choose_threads(None, environ={}, launcher=None, cores=2))
    machine.run(0.01, own_cores=0.0, other_cores=1.0)
    assert governor.adjust() == 2  # 10 ms: one /proc/stat tick, not enough
    machine.run(0.2, own_cores=1.0, other_cores=1.0)
    assert governor.adjust() == 1  # the window went on and now tells


@pytest.mark.parametrize(
    "choice",
    [
        choose_threads(2, environ={}, launcher=None, cores=2),  # --threads 2: the user's count is kept
        choose_threads(None, environ={"OMP_NUM_THREADS": "2"}, launcher=None, cores=2),
        choose_threads(
            None, environ={"LOCAL_WORLD_SIZE": "2"}, launcher=None, cores=4
        ),  # siblings share the cores
    ],
)
def test_a_count_the_user_chose_or_processes_share_is_kept(monkeypatch, choice):
    monkeypatch.setattr(devices.torch, "set_num_threads", lambda n: pytest.fail("must not change"))
    machine = FakeMachine()
    governor = governor_on(machine, choice)
    machine.run(2.0, own_cores=1.0, other_cores=1.0)
    assert governor.adjust() == choice.count


def test_the_busy_time_of_this_machines_cores_is_read():
    first = devices.busy_cpu_seconds()
    assert first is not None and first > 0
    assert devices.busy_cpu_seconds({10**6}) == 0  # a core that does not exist: nothing
