"""``auto`` precision by measurement: the timing function is mocked, so these check the
decision, the cache and the commands' use of it, not this machine's speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from realciao import autoprecision, build_generator
from realciao.autoprecision import PrecisionProbe, choose_precision, decide_precision, pick_fastest

CPU = torch.device("cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU whose flags say it runs bf16 (AVX512-BF16), whatever this machine is."""
    monkeypatch.setattr(autoprecision, "cpu_runs_bf16_natively", lambda: True)


class FakeTimer:
    """Seconds per precision as given; counts the measurements."""

    def __init__(self, **seconds: float):
        self.seconds = seconds
        self.calls: list[str] = []

    def __call__(self, probe, precision):
        self.calls.append(precision)
        return self.seconds[precision]


PROBE = PrecisionProbe("toy model, 16x16 -> 32x32", lambda precision: None)


@pytest.mark.parametrize("fp32,bf16,expected", [
    (1.00, 0.50, "bf16"),  # bf16 twice as fast (the AMD EPYC of earlier sessions)
    (1.00, 1.55, "fp32"),  # bf16 slower (the Intel Xeon without AMX)
    (1.00, 0.96, "fp32"),  # bf16 faster by less than 5 %: not worth the accuracy
    (1.00, 0.94, "bf16"),  # just past the margin
])
def test_the_faster_precision_is_chosen_unless_within_five_percent(bf16_cpu, tmp_path, fp32, bf16, expected):
    timer = FakeTimer(fp32=fp32, bf16=bf16)
    decision = choose_precision(CPU, PROBE, timer=timer, path=tmp_path / "cache.json")
    assert decision.precision == expected
    assert sorted(timer.calls) == ["bf16", "fp32"] and decision.source == "measured"
    assert decision.seconds == {"fp32": fp32, "bf16": bf16}
    assert expected in decision.describe() and "ms" in decision.describe()


