"""torch.compile (inductor) on the upsampler's per-chunk function, against eager, in one process.

    python scripts/bench_compile.py                  # 48x48 -> x4, fp32, 5 interleaved pairs
    python scripts/bench_compile.py --lr 64 --scale 2 --repeats 7

``neighbour_attention.chunk_forward`` (the key and value MLPs over the four neighbours, the
logits, the softmax and the mix) is swapped for ``torch.compile(chunk_forward, dynamic=True)``
and whole-image upscaling is timed with each, alternately, after the compiled one has
compiled (its first call's time is printed apart). Prints the CPU, both medians, their ratio
and the largest output difference. realciao keeps eager: see the README's speed section.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lr", type=int, default=48, help="square LR side")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="timed (eager, compiled) pairs")
    parser.add_argument("--threads", type=int, default=2)
    add_json_argument(parser)
    args = parser.parse_args()

    import bench_generator

    import realciao
    from realciao.allocator import keep_freed_memory
    from realciao.archs import neighbour_attention
    from realciao.devices import describe_cpu

    keep_freed_memory()  # as realciao-upscale does on the CPU
    torch.set_num_threads(args.threads)
    print(f"{describe_cpu()}; {args.threads} threads")
    model, weights = bench_generator.load_model()
    lr = bench_generator.test_image(args.lr)
    size = (args.lr * args.scale, args.lr * args.scale)
    eager = neighbour_attention.chunk_forward
    compiled = torch.compile(eager, dynamic=True)

    def run(chunk_function) -> tuple[float, torch.Tensor]:
        neighbour_attention.chunk_forward = chunk_function
        try:
            start = time.perf_counter()
            out = realciao.upscale(model, lr, size)
            return time.perf_counter() - start, out
        finally:
            neighbour_attention.chunk_forward = eager

    run(eager)  # warm-up
    first, _ = run(compiled)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, function in (("eager", eager), ("compiled", compiled)):
            seconds, outputs[name] = run(function)
            times[name].append(seconds)
    eager_s, compiled_s = statistics.median(times["eager"]), statistics.median(times["compiled"])
    difference = (outputs["eager"] - outputs["compiled"]).abs().max().item()
    print(
        f"{args.lr}x{args.lr} -> x{args.scale}, fp32, {weights}; compiled's first call (compiling) {first:.1f} s"
    )
    print(
        f"eager median {eager_s:.3f} s, compiled median {compiled_s:.3f} s over {args.repeats} interleaved runs: "
        f"compiled is {eager_s / compiled_s:.2f}x eager; max |difference| {difference:.1e}"
    )
    if args.json:
        row = {
            "LR -> output": f"{args.lr}x{args.lr} -> x{args.scale}",
            "eager s (median)": f"{eager_s:.3f}",
            "compiled s (median)": f"{compiled_s:.3f}",
            "compiled speed / eager": f"{eager_s / compiled_s:.2f}x",
            "compiling s (first call)": f"{first:.1f}",
            "max abs difference": f"{difference:.1e}",
        }
        table = BenchmarkTable(columns=list(row), rows=[row])
        notes = [
            f"fp32, {weights}; {args.threads} threads; {args.repeats} interleaved (eager, compiled) pairs"
        ]
        print(f"wrote {write_results(args.json, 'compile', [table], notes)}")


if __name__ == "__main__":
    main()
