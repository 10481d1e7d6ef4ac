"""Training step speed and memory for EDSR-baseline-CiaoSR on this machine, against the
official algorithm measured in the same run.

    python scripts/bench_train.py                       # Net stage fp32 + bf16, GAN stage fp32
    python scripts/bench_train.py --stages net --precisions fp32 --steps 3
    python scripts/bench_train.py --stages net --precisions fp32 --steps 1 --no-baseline   # quick check

Net stage: batch 16, LR 48x48, 2304 sampled queries per patch, a scale U(1, 4) per batch,
forward + backward + Adam. GAN stage: batch 4, LR 32, whole rendered HR patches (sides
rounded to multiples of 8), L1 + VGG19 perceptual + GAN, then the discriminator step
(VGG weights random: speed does not depend on them). Data loading and degradation are
not included. Each configuration runs in its own process; median of the timed steps.
Like the trainer on the CPU, each process keeps freed memory (``realciao/allocator.py``).

Per stage, the baseline runs the same steps on the same batches (same seeds, threads and
allocator setting) with the generator's forward replaced by the official algorithm
(``scripts/official_ciaosr.py``: one fp32 pass over all queries, plain autograd); every
row shows its seconds and peak RSS and the ratio official / realciao.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from realciao.devices import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = "official"  # the child's "precision" that runs the baseline (fp32)
AUTO = "auto"  # the child's "precision" that decides as the trainer does, then runs in the choice


def net_step(model, optimizer, generator, dtype, batch=16, lr_size=48, queries=2304):
    from realciao.coords import pixel_centres

    scale = 1 + 3 * torch.rand(1, generator=generator).item()
    gt = round(lr_size * scale)
    lr = torch.rand(batch, 3, lr_size, lr_size, generator=generator) - 0.44
    picks = torch.rand(batch, gt * gt, generator=generator).argsort(1)[:, :queries]
    coord = torch.stack([pixel_centres(gt)[picks // gt], pixel_centres(gt)[picks % gt]], -1)
    cell = torch.full_like(coord, 2.0 / gt)
    target = torch.rand(batch, queries, 3, generator=generator) - 0.44
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        pred = generator_forward(model, dtype)(lr, coord, cell)
    loss = F.l1_loss(pred.float(), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def gan_step(model, discriminator, perceptual, opt_g, opt_d, generator, dtype, batch=4, lr_size=32):
    from realciao.coords import make_query_grid
    from realciao.train.losses import gan_loss

    scale = 1 + 3 * torch.rand(1, generator=generator).item()
    gt = max(8, round(lr_size * scale / 8) * 8)
    lr = torch.rand(batch, 3, lr_size, lr_size, generator=generator) - 0.44
    hr = torch.rand(batch, 3, gt, gt, generator=generator)
    coord, cell = make_query_grid(gt, gt, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        pred = generator_forward(model, dtype)(lr, coord, cell)
        sr = pred.float().view(batch, gt, gt, 3).permute(0, 3, 1, 2) + 0.44
        loss = F.l1_loss(sr, hr) + perceptual(sr, hr) + 0.1 * gan_loss(discriminator(sr), True)
    opt_g.zero_grad(set_to_none=True)
    loss.float().backward()
    opt_g.step()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss_d = gan_loss(discriminator(hr), True) + gan_loss(discriminator(sr.detach()), False)
    opt_d.zero_grad(set_to_none=True)
    loss_d.float().backward()
    opt_d.step()


def generator_forward(model, dtype):
    """realciao's forward, or for the baseline the official algorithm on the same weights."""
    if dtype != OFFICIAL:
        return model
    import official_ciaosr

    return lambda lr, coord, cell: official_ciaosr.official_forward(model, lr, coord, cell)


def child(stage: str, precision: str, steps: int, threads: int, keep_memory: bool = True) -> dict:
    import realciao
    from realciao.allocator import keep_freed_memory
    from realciao.archs.discriminator import UNetDiscriminatorSN
    from realciao.train.losses import PerceptualLoss

    torch.set_num_threads(threads)
    kept = keep_freed_memory() if keep_memory else False  # as the trainer does on the CPU
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr").train()
    chosen = auto_choice(model, stage) if precision == AUTO else {}
    precision = chosen.get("chose", precision)
    opt_g = torch.optim.Adam(model.parameters(), 1e-4, betas=(0.9, 0.99))
    if stage == "net":
        def step():
            net_step(model, opt_g, generator, precision)
    else:
        from torchvision.models import vgg19

        discriminator = UNetDiscriminatorSN().train()
        opt_d = torch.optim.Adam(discriminator.parameters(), 1e-4, betas=(0.9, 0.99))
        layers = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
        perceptual = PerceptualLoss(layers, vgg19(weights=None).state_dict())

        def step():
            gan_step(model, discriminator, perceptual, opt_g, opt_d, generator, precision)
    step()  # warm-up (allocator, oneDNN kernels)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {**chosen, "stage": stage, "precision": precision, "seconds": statistics.median(times), "steps": steps,
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "kept": kept,
              "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps}
    # one more step, untimed, to count its matmul and convolution FLOPs (forward and backward)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    result["flops"] = counter.get_total_flops()
    return result