def test_gpu_candidates_include_fp16_and_the_fastest_wins(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    assert pick_fastest({"fp32": 1.0, "bf16": 0.4, "fp16": 0.3}) == "fp16"
    timer = FakeTimer(fp32=1.0, bf16=0.4, fp16=0.3)
    decision = choose_precision(torch.device("cuda"), PROBE, timer=timer, path=tmp_path / "c.json")
    assert decision.precision == "fp16" and sorted(timer.calls) == ["bf16", "fp16", "fp32"]


def test_a_cache_hit_skips_the_measurement(bf16_cpu, tmp_path):
    path = tmp_path / "cache.json"
    first = choose_precision(CPU, PROBE, timer=FakeTimer(fp32=1.0, bf16=0.5), path=path)
    timer = FakeTimer(fp32=1.0, bf16=2.0)  # would now pick fp32: a hit must not measure
    again = choose_precision(CPU, PROBE, timer=timer, path=path)
    assert timer.calls == [] and again.precision == first.precision == "bf16" and again.source == "cache"
    other = PrecisionProbe("another model", lambda precision: None)  # another key: measured
    assert choose_precision(CPU, other, timer=timer, path=path).precision == "fp32" and timer.calls
    assert len(json.loads(path.read_text())["decisions"]) == 2  # both kept


@pytest.mark.parametrize("content", ["{not json", "[]", '{"version": 1, "decisions": {"x": 3}}',
                                     '{"version": 99, "decisions": {}}'])
def test_a_corrupt_cache_file_is_ignored_and_rewritten(bf16_cpu, tmp_path, content):
    path = tmp_path / "cache.json"
    path.write_text(content)
    timer = FakeTimer(fp32=1.0, bf16=0.5)
    assert choose_precision(CPU, PROBE, timer=timer, path=path).precision == "bf16" and timer.calls
    data = json.loads(path.read_text())
    assert data["version"] == autoprecision.CACHE_VERSION and len(data["decisions"]) == 1


def test_a_corrupt_entry_for_this_key_is_measured_again(bf16_cpu, tmp_path):
    path = tmp_path / "cache.json"
    choose_precision(CPU, PROBE, timer=FakeTimer(fp32=1.0, bf16=0.5), path=path)
    data = json.loads(path.read_text())
    (key,) = data["decisions"]
    data["decisions"][key]["seconds"] = "garbage"
    path.write_text(json.dumps(data))
    timer = FakeTimer(fp32=1.0, bf16=2.0)
    assert choose_precision(CPU, PROBE, timer=timer, path=path).precision == "fp32" and timer.calls


def test_an_unwritable_cache_costs_only_a_measurement(bf16_cpu, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    decision = choose_precision(CPU, PROBE, timer=FakeTimer(fp32=1.0, bf16=0.5), path=blocker / "cache.json")
    assert decision.precision == "bf16"


def test_an_explicit_precision_wins(bf16_cpu, tmp_path, monkeypatch):
    monkeypatch.setenv(autoprecision.CACHE_ENV, str(tmp_path / "cache.json"))

    def never(probe, precision):
        raise AssertionError("an explicit precision must not be measured")

    monkeypatch.setattr(autoprecision, "time_probe", never)
    for asked in ("fp32", "bf16"):
        decision = decide_precision(asked, CPU, PROBE)
        assert decision.precision == asked and decision.describe() == f"{asked} (asked for)"
    assert not (tmp_path / "cache.json").exists()


def test_an_emulating_cpu_is_not_measured(monkeypatch, tmp_path):
    monkeypatch.setattr(autoprecision, "cpu_runs_bf16_natively", lambda: False)
    timer = FakeTimer(fp32=1.0, bf16=0.1)
    decision = choose_precision(CPU, PROBE, timer=timer, path=tmp_path / "c.json")
    assert decision.precision == "fp32" and timer.calls == [] and "emulated" in decision.describe()


def test_auto_without_a_model_is_fp32(bf16_cpu):
    assert decide_precision("auto", CPU, None).precision == "fp32"


def test_the_cache_lives_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(autoprecision.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert autoprecision.cache_path() == tmp_path / "realciao" / "precision.json"


def test_the_real_timer_runs_the_probe_and_the_probes_run(monkeypatch):
    """The probes the commands build run in both precisions on this CPU (tiny models)."""
    from realciao.inference import inference_probe
    from realciao.train.config import DataOptions
    from realciao.train.trainer import training_probe

    torch.manual_seed(0)
    model = build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16, 16]).eval()
    runs = []
    probe = PrecisionProbe("count", lambda precision: runs.append(precision))
    assert autoprecision.time_probe(probe, "fp32", repeats=3) >= 0 and runs == ["fp32"] * 4
    for scale in (1.7, 4.0, (2.0, 3.1)):
        inference_probe(model, scale).run("fp32")
    inference_probe(model, 8.0).run("bf16")  # few queries: bf16 may be emulated here
    assert inference_probe(model, 2.1).what == inference_probe(model, 1.9).what  # rounded to halves
    data = DataOptions(hr_folders=["unused"], lr_patch=8, batch_size=4, queries_per_patch=20, scale_max=2.0)
    train_probe = training_probe(model, data, CPU)
    before = [p.clone() for p in model.parameters()]
    train_probe.run("fp32")
    train_probe.run("bf16")
    assert "2x8x8, 20 queries" in train_probe.what
    assert all(p.grad is None for p in model.parameters())  # a copy is measured, not the model
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_commands_print_the_measured_choice_and_use_it(bf16_cpu, tmp_path, monkeypatch, capsys):
    """realciao-upscale and realciao-eval measure their own model once (cached after), print
    the figures, and run in the chosen precision."""
    from PIL import Image

    from realciao.checkpoint import save_generator
    from realciao.cli import evaluate, upscale

    monkeypatch.setenv(autoprecision.CACHE_ENV, str(tmp_path / "precision.json"))
    timed = []
    monkeypatch.setattr(autoprecision, "time_probe",
                        lambda probe, p: timed.append(probe.what) or {"fp32": 1.0, "bf16": 0.5}[p])
    torch.manual_seed(0)
    model = build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16, 16])
    model_file = str(save_generator(model, tmp_path / "tiny.safetensors"))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(photos / "a.png")
    args = ["-i", str(photos), "--model", model_file, "-s", "3", "--no-progress", "--threads", "1"]
    assert upscale.main([*args, "-o", str(tmp_path / "out1")]) == 0
    assert "cpu, bf16 (auto, measured: fp32 1000 ms, bf16 500 ms for upscale, model " in capsys.readouterr().err
    assert len(timed) == 2 and "21x21 -> 63x63" in timed[0]  # about 4096 output pixels at x3
    assert upscale.main([*args, "-o", str(tmp_path / "out2")]) == 0
    assert "bf16 (auto, cached measurement" in capsys.readouterr().err and len(timed) == 2
    eval_args = ["--real", str(photos), "--model", model_file, "--metrics", "piqe", "--scale", "3",
                 "--report-images", "0", "--threads", "1", "-o", str(tmp_path / "eval")]
    assert evaluate.main(eval_args) == 0
    assert "bf16 (auto, cached measurement" in capsys.readouterr().out and len(timed) == 2
    document = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert document["config"]["precision"] == "bf16"
