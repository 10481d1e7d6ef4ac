"""Training step speed and memory for EDSR-baseline-CiaoSR on this machine, against the
official algorithm measured in the same run. The step timed is the trainer's own
(``realciao.train.steps.net_step`` / ``gan_step``), on random batches.

    python scripts/bench_train.py                       # Net stage fp32 + bf16, GAN stage fp32
    python scripts/bench_train.py --stages net --precisions fp32 --steps 3
    python scripts/bench_train.py --stages net --precisions fp32 --steps 1 --no-baseline   # quick check

Net stage: batch 16, LR 48x48, 2304 sampled queries per patch, a scale U(1, 4) per batch,
forward + backward + Adam + EMA update. GAN stage: batch 4, LR 32, whole rendered HR patches
(sides rounded to multiples of 8), L1 + VGG19 perceptual + GAN, then the discriminator step
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
from torch import nn

from realciao.benchmarks import BenchmarkTable, add_json_argument, table_markdown, write_results
from realciao.devices import describe_cpu
from realciao.train import steps as train_steps

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = "official"  # the child's "precision" that runs the baseline (fp32)
AUTO = "auto"  # the child's "precision" that decides as the trainer does, then runs in the choice


def training_step(
    stage: str,
    precision: str,
    batch: int,
    lr_size: int,
    queries: int = 2304,
    device: str = "cpu",
    model_options: dict | None = None,
    discriminator_channels: int = 64,
    perceptual=None,
    official: bool = False,
):
    """One training step of the trainer (``realciao.train.steps``), as a function of nothing: a fresh
    EDSR-baseline-CiaoSR (and U-Net discriminator), Adam, the default loss set of the stage, and a
    new random batch at each call (a scale U(1, 4); GAN: GT sides rounded to multiples of 8).
    ``perceptual``: the GAN stage's ``PerceptualLoss``; ``official``: the generator's forward is
    the official algorithm on the same weights (fp32)."""
    from accelerate import Accelerator

    import realciao
    from realciao.archs.discriminator import UNetDiscriminatorSN
    from realciao.train.config import LossOptions
    from realciao.train.ema import ModelEMA
    from realciao.train.losses import LossSet, perceptual_term

    accelerator = Accelerator(cpu=torch.device(device).type == "cpu", mixed_precision="no")
    device = accelerator.device
    torch.manual_seed(0)
    random = torch.Generator(device=device).manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr", **(model_options or {})).to(device).train()
    generator = OfficialForward(model) if official else model
    optimizer_g = torch.optim.Adam(model.parameters(), 1e-4, betas=(0.9, 0.99))
    made = {"perceptual": perceptual_term(perceptual)} if perceptual is not None else None
    losses = LossSet(
        LossOptions(), stage, device, made
    )  # the trainer's defaults: L1; GAN: + perceptual + 0.1 GAN

    def scaler():
        return torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    parts = train_steps.StepParts(
        accelerator,
        generator,
        optimizer_g,
        scaler(),
        ModelEMA(generator, 0.999),
        losses,
        precision,
        queries_per_patch=queries,
    )
    step = train_steps.net_step
    if stage == "gan":
        parts.discriminator = UNetDiscriminatorSN(3, discriminator_channels).to(device).train()
        parts.optimizer_d = torch.optim.Adam(parts.discriminator.parameters(), 1e-4, betas=(0.9, 0.99))
        parts.scaler_d = scaler()
        step = train_steps.gan_step

    def one_step() -> train_steps.StepResult:
        scale = 1 + 3 * torch.rand(1, generator=random, device=device).item()
        side = max(8, round(lr_size * scale / 8) * 8) if stage == "gan" else round(lr_size * scale)
        lq = torch.rand(batch, 3, lr_size, lr_size, generator=random, device=device)
        gt = torch.rand(batch, 3, side, side, generator=random, device=device)
        return step(parts, [train_steps.MicroBatch({"gt": gt, "target": gt, "lq": lq}, random)], 1)

    return one_step


class OfficialForward(nn.Module):
    """The baseline's generator: the official algorithm (``scripts/official_ciaosr.py``) on ``model``'s weights."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, lr, coord, cell):
        import official_ciaosr

        return official_ciaosr.official_forward(self.model, lr, coord, cell)


