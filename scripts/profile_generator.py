"""Where an upscale's time goes: torch.profiler's operator table for one whole-image upscale
of EDSR-baseline-CiaoSR (the official-fixture weights where ../shared is present).

    python scripts/profile_generator.py 64 2          # 64x64 LR to x2, one thread
    python scripts/profile_generator.py 128 2 --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import realciao
from realciao.allocator import keep_freed_memory
from realciao.devices import describe_cpu

FIXTURE_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ciaosr_official" / "weights.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lr_size", type=int)
    parser.add_argument("scale", type=float)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    keep_freed_memory()  # as the commands do on the CPU
    torch.set_num_threads(args.threads)
    if FIXTURE_WEIGHTS.is_file():
        model = realciao.load_generator(FIXTURE_WEIGHTS)
    else:
        torch.manual_seed(0)
        model = realciao.build_generator("edsr-baseline-ciaosr").eval()
    lr = torch.rand(1, 3, args.lr_size, args.lr_size, generator=torch.Generator().manual_seed(0))
    size = (round(args.lr_size * args.scale), round(args.lr_size * args.scale))
    realciao.upscale(model, lr, size)  # warm-up
    print(f"{describe_cpu()}; {args.threads} thread(s); {args.lr_size}x{args.lr_size} -> {size[1]}x{size[0]}")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        realciao.upscale(model, lr, size)
        print(f"{time.perf_counter() - start:.2f} s under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
