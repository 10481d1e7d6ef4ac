"""Threads under contention: `realciao-upscale` of one photo with the default thread count,
with `--threads 1` and with `--threads N` (N = the cores: the default before the default
followed other processes' load), on a quiet machine and with one core held by another process
(a busy loop), all in one run, interleaved, medians.

    python scripts/bench_threads.py                      # 160 px at x2, 3 runs per case
    python scripts/bench_threads.py --size 96 --repeats 1 # quick check

Each run is a fresh `realciao-upscale` process (what a user runs); the figure is the upscaling
time the command reports (reading the model and imports excluded), and the process's wall
time beside it. Targets (issue 27): busy, default <= 1.3x `--threads 1`; quiet, default within
5 % of `--threads N`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import realciao
from realciao.benchmarks import BenchmarkTable, add_json_argument, table_markdown, write_results
from realciao.devices import available_cores, describe_cpu

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_WEIGHTS = ROOT.parent / "shared" / "fixtures" / "ciaosr_official" / "weights.safetensors"
BUSY_LOOP = "while True:\n    pass\n"


def model_file(folder: Path) -> tuple[Path, str]:
    if FIXTURE_WEIGHTS.is_file():
        return FIXTURE_WEIGHTS, "official-fixture EDSR-baseline-CiaoSR weights"
    torch.manual_seed(0)
    path = realciao.save_generator(
        realciao.build_generator("edsr-baseline-ciaosr").eval(), folder / "model.safetensors"
    )
    return path, "EDSR-baseline-CiaoSR, random init (../shared absent)"


def photo(folder: Path, side: int) -> Path:
    """A photo-like test image: smooth gradients plus texture (content does not change the work)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200 + rng.normal(0, 20, (side, side, 3))
    path = folder / "photos" / f"photo_{side}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path)
    return path


def upscale_once(
    model: Path, image: Path, scale: float, threads: int | None, out: Path
) -> tuple[float, float, str]:
    """(upscaling seconds the command reports, process wall seconds, its thread line)."""
    cmd = [
        sys.executable,
        "-m",
        "realciao.cli.upscale",
        "-i",
        str(image),
        "-o",
        str(out),
        "--model",
        str(model),
        "-s",
        str(scale),
        "--overwrite",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    seconds = float(re.search(r"megapixels in ([0-9.]+) s", done.stdout).group(1))
    gave_way = "running on 1 thread" in done.stderr
    return seconds, wall, "gave way to the other process" if gave_way else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=160, help="LR side in pixels")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    add_json_argument(parser)
    args = parser.parse_args()
    cores = available_cores()
    print(f"{describe_cpu()}")
    cases = [("default", None), ("--threads 1", 1), (f"--threads {cores}", cores)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, what = model_file(folder)
        image = photo(folder, args.size)
        setting = f"realciao-upscale, {what}, {args.size}x{args.size} -> x{args.scale:g}, fp32, median of {args.repeats}"
        print(setting)
        times: dict[tuple[str, str], list[float]] = {}
        walls: dict[tuple[str, str], list[float]] = {}
        notes: dict[tuple[str, str], set[str]] = {}
        for repeat in range(args.repeats):
            for load in ("quiet", "one core busy"):
                busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load != "quiet" else None
                try:
                    if busy is not None:
                        time.sleep(0.5)  # the loop is running before the command starts
                    for label, threads in cases:
                        seconds, wall, note = upscale_once(model, image, args.scale, threads, folder / "out")
                        times.setdefault((load, label), []).append(seconds)
                        walls.setdefault((load, label), []).append(wall)
                        notes.setdefault((load, label), set()).add(note)
                        print(f"  run {repeat + 1}, {load}, {label}: {seconds:.1f} s", file=sys.stderr)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
    columns = ["machine", "threads", "upscaling s (median)", "process wall s (median)", "runs", "note"]
    rows = []
    for (load, label), values in times.items():
        note = "; ".join(sorted(n for n in notes[(load, label)] if n))
        cells = [
            load,
            label,
            f"{statistics.median(values):.2f}",
            f"{statistics.median(walls[(load, label)]):.2f}",
            str(len(values)),
            note,
        ]
        rows.append(dict(zip(columns, cells)))
    table = BenchmarkTable(columns=columns, rows=rows)
    print(table_markdown(table))
    median = {key: statistics.median(values) for key, values in times.items()}
    busy_ratio = median[("one core busy", "default")] / median[("one core busy", "--threads 1")]
    quiet_ratio = median[("quiet", "default")] / median[("quiet", f"--threads {cores}")]
    print(
        f"one core busy: default / --threads 1 = {busy_ratio:.2f}x (target <= 1.3x); "
        f"without giving way (--threads {cores}) / --threads 1 = "
        f"{median[('one core busy', f'--threads {cores}')] / median[('one core busy', '--threads 1')]:.2f}x"
    )
    print(
        f"quiet: default / --threads {cores} (the default before it followed the load) = {quiet_ratio:.2f}x "
        f"(target <= 1.05x); --threads 1 / --threads {cores} = "
        f"{median[('quiet', '--threads 1')] / median[('quiet', f'--threads {cores}')]:.2f}x"
    )
    if args.json:
        print(f"wrote {write_results(args.json, 'threads', [table], [setting])}")


if __name__ == "__main__":
    main()