def auto_choice(model, stage: str) -> dict:
    """What ``train.mixed_precision: auto`` picks for this stage's shapes, decided as the trainer
    decides (its probe, a fresh cache of this run's own), and how long deciding took."""
    import os
    import tempfile

    from realciao.autoprecision import CACHE_ENV, decide_precision
    from realciao.train.config import DataOptions
    from realciao.train.trainer import training_probe

    os.environ[CACHE_ENV] = str(Path(tempfile.mkdtemp(prefix="bench-auto-")) / "precision.json")
    data = (DataOptions(builtin_samples=True, batch_size=16, lr_patch=48, queries_per_patch=2304, scale_max=4.0)
            if stage == "net"
            else DataOptions(builtin_samples=True, batch_size=4, lr_patch=32, queries_per_patch=(32 * 4) ** 2,
                             scale_max=4.0))
    start = time.perf_counter()
    decision = decide_precision(AUTO, torch.device("cpu"), training_probe(model, data, torch.device("cpu")))
    return {"chose": decision.precision, "auto": decision.describe(), "decision_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default="net,gan")
    parser.add_argument("--precisions", default="fp32,bf16,auto", help="fp32, bf16 and auto (the trainer's "
                        "default: decided by measurement as it decides, then run in the choice)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-keep-memory", action="store_true", help="glibc's default allocator behaviour "
                        "(the trainer keeps freed memory on the CPU), to see what that setting is worth")
    parser.add_argument("--no-baseline", action="store_true", help="skip the official algorithm (quick runs)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, steps=args.steps, threads=args.threads,
                               keep_memory=not args.no_keep_memory)))
        return
    from bench_generator import higher_peaks, measured_peaks, official_cells, print_auto_choices, rate_cells

    print(f"{describe_cpu()}; {args.threads} threads")
    peaks = measured_peaks(args.threads)
    print(f"matrix-multiply peak before the runs, {args.threads} threads: fp32 {peaks['fp32']:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16']:.0f} GFLOP/s")
    rows, baselines = [], {}
    for stage in args.stages.split(","):
        runs = args.precisions.split(",") + ([] if args.no_baseline else [OFFICIAL])
        for precision in runs:
            cmd = [sys.executable, __file__, "--child", stage, precision, "--steps", str(args.steps),
                   "--threads", str(args.threads)] + (["--no-keep-memory"] if args.no_keep_memory else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{stage} {precision} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if precision == OFFICIAL:
                baselines[stage] = result
            else:
                rows.append(result)
    peaks = higher_peaks(peaks, args.threads)
    print("official = the same step with the official algorithm as the generator's forward "
          "(scripts/official_ciaosr.py, fp32), in the same run")
    print("| stage | precision | s/step (median) | it/s | peak RSS GiB | page faults/step | GFLOP/step | GFLOP/s (peak) "
          "| % of bound | official s/step | official peak RSS GiB | official / realciao time | official / realciao RSS |")
    print("| --- " * 13 + "|")
    for r in rows:
        official = official_cells(baselines.get(r["stage"]), r)
        rate, bound = rate_cells(r["flops"], r["seconds"], peaks[r["precision"]])
        shown = f"auto: {r['precision']}" if "chose" in r else r["precision"]
        print(f"| {r['stage']} | {shown} | {r['seconds']:.2f} | {1 / r['seconds']:.2f} | {r['peak_rss_gib']:.2f} | "
              f"{r['faults_per_step']:,.0f} | {r['flops'] / 1e9:.0f} | {rate} | {bound} | {official} |")
    print_auto_choices(rows, "stage")
    for stage, base in baselines.items():
        # what the counted work allows: realciao's FLOPs at the fp32 peak against the official step as measured
        ours = next((r for r in rows if r["stage"] == stage and r["precision"] == "fp32"), None)
        if ours:
            floor = ours["flops"] / (peaks["fp32"] * 1e9)
            print(f"{stage}: official {base['flops'] / 1e9:.0f} GFLOP/step at {base['flops'] / base['seconds'] / 1e9:.0f} "
                  f"GFLOP/s; realciao's {ours['flops'] / 1e9:.0f} GFLOP at the fp32 peak would take {floor:.2f} s: "
                  f"official / realciao fp32 can reach at most {base['seconds'] / floor:.1f}x on this CPU")

if __name__ == "__main__":
    main()
