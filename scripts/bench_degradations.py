"""Throughput of realciao's degradation engine next to the reference pipeline, same run.

Degrades batches of GT patches (default 16 x 256 x 256 -> 64 x 64) with a recipe (default
realesrgan.yml) and with Real-ESRGAN's pipeline assembled from basicsr 1.4.2's functions
(``reference_degradations.py``), kernel sampling included in both. Prints the median time
per batch over repeated batches after warm-up, GT patches per second, and the ratio. Runs
on CPU, and also on CUDA when available.

    python scripts/bench_degradations.py [--recipe realesrgan] [--batch 16] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from reference_degradations import ReferencePipeline, seed_reference

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.degradations import degrade, load_recipe
from realciao.devices import describe_cpu


def gt_patches(batch: int, size: int, seed: int) -> torch.Tensor:
    """Random crops of a natural photo (scikit-image's astronaut), so noise and JPEG see real content."""
    from skimage import data

    image = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float() / 255
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(batch):
        top = int(rng.integers(0, image.shape[1] - size + 1))
        left = int(rng.integers(0, image.shape[2] - size + 1))
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)


def median_seconds(run, device: torch.device, warmup: int, repeats: int) -> float:
    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        timed()
    return statistics.median(timed() for _ in range(repeats))


def bench(device: torch.device, args: argparse.Namespace) -> dict[str, str]:
    """Times both pipelines on ``device``, prints them, and returns the row of the results table."""
    recipe = load_recipe(args.recipe)
    gt = gt_patches(args.batch, args.gt_size, args.seed).to(device)
    lq_size = (args.lq_size, args.lq_size)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    reference = ReferencePipeline(device)
    seed_reference(args.seed)

    ours = median_seconds(lambda: degrade(gt, recipe, lq_size, generator), device, args.warmup, args.repeats)
    theirs = median_seconds(lambda: reference(gt, lq_size), device, args.warmup, args.repeats)
    label = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads"
    )
    print(
        f"[{label}] batch {args.batch} x {args.gt_size}^2 -> {args.lq_size}^2, median of {args.repeats} "
        f"after {args.warmup} warm-up"
    )
    print(f"  realciao {recipe.name:<11} {ours * 1e3:9.1f} ms/batch  {args.batch / ours:8.1f} GT patches/s")
    print(
        f"  reference (basicsr 1.4.2) {theirs * 1e3:9.1f} ms/batch  {args.batch / theirs:8.1f} GT patches/s"
    )
    print(f"  speed-up {theirs / ours:.2f}x")
    return {
        "device": label,
        "realciao ms/batch": f"{ours * 1e3:.1f}",
        "realciao GT patches/s": f"{args.batch / ours:.1f}",
        "reference ms/batch": f"{theirs * 1e3:.1f}",
        "reference GT patches/s": f"{args.batch / theirs:.1f}",
        "speed-up": f"{theirs / ours:.2f}x",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="realesrgan")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--gt-size", type=int, default=256)
    parser.add_argument("--lq-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
    add_json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{describe_cpu()}; {args.threads} threads")
    rows = [bench(torch.device("cpu"), args)]
    machine = describe_cpu()
    if torch.cuda.is_available() and not args.cpu_only:
        rows.append(bench(torch.device("cuda"), args))
        machine += f"; GPU: {torch.cuda.get_device_name()}"
    if args.json:
        table = BenchmarkTable(columns=list(rows[0]), rows=rows)
        notes = [
            f"recipe {args.recipe}, batch {args.batch} x {args.gt_size}^2 -> {args.lq_size}^2, median of "
            f"{args.repeats} after {args.warmup} warm-up, {args.threads} threads on the CPU; reference: Real-ESRGAN's pipeline from basicsr "
            f"1.4.2's functions (scripts/reference_degradations.py)"
        ]
        print(f"wrote {write_results(args.json, 'degradations', [table], notes, machine=machine)}")


if __name__ == "__main__":
    main()