def child(stage: str, precision: str, steps: int, threads: int, keep_memory: bool = True) -> dict:
    import realciao
    from realciao.allocator import keep_freed_memory
    from realciao.train.config import LossOptions
    from realciao.train.losses import PerceptualLoss

    torch.set_num_threads(threads)
    kept = keep_freed_memory() if keep_memory else False  # as the trainer does on the CPU
    torch.manual_seed(0)
    chosen = (
        auto_choice(realciao.build_generator("edsr-baseline-ciaosr").train(), stage)
        if precision == AUTO
        else {}
    )
    precision = chosen.get("chose", precision)
    perceptual = None
    if stage == "gan":
        from torchvision.models import vgg19

        perceptual = PerceptualLoss(LossOptions().perceptual_layers, vgg19(weights=None).state_dict())
    size = {"batch": 16, "lr_size": 48} if stage == "net" else {"batch": 4, "lr_size": 32}
    step = training_step(
        stage,
        "fp32" if precision == OFFICIAL else precision,
        **size,
        perceptual=perceptual,
        official=precision == OFFICIAL,
    )
    step()  # warm-up (allocator, oneDNN kernels)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {
        **chosen,
        "stage": stage,
        "precision": precision,
        "seconds": statistics.median(times),
        "steps": steps,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "kept": kept,
        "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps,
    }
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
    from realciao.train.steps import training_probe

    os.environ[CACHE_ENV] = str(Path(tempfile.mkdtemp(prefix="bench-auto-")) / "precision.json")
    data = (
        DataOptions(builtin_samples=True, batch_size=16, lr_patch=48, queries_per_patch=2304, scale_max=4.0)
        if stage == "net"
        else DataOptions(
            builtin_samples=True, batch_size=4, lr_patch=32, queries_per_patch=(32 * 4) ** 2, scale_max=4.0
        )
    )
    start = time.perf_counter()
    decision = decide_precision(AUTO, torch.device("cpu"), training_probe(model, data, torch.device("cpu")))
    return {
        "chose": decision.precision,
        "auto": decision.describe(),
        "decision_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", default="net,gan")
    parser.add_argument(
        "--precisions",
        default="fp32,bf16,auto",
        help="fp32, bf16 and auto (the trainer's "
        "default: decided by measurement as it decides, then run in the choice)",
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-keep-memory",
        action="store_true",
        help="glibc's default allocator behaviour "
        "(the trainer keeps freed memory on the CPU), to see what that setting is worth",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the official algorithm (quick runs)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                child(
                    *args.child, steps=args.steps, threads=args.threads, keep_memory=not args.no_keep_memory
                )
            )
        )
        return
    from bench_generator import higher_peaks, measured_peaks, official_cells, print_auto_choices, rate_cells

    print(f"{describe_cpu()}; {args.threads} threads")
    peaks = measured_peaks(args.threads)
    print(
        f"matrix-multiply peak before the runs, {args.threads} threads: fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    rows, baselines = [], {}
    for stage in args.stages.split(","):
        runs = args.precisions.split(",") + ([] if args.no_baseline else [OFFICIAL])
        for precision in runs:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                stage,
                precision,
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ] + (["--no-keep-memory"] if args.no_keep_memory else [])
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
    print(
        "official = the same step with the official algorithm as the generator's forward "
        "(scripts/official_ciaosr.py, fp32), in the same run"
    )
    columns = ["stage", "precision", "s/step (median)", "it/s", "peak RSS GiB", "page faults/step", "GFLOP/step",
               "GFLOP/s (peak)", "% of bound", "official s/step", "official peak RSS GiB",
               "official / realciao time", "official / realciao RSS"]
    table = BenchmarkTable(columns=columns)
    for r in rows:
        official = official_cells(baselines.get(r["stage"]), r)
        rate, bound = rate_cells(r["flops"], r["seconds"], peaks[r["precision"]])
        shown = f"auto: {r['precision']}" if "chose" in r else r["precision"]
        cells = [r["stage"], shown, f"{r['seconds']:.2f}", f"{1 / r['seconds']:.2f}", f"{r['peak_rss_gib']:.2f}",
                 f"{r['faults_per_step']:,.0f}", f"{r['flops'] / 1e9:.0f}", rate, bound, *official.split(" | ")]
        table.rows.append(dict(zip(columns, cells)))
    print(table_markdown(table))
    print_auto_choices(rows, "stage")
    notes = ["official = the same step (realciao.train.steps.net_step / gan_step) with the official algorithm "
             "as the generator's forward (scripts/official_ciaosr.py, fp32), in the same run"]
    for stage, base in baselines.items():
        # what the counted work allows: realciao's FLOPs at the fp32 peak against the official step as measured
        ours = next((r for r in rows if r["stage"] == stage and r["precision"] == "fp32"), None)
        if ours:
            floor = ours["flops"] / (peaks["fp32"] * 1e9)
            notes.append(
                f"{stage}: official {base['flops'] / 1e9:.0f} GFLOP/step at {base['flops'] / base['seconds'] / 1e9:.0f} "
                f"GFLOP/s; realciao's {ours['flops'] / 1e9:.0f} GFLOP at the fp32 peak would take {floor:.2f} s: "
                f"official / realciao fp32 can reach at most {base['seconds'] / floor:.1f}x on this CPU"
            )
            print(notes[-1])
    if args.json:
        notes.append(f"{args.threads} threads; {args.steps} steps per run; matrix-multiply peak fp32 "
                     f"{peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
        print(f"wrote {write_results(args.json, 'train', [table], notes)}")


if __name__ == "__main__":
    main()
