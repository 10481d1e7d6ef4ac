"""Threads against processes on the CPU, with the quickstart's model: one process on one
thread, one process on every core's thread, and one process per core (gloo) of one thread.

    python scripts/bench_processes.py                  # 120 iterations each
    python scripts/bench_processes.py --iterations 60

Each run is ``options/quickstart.yml`` cut to ``--iterations`` (checkpoints off, the one
validation at the end), written to a temporary folder together with its experiment. Batch
8 (the quickstart's) is per process, so the process run trains twice the patches per iteration. Prints the CPU,
each command's wall time (start-up and the final validation included), its training-loop
time as the progress bar reports it, and patches per second of the loop against the
one-thread run, all measured in this one invocation.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.devices import available_cores, describe_cpu

ROOT = Path(__file__).resolve().parents[1]

LOOP_TIME = re.compile(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<")  # tqdm's "120/120 [00:54<"


def cut_options(iterations: int, folder: Path) -> tuple[Path, int]:
    """The cut options file, and the batch per process."""
    options = yaml.safe_load((ROOT / "options" / "quickstart.yml").read_text())
    options.update(name="bench_processes", output_dir=str(folder / "experiments"))
    options["train"]["iterations"] = iterations
    options["train"]["schedule"]["milestones"] = [max(1, iterations * 3 // 4)]
    options["checkpoint"]["every"] = options["validation"]["every"] = 10 * iterations
    path = folder / "options.yml"
    path.write_text(yaml.safe_dump(options))
    return path, options["data"]["batch_size"]


def loop_seconds(output: str, iterations: int) -> float:
    """The progress bar's elapsed time when it reached the last iteration."""
    for match in LOOP_TIME.finditer(output):
        if int(match.group(1)) == iterations:
            hours, minutes, seconds = (int(g or 0) for g in match.groups()[2:])
            return 3600 * hours + 60 * minutes + seconds
    raise SystemExit("no progress line for the last iteration in the run's output")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=120)
    add_json_argument(parser)
    args = parser.parse_args()
    cores = available_cores()
    print(f"{describe_cpu()}")
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    runs = [
        ("1 process, 1 thread", 1, {"OMP_NUM_THREADS": "1"}, launch),
        (f"1 process, {cores} threads", 1, {}, launch),
        (
            f"{cores} processes, 1 thread each", cores, {"ACCELERATE_USE_CPU": "1"},
            launch
            + [
                "--multi_gpu", "--num_processes", str(cores), "--num_machines", "1", "--mixed_precision",
                "no", "--dynamo_backend", "no",
            ],
        ),
    ]
    base_rate = None
    rows = []
    for label, processes, extra_env, command in runs:
        with tempfile.TemporaryDirectory() as scratch:
            options, batch = cut_options(args.iterations, Path(scratch))
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | extra_env
            start = time.perf_counter()
            done = subprocess.run(
                command + [str(ROOT / "train_realciao.py"), "-opt", str(options)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"{label}: failed\n{done.stderr[-3000:]}")
        loop = loop_seconds(done.stdout + done.stderr, args.iterations)
        rate = args.iterations * batch * processes / loop
        base_rate = base_rate or rate
        print(
            f"{label}: {wall:.0f} s in all, training loop {loop:.0f} s, {rate:.1f} patches/s "
            f"({rate / base_rate:.2f}x the one-thread run)",
            flush=True,
        )
        rows.append(
            {
                "run": label,
                "s in all": f"{wall:.0f}",
                "training loop s": f"{loop:.0f}",
                "patches/s": f"{rate:.1f}",
                "against the one-thread run": f"{rate / base_rate:.2f}x",
            }
        )
    if args.json:
        notes = [f"options/quickstart.yml cut to {args.iterations} iterations, batch {batch} per process"]
        print(
            f"wrote {write_results(args.json, 'processes', [BenchmarkTable(columns=list(rows[0]), rows=rows)], notes)}"
        )


if __name__ == "__main__":
    main()
