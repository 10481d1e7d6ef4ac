"""scripts/gpu_check.sh: the one call a GPU machine runs. Its dry run executes every check on
the CPU at tiny sizes; here it must write a JSON and a Markdown report with every section,
and a check that fails or runs out of time must be recorded without stopping the others.

``.ci/run`` runs the dry run once before the suite and passes its folder in
``REALCIAO_GPU_CHECK_DRY_RUN``; the test then reads that report instead of running it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402
from gpu_check import CHECKS, Check, markdown, run_check, run_child  # noqa: E402

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    """The folder of a finished dry run: CI's (REALCIAO_GPU_CHECK_DRY_RUN), else one made here."""
    given = os.environ.get("REALCIAO_GPU_CHECK_DRY_RUN")
    if given and (Path(given) / "gpu_check.json").is_file():
        return Path(given)
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run(["bash", str(SCRIPT), str(out), "--dry-run"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out


@pytest.mark.slow
def test_the_dry_run_runs_every_check_and_reports_each(dry_run):
    report = json.loads((dry_run / "gpu_check.json").read_text())
    text = (dry_run / "gpu_check.md").read_text()
    assert report["meta"]["dry_run"] is True
    assert list(report["checks"]) == [c.name for c in CHECKS]
    for check in CHECKS:
        result = report["checks"][check.name]
        assert result["status"].startswith("ok"), (check.name, result.get("error"))
        assert result["rows"] and result["columns"], check.name
        assert f"## {check.title}" in text
        assert f"| {check.title} (`{check.name}`) | {result['status']} |" in text
    checks = report["checks"]

    def rows(name: str, *keys: str) -> set[tuple]:
        return {tuple(r.get(k) for k in keys) for r in checks[name]["rows"]}

    assert rows("generator", "config", "precision") == {
        (f"{n}x{n} -> x2", p) for n in (16, 20) for p in ("fp32", "bf16", "fp16")}
    assert all(r["finite"] for r in checks["generator"]["rows"] if r["precision"] != "fp16")
    assert rows("training", "stage", "precision") == {(s, p) for s in ("net", "gan") for p in ("fp32", "bf16")}
    assert len(checks["degradations"]["rows"]) == 2 and checks["degradations"]["rows"][0]["speed_up"] > 0
    assert rows("upscale_12mp", "precision", "out_mp") == {(p, m) for p in ("fp32", "bf16") for m in (0.004, 0.012)}
    assert checks["quickstart"]["passed"] is True and checks["quickstart"]["rows"][0]["iterations"] == 2
    assert rows("quickstart_check", "method") == {("bicubic",), ("quickstart",)}
    cuda_tests = {r["test"] for r in checks["cuda_tests"]["rows"]}
    assert any("test_fp16_tiles_that_overflow_are_redone_in_fp32" in t for t in cuda_tests)
    assert any("test_gan_stage_keeps_one_gradient_scaler_per_optimiser" in t for t in cuda_tests)
    if not torch.cuda.is_available():
        assert {r["outcome"] for r in checks["cuda_tests"]["rows"]} == {"skipped"}
    assert (dry_run / "experiments" / "gpu_quickstart" / "net_g_ema.safetensors").is_file()
    assert (dry_run / "quickstart_eval" / "results.json").is_file()


def test_a_check_out_of_time_is_stopped_and_recorded(tmp_path):
    environment = next(c for c in CHECKS if c.name == "environment")
    result = run_check(environment, tmp_path, dry_run=True, budget=0.2)  # importing torch alone takes longer
    assert result["status"] == "timeout"
    assert "stopped after its budget of 0.2 s" in result["error"]
    assert result["seconds"] < 30


def test_a_failing_check_is_recorded_with_what_it_measured(tmp_path, monkeypatch):
    def failing(ctx):
        ctx.columns(("a", "A"))
        ctx.row(a=1)
        raise ZeroDivisionError("on purpose")

    monkeypatch.setattr(gpu_check, "CHECKS", [*CHECKS, Check("failing", "Failing", 5, 5, failing)])
    assert run_child(tmp_path, "failing", dry_run=True) == 1
    part = json.loads((tmp_path / "parts" / "failing.json").read_text())
    assert part["rows"] == [{"a": 1}] and "ZeroDivisionError: on purpose" in part["error"]
    # in its own process the driver records a check that cannot even start, and goes on
    result = run_check(Check("missing", "Missing", 5, 5, failing), tmp_path, dry_run=True, budget=60)
    assert result["status"] == "error" and "StopIteration" in result["error"]


def test_markdown_shows_figures_criteria_and_errors():
    report = {
        "meta": {"dry_run": False, "device": "GPU X", "started": "now", "seconds": 12.0, "total_budget_s": 450,
                 "command": "bash scripts/gpu_check.sh OUTDIR"},
        "checks": {"generator": {
            "title": "Generator", "status": "failed", "seconds": 3.0, "budget_s": 60, "log": "logs/generator.log",
            "columns": [["config", "LR -> output"], ["seconds", "seconds"], ["vs_fp32_db", "vs fp32 dB"]],
            "rows": [{"config": "a|b", "seconds": 0.123456, "vs_fp32_db": None}],
            "notes": ["a note", "$ a command"], "passed": False,
            "criteria": [{"passed": False, "what": "within 40 dB"}], "error": "Traceback: boom"}},
    }
    text = markdown(report)
    assert "| Generator (`generator`) | failed | 3.0 | 60 |" in text
    assert "| LR -> output | seconds | vs fp32 dB |" in text and "| a\\|b | 0.1235 | - |" in text
    assert "- FAIL: within 40 dB" in text and "`$ a command`" in text and "Traceback: boom" in text


def test_the_script_needs_an_outdir_and_a_gpu_or_dry_run(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage: bash scripts/gpu_check.sh OUTDIR" in done.stderr
    if torch.cuda.is_available():
        return
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device here; use --dry-run" in done.stderr
    assert not (tmp_path / "out" / "gpu_check.json").exists()
