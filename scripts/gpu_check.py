"""Every GPU measurement and CUDA test in one call, for a machine with one CUDA GPU.

    bash scripts/gpu_check.sh OUTDIR              # on the GPU machine: under 8 minutes
    bash scripts/gpu_check.sh OUTDIR --dry-run    # every check on the CPU at tiny sizes (CI)
    python scripts/gpu_check.py OUTDIR --only generator,upscale_12mp

Writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (rewritten after each check, so a
killed run still leaves what it measured), OUTDIR/logs/CHECK.log, and the checks' own
outputs (experiments/, quickstart_eval/, cuda_tests.xml).

Each check runs in its own process with a time budget; one that fails or runs out of
time is recorded with its error and the next one starts. A dry run executes the same code
on the CPU with tiny models and sizes (fp16 is GPU-only and is recorded as skipped); its
figures mean nothing, and the pass criteria are evaluated but not enforced.

The checks, in order (budget on the GPU):
- environment (20 s): GPU, driver, torch/CUDA versions, backend flags, CPU.
- cuda_tests (75 s): ``pytest -m cuda tests/``.
- generator (60 s): EDSR-baseline-CiaoSR (the official-fixture weights from ../shared when
  present, else random), whole image, 128 -> x2 and 512 -> x2 in fp32, bf16 and fp16:
  median seconds, peak GPU memory, PSNR against fp32.
- training (60 s): Net stage (LR 48, 2304 queries per patch) and GAN stage (LR 32, whole
  HR patches, L1 + VGG19 perceptual + GAN, then the discriminator) at batch 16, fp32 and
  bf16: seconds per step and peak GPU memory (data loading and degradation excluded,
  as in scripts/bench_train.py).
- degradations (40 s): realciao's realesrgan recipe against Real-ESRGAN's pipeline from
  basicsr's functions (scripts/reference_degradations.py), both on the GPU, 16 x 256^2 -> 64^2.
- upscale_12mp (90 s): tiled ``upscale_array`` at 1 and 12 output megapixels (x2, default
  tile), bf16 and fp32; the 12 MP peak GPU memory must stay within 1.25x (+256 MiB) of 1 MP's.
- quickstart (75 s): options/quickstart.yml (600 iterations, phone_camera) through ``accelerate launch``.
- quickstart_check (45 s): realciao-eval of its EMA weights on Set5 (../shared; else
  scikit-image's coffee photo) degraded by the quickstart's recipe with fixed seeds, at x2,
  x3, x4 against bicubic of the degraded input; the model must gain at least 0.3 dB at x4.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SHARED = ROOT.parent / "shared"
FIXTURE_WEIGHTS = SHARED / "fixtures" / "ciaosr_official" / "weights.safetensors"
SET5 = SHARED / "data" / "Set5" / "HR"
TOTAL_BUDGET_S = 450  # all checks together; with start-up and reports the whole call stays under 8 minutes
TINY = {"channels": 8, "num_blocks": 1, "mlp_hidden": [16, 16]}  # dry-run generator


@dataclass(frozen=True)
class Sizes:
    """Every size, count and repeat of the checks: one set for the GPU, one for the dry run."""

    cuda_tests: str  # where pytest looks for cuda-marked tests
    generator: tuple[tuple[int, int], ...]  # (square LR side, scale)
    generator_repeats: tuple[int, ...]  # timed runs, per generator config
    train_batch: int
    net_lr: int
    gan_lr: int
    queries: int  # Net stage queries per patch
    train_warmup: int
    train_steps: int
    degradations: tuple[int, int, int, int, int]  # batch, GT side, LQ side, warm-up, repeats
    upscale_mp: tuple[
        float, ...
    ]  # output megapixels; the last one's peak memory is compared with the first's
    upscale_tile: int | None  # None: the library's default for the device
    upscale_precisions: tuple[str, ...]
    quickstart_iterations: int
    eval_scales: tuple[int, ...]


GPU_SIZES = Sizes(
    cuda_tests="tests/", generator=((128, 2), (512, 2)), generator_repeats=(3, 2), train_batch=16, net_lr=48,
    gan_lr=32, queries=2304, train_warmup=2, train_steps=5, degradations=(16, 256, 64, 2, 7),
    upscale_mp=(1, 12), upscale_tile=None, upscale_precisions=("bf16", "fp32"), quickstart_iterations=600,
    eval_scales=(2, 3, 4),
)
# a dry run spares collecting the whole suite; on the GPU bf16 goes first only so that fp32 is what a tight budget cuts
DRY_SIZES = Sizes(
    cuda_tests="tests/test_cuda.py", generator=((16, 2), (20, 2)), generator_repeats=(1, 1), train_batch=2,
    net_lr=8, gan_lr=8, queries=64, train_warmup=1, train_steps=1, degradations=(2, 64, 16, 0, 1),
    upscale_mp=(0.004, 0.012), upscale_tile=24, upscale_precisions=("fp32", "bf16"), quickstart_iterations=2,
    eval_scales=(4,),
)


# ---------------------------------------------------------------------------------------
# One check's process: rows of figures, notes, and a pass criterion
# ---------------------------------------------------------------------------------------


class Context:
    """What a check writes: rows (dicts) for its table, notes, and ``passed`` (None: no criterion).
    Saved after every row, so a check killed for time keeps what it measured."""

    def __init__(
        self,
        out: Path,
        name: str,
        dry_run: bool,
        budget_s: float = math.inf,
        device: str | None = None,
        sizes: Sizes | None = None,
    ):
        import torch

        self.out, self.name, self.dry_run = out, name, dry_run
        self.deadline = time.perf_counter() + budget_s
        self.device = torch.device(device or ("cpu" if dry_run else "cuda"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device here: run with --dry-run to exercise the checks on the CPU")
        self.sizes = sizes or (DRY_SIZES if dry_run else GPU_SIZES)
        self.result: dict = {"columns": [], "rows": [], "notes": [], "passed": None}
        self.path = out / "parts" / f"{name}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not dry_run:  # a dry run uses OMP_NUM_THREADS=1, set by the driver for every process it starts
            torch.set_num_threads(min(8, os.cpu_count() or 1))

    def columns(self, *pairs: tuple[str, str]) -> None:
        self.result["columns"] = [list(p) for p in pairs]
        self.save()

    def row(self, **values) -> None:
        self.result["rows"].append(values)
        self.save()
        print(json.dumps(values), flush=True)

    def note(self, text: str) -> None:
        self.result["notes"].append(text)
        self.save()

    def criterion(self, passed: bool, text: str) -> None:
        self.result["passed"] = (
            bool(passed) if self.result["passed"] is None else self.result["passed"] and bool(passed)
        )
        self.result.setdefault("criteria", []).append({"passed": bool(passed), "what": text})
        self.save()

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.result, indent=1, default=str))
        os.replace(temporary, self.path)

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    # measurement helpers --------------------------------------------------------------
    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> dict:
        """Peak GPU memory allocated since reset_peak (MiB; None on the CPU) and the process's peak RSS."""
        import torch

        gpu = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return {
            "peak_gpu_mib": gpu,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    def timed(
        self, run: Callable[[], object], warmup: int, repeats: int
    ) -> tuple[float, list[float], object]:
        """Median seconds of ``repeats`` runs after ``warmup`` runs (GPU synchronised), and the last result."""
        result = None
        for _ in range(warmup):
            result = run()
        self.sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = run()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), times, result


def generator_model(ctx: Context):
    """The full EDSR-baseline-CiaoSR on the GPU (fixture weights when present), a tiny one in a dry run."""
    import torch

    import realciao

    torch.manual_seed(0)
    if ctx.dry_run:
        return realciao.build_generator("edsr-baseline-ciaosr", **TINY).to(
            ctx.device
        ).eval(), "tiny, random init"
    if FIXTURE_WEIGHTS.is_file():
        return realciao.load_generator(FIXTURE_WEIGHTS, device=ctx.device), "official-fixture weights"
    return realciao.build_generator("edsr-baseline-ciaosr").to(
        ctx.device
    ).eval(), "random init (../shared absent)"


def photo(lr_size: int):
    """(1, 3, n, n) in [0, 1]: a crop of scikit-image's astronaut (512 x 512), the whole photo at 512."""
    import torch
    from skimage import data

    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)
    top, left = min(40, 512 - lr_size), min(120, 512 - lr_size)
    return image[None, :, top : top + lr_size, left : left + lr_size].contiguous()


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


def check_environment(ctx: Context) -> None:
    import torch

    import realciao

    ctx.columns(("item", "item"), ("value", "value"))
    ctx.row(item="dry run", value="yes (CPU, tiny sizes: the figures mean nothing)" if ctx.dry_run else "no")
    ctx.row(item="python", value=platform.python_version())
    ctx.row(item="torch", value=torch.__version__)
    ctx.row(item="realciao", value=realciao.__version__)
    ctx.row(item="commit", value=git_commit())
    ctx.row(
        item="CPU", value=f"{cpu_model()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}"
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        ctx.row(
            item="GPU",
            value=f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
            f"{props.major}.{props.minor}, {props.multi_processor_count} SMs",
        )
        ctx.row(
            item="CUDA (torch build) / cuDNN",
            value=f"{torch.version.cuda} / {torch.backends.cudnn.version()}",
        )
        ctx.row(item="driver", value=nvidia_smi("driver_version"))
        ctx.row(item="bf16 supported", value=str(torch.cuda.is_bf16_supported()))
        ctx.row(
            item="TF32 (matmul / cuDNN)",
            value=f"{torch.backends.cuda.matmul.allow_tf32} / {torch.backends.cudnn.allow_tf32}",
        )
    else:
        ctx.row(item="GPU", value="none (CUDA not available)")


def git_commit() -> str:
    """The checkout's commit, read only (no index refresh: --no-optional-locks)."""
    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    try:
        done = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.strip() + (" + local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "unknown (no git checkout)"


def nvidia_smi(field: str) -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no nvidia-smi)"


def cpu_model() -> str:
    from realciao.devices import cpu_model as model

    return model()


def check_cuda_tests(ctx: Context) -> None:
    import xml.etree.ElementTree as ET

    xml = ctx.out / "cuda_tests.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "cuda",
        ctx.sizes.cuda_tests,
        f"--junitxml={xml}",
    ]
    ctx.note("$ " + " ".join(command[2:]))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
    ctx.columns(("test", "test"), ("outcome", "outcome"), ("seconds", "seconds"), ("message", "message"))
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                element = case.find(kind)
                if element is not None:
                    outcome = {"failure": "failed"}.get(kind, kind)
                    message = (
                        (element.get("message") or "").splitlines()[0][:160] if element.get("message") else ""
                    )
            counts[outcome] += 1
            name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
            ctx.row(test=name, outcome=outcome, seconds=round(float(case.get("time", 0)), 2), message=message)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    ctx.note(f"pytest exit status {done.returncode}: {summary}")
    ctx.criterion(
        done.returncode in (0, 5) and counts["failed"] == counts["error"] == 0, "no CUDA test fails or errors"
    )
    ctx.criterion(ctx.device.type != "cuda" or counts["passed"] > 0, "the CUDA tests ran (not all skipped)")


def check_generator(ctx: Context) -> None:
    import torch

    import realciao
    from realciao.metrics import psnr

    configs = ctx.sizes.generator
    model, weights = generator_model(ctx)
    ctx.note(
        f"EDSR-baseline-CiaoSR, whole image (realciao.upscale), {weights}; median of the timed runs (one "
        f"warm-up run per precision at {configs[0][0]}x{configs[0][0]}); agreement: PSNR of the output against "
        "fp32's, in dB"
    )
    ctx.columns(
        ("config", "LR -> output"),
        ("precision", "precision"),
        ("seconds", "seconds"),
        ("runs", "runs"),
        ("peak_gpu_mib", "peak GPU MiB"),
        ("vs_fp32_db", "vs fp32 dB"),
        ("finite", "finite"),
        ("skipped", "note"),
    )
    for index, (lr_size, scale) in enumerate(configs):
        lr = photo(lr_size).to(ctx.device)
        size = (lr_size * scale, lr_size * scale)
        repeats = ctx.sizes.generator_repeats[index]
        warmup = 1 if index == 0 else 0  # the first config warmed the kernels up
        reference = None
        for precision in ("fp32", "bf16", "fp16"):
            label = f"{lr_size}x{lr_size} -> x{scale}"
            if precision == "fp16" and ctx.device.type != "cuda":
                ctx.row(
                    config=label, precision=precision, skipped="fp16 runs on GPUs only: skipped in a dry run"
                )
                continue
            ctx.reset_peak()
            run = functools.partial(realciao.upscale, model, lr, size, precision=precision)
            seconds, times, out = ctx.timed(run, warmup=warmup, repeats=repeats)
            peak = ctx.peak()
            out = out.cpu()
            finite = bool(torch.isfinite(out).all())
            if precision == "fp32":
                reference = out
            agreement = None if precision == "fp32" else round(psnr(out.float(), reference.float(), y_channel=False), 2)
            ctx.row(
                config=label,
                precision=precision,
                seconds=round(seconds, 4),
                runs=len(times),
                peak_gpu_mib=round(peak["peak_gpu_mib"]) if peak["peak_gpu_mib"] is not None else None,
                peak_rss_mib=round(peak["peak_rss_mib"]),
                vs_fp32_db=agreement,
                finite=finite,
            )
            ctx.criterion(finite, f"{label} {precision}: finite output")
            if agreement is not None:
                ctx.criterion(agreement >= 40, f"{label} {precision}: within 40 dB of fp32")


def check_training(ctx: Context) -> None:
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    from realciao.train.losses import PerceptualLoss

    z = ctx.sizes
    batch, net_lr, gan_lr, queries, warmup, steps = (
        z.train_batch,
        z.net_lr,
        z.gan_lr,
        z.queries,
        z.train_warmup,
        z.train_steps,
    )
    options = TINY if ctx.dry_run else {}
    ctx.note(
        f"EDSR-baseline-CiaoSR{' (tiny)' if ctx.dry_run else ''}, batch {batch}; Net: LR {net_lr}, {queries} "
        f"queries per patch; GAN: LR {gan_lr}, whole HR patches, L1 + VGG19 perceptual (random weights) + GAN, "
        f"then the U-Net discriminator; Adam; median of {steps} steps after {warmup} warm-up"
    )
    ctx.columns(
        ("stage", "stage"),
        ("precision", "precision"),
        ("batch", "batch"),
        ("seconds_per_step", "s/step"),
        ("steps_per_second", "it/s"),
        ("peak_gpu_mib", "peak GPU MiB"),
        ("finite", "finite loss"),
    )
    torch.manual_seed(0)
    layers = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    vgg19_features = make_layers(cfgs["E"]).state_dict(
        prefix="features."
    )  # torchvision's VGG19 layout, random
    perceptual = PerceptualLoss(layers, vgg19_features).to(ctx.device)
    for stage in ("net", "gan"):
        for precision in ("fp32", "bf16"):
            step = training_step(
                ctx,
                stage,
                precision,
                perceptual,
                batch,
                net_lr if stage == "net" else gan_lr,
                queries,
                options,
            )
            ctx.reset_peak()
            seconds, _, result = ctx.timed(step, warmup=warmup, repeats=steps)
            finite = not result.skipped and all(math.isfinite(v) for v in result.losses.values())
            peak = ctx.peak()
            ctx.row(
                stage=stage,
                precision=precision,
                batch=batch,
                seconds_per_step=round(seconds, 4),
                steps_per_second=round(1 / seconds, 2),
                peak_gpu_mib=round(peak["peak_gpu_mib"]) if peak["peak_gpu_mib"] is not None else None,
                peak_rss_mib=round(peak["peak_rss_mib"]),
                finite=finite,
            )
            ctx.criterion(finite, f"{stage} {precision}: finite losses")
            del step  # the models and optimisers go with it before the next configuration


def training_step(
    ctx: Context,
    stage: str,
    precision: str,
    perceptual,
    batch: int,
    lr_size: int,
    queries: int,
    options: dict,
) -> Callable[[], object]:
    """One step of the trainer's own step function on a fresh generator (and discriminator), as
    scripts/bench_train.py times it, on this check's device."""
    from bench_train import training_step as bench_step

    return bench_step(
        stage,
        precision,
        batch,
        lr_size,
        queries,
        device=str(ctx.device),
        model_options=options,
        discriminator_channels=8 if ctx.dry_run else 64,
        perceptual=perceptual,
    )


def check_degradations(ctx: Context) -> None:
    import torch
    from bench_degradations import gt_patches, median_seconds
    from reference_degradations import ReferencePipeline, seed_reference

    from realciao.degradations import degrade, load_recipe

    batch, gt_size, lq_size, warmup, repeats = ctx.sizes.degradations
    recipe = load_recipe("realesrgan")
    gt = gt_patches(batch, gt_size, 0).to(ctx.device)
    generator = torch.Generator(device=ctx.device).manual_seed(0)
    reference = ReferencePipeline(ctx.device)
    seed_reference(0)
    ctx.note(
        f"batch {batch} x {gt_size}^2 -> {lq_size}^2 on {ctx.device.type}, kernel sampling included in both; "
        f"median of {repeats} batches after {warmup} warm-up (scripts/bench_degradations.py's measurement)"
    )
    ctx.columns(
        ("pipeline", "pipeline"),
        ("ms_per_batch", "ms/batch"),
        ("patches_per_second", "GT patches/s"),
        ("speed_up", "speed-up vs reference"),
    )
    ours = median_seconds(
        lambda: degrade(gt, recipe, (lq_size, lq_size), generator), ctx.device, warmup, repeats
    )
    theirs = median_seconds(lambda: reference(gt, (lq_size, lq_size)), ctx.device, warmup, repeats)
    ctx.row(
        pipeline=f"realciao {recipe.name}",
        ms_per_batch=round(ours * 1e3, 2),
        patches_per_second=round(batch / ours, 1),
        speed_up=round(theirs / ours, 2),
    )
    ctx.row(
        pipeline="reference (basicsr 1.4.2 functions)",
        ms_per_batch=round(theirs * 1e3, 2),
        patches_per_second=round(batch / theirs, 1),
        speed_up=1.0,
    )


def check_upscale(ctx: Context) -> None:
    import torch
    from bench_upscale import lr_shape, synthetic_photo

    from realciao.tiling import default_tile
    from realciao.upscaling import upscale_array

    sizes, precisions = ctx.sizes.upscale_mp, ctx.sizes.upscale_precisions
    scale = 2.0
    model, weights = generator_model(ctx)
    tile = ctx.sizes.upscale_tile
    used_tile = tile or default_tile(model, scale, ctx.device)
    chosen = "fixed" if tile else "the library's default for this device"
    ctx.note(
        f"EDSR-baseline-CiaoSR ({weights}), x{scale}, synthetic 4:3 photo (scripts/bench_upscale.py), "
        f"realciao.upscaling.upscale_array with tile {used_tile} ({chosen}); the LR image and the output stay in "
        "host memory"
    )
    ctx.columns(
        ("precision", "precision"),
        ("out_mp", "output MP"),
        ("out", "output"),
        ("tiles", "tiles"),
        ("seconds", "seconds"),
        ("mp_per_s", "MP/s"),
        ("peak_gpu_mib", "peak GPU MiB"),
        ("peak_rss_mib", "peak RSS MiB"),
        ("fp32_fallbacks", "fp32 fallbacks"),
    )
    upscale_array(
        model, synthetic_photo(24, 24), (48, 48), tile, None, "fp32", None
    )  # warm-up: kernels, allocator
    rates: dict[
        str, float
    ] = {}  # output MP per second so far, per precision: is there time for the next run?
    for precision in precisions:
        peaks = {}
        for megapixels in sizes:
            rate = rates.get(precision) or (
                min(rates.values()) / 2 if rates else None
            )  # fp32: about 2x bf16's time
            if rate and megapixels / rate > ctx.time_left() - 5:
                ctx.note(
                    f"{precision} {megapixels} MP skipped: about {megapixels / rate:.0f} s expected, "
                    f"{ctx.time_left():.0f} s of the budget left"
                )
                continue
            h, w = lr_shape(megapixels, scale)
            image = synthetic_photo(h, w)
            size = (round(h * scale), round(w * scale))
            ctx.reset_peak()
            run = functools.partial(upscale_array, model, image, size, tile, None, precision, None)
            seconds, _, (result, report) = ctx.timed(run, warmup=0, repeats=1)
            peak = ctx.peak()
            peaks[megapixels] = (
                peak["peak_gpu_mib"] if peak["peak_gpu_mib"] is not None else peak["peak_rss_mib"]
            )
            rates[precision] = size[0] * size[1] / 1e6 / seconds
            ctx.row(
                precision=precision,
                out_mp=round(size[0] * size[1] / 1e6, 3),
                out=f"{size[1]}x{size[0]}",
                tiles=report.tiles,
                seconds=round(seconds, 3),
                mp_per_s=round(size[0] * size[1] / 1e6 / seconds, 3),
                peak_gpu_mib=round(peak["peak_gpu_mib"]) if peak["peak_gpu_mib"] is not None else None,
                peak_rss_mib=round(peak["peak_rss_mib"]),
                fp32_fallbacks=report.fp32_fallbacks,
            )
            del result, image, run
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
        if len(peaks) < 2:
            continue
        small, large = peaks[sizes[0]], peaks[sizes[-1]]
        what = "GPU memory" if ctx.device.type == "cuda" else "RSS (dry run)"
        ctx.criterion(
            large <= 1.25 * small + 256,
            f"{precision}: peak {what} at {sizes[-1]} MP ({large:.0f} MiB) "
            f"within 1.25x + 256 MiB of {sizes[0]} MP's ({small:.0f} MiB)",
        )
    done = [r for r in ctx.result["rows"] if r["out_mp"] >= 0.9 * sizes[-1]]
    ctx.criterion(bool(done), f"a {sizes[-1]} MP upscale finished within the budget")


def quickstart_dir(ctx: Context) -> Path:
    return ctx.out / "experiments" / "gpu_quickstart"


def check_quickstart(ctx: Context) -> None:
    iterations = ctx.sizes.quickstart_iterations
    run_dir = quickstart_dir(ctx)
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # a fresh run each call (the trainer refuses to overwrite checkpoints)
    overrides = [
        f"train.iterations={iterations}",
        "name=gpu_quickstart",
        f"output_dir={ctx.out / 'experiments'}",
    ]
    if ctx.dry_run:  # tiny batches, a checkpoint at the end, validation on one small image
        hr = ctx.out / "dry_run_validation"
        write_photo_crops(hr, crop=48)
        overrides += [
            "data.batch_size=2",
            "data.lr_patch=16",
            "data.queries_per_patch=256",
            "checkpoint.every=2",
            "validation.builtin_sample=false",
            f"validation.hr_folder={hr}",
            "validation.scales=[2]",
        ]
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--num_processes", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "train_realciao.py", "-opt",
        "options/quickstart.yml",
    ]
    for override in overrides:
        command += ["--set", override]
    ctx.note("$ accelerate launch " + " ".join(command[command.index("train_realciao.py") :]))
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    print(output[-8000:])
    validation = re.findall(r"validation at (\d+) \((\d+) s\): (.*)", output)
    metrics = dict(re.findall(r"(\w+) ([-\d.]+)", validation[-1][2])) if validation else {}
    release = run_dir / "net_g_ema.safetensors"
    ctx.columns(
        ("iterations", "iterations"),
        ("seconds", "wall seconds (start-up included)"),
        ("seconds_per_iteration", "s/iteration (overall)"),
        ("validation_seconds", "validation s"),
        ("psnr_x2", "val PSNR x2"),
        ("psnr_margin_x2", "margin over bicubic x2"),
        ("psnr_x4", "val PSNR x4"),
        ("psnr_margin_x4", "margin over bicubic x4"),
    )
    ctx.row(
        iterations=iterations,
        seconds=round(seconds, 1),
        seconds_per_iteration=round(seconds / iterations, 3),
        validation_seconds=int(validation[-1][1]) if validation else None,
        **{k: float(v) for k, v in metrics.items() if k.startswith("psnr")},
    )
    ctx.criterion(done.returncode == 0, f"the run exits with status 0 (got {done.returncode})")
    ctx.criterion(release.is_file(), f"the release weights {release.relative_to(ctx.out)} exist")


def write_photo_crops(folder: Path, crop: int | None) -> Path:
    """scikit-image's coffee photo (the quickstart's validation image, not a training one), or a crop of it."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    image = data.coffee()
    if crop:
        image = image[100 : 100 + crop, 200 : 200 + crop]
    Image.fromarray(image).save(folder / "coffee.png")
    return folder


def check_quickstart_eval(ctx: Context) -> None:
    weights = quickstart_dir(ctx) / "net_g_ema.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights}: missing; the quickstart check needs the quickstart run's weights"
        )
    if ctx.dry_run:
        folder, dataset = write_photo_crops(ctx.out / "dry_run_eval", crop=48), "coffee crop (dry run)"
    elif SET5.is_dir():
        folder, dataset = SET5, "Set5"
    else:
        folder, dataset = write_photo_crops(ctx.out / "coffee_hr", crop=None), "coffee (Set5 absent)"
    scales = ctx.sizes.eval_scales
    out = ctx.out / "quickstart_eval"
    recipe = yaml.safe_load((ROOT / "options" / "quickstart.yml").read_text())["data"]["recipe"]
    command = [
        sys.executable,
        "-m",
        "realciao.cli.evaluate",
        "--model",
        f"quickstart={weights}",
        "--paired",
        str(folder),
        "--no-lpips",
        "-o",
        str(out),
        "--device",
        ctx.device.type,
        "--precision",
        "fp32",
        "--degrade",
        recipe,
    ]  # the quickstart's check: restoration of its own degradations
    for scale in scales:
        command += ["--scale", str(scale)]
    ctx.note(f"$ realciao-eval {' '.join(command[3:])}")
    ctx.note(f"PSNR dB / SSIM on Y, {dataset} degraded by {recipe} (fixed seeds)")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    print(done.stdout[-6000:], done.stderr[-6000:], sep="\n")
    if done.returncode != 0:
        raise RuntimeError(f"realciao-eval exited with status {done.returncode}:\n{done.stderr[-3000:]}")
    means = json.loads((out / "results.json").read_text())["means"]
    ctx.columns(("method", "method"), *[(f"x{s:g}", f"x{s:g}") for s in scales])
    table: dict[str, dict] = {}
    for entry in means:
        table.setdefault(entry["method"], {})[f"x{entry['scale']:g}"] = (entry["psnr"], entry["ssim"])
    for method in ("bicubic", "quickstart"):
        ctx.row(method=method, **{k: f"{p:.2f} / {s:.4f}" for k, (p, s) in table.get(method, {}).items()})
    for scale in scales:
        key = f"x{scale:g}"
        if key in table.get("bicubic", {}) and key in table.get("quickstart", {}):
            gain = table["quickstart"][key][0] - table["bicubic"][key][0]
            ctx.note(f"{key}: quickstart - bicubic = {gain:+.2f} dB")
    gain4 = (
        table.get("quickstart", {}).get("x4", (float("nan"),))[0]
        - table.get("bicubic", {}).get("x4", (0,))[0]
    )
    # +0.56 dB on 2 CPU cores in bf16; the GPU draws other degradations, so the bar leaves room
    ctx.criterion(gain4 >= 0.3, f"the quickstart model restores 0.3 dB over bicubic at x4 ({gain4:+.2f} dB)")


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    budget_s: int  # on the GPU
    dry_budget_s: int  # in a dry run on 2 CPU cores
    run: Callable[[Context], None]


CHECKS = [
    Check("environment", "Environment", 20, 60, check_environment),
    Check("cuda_tests", "CUDA-marked tests", 75, 120, check_cuda_tests),
    Check("generator", "Generator inference, whole image", 60, 60, check_generator),
    Check("training", "Training steps", 60, 90, check_training),
    Check("degradations", "Degradation throughput on the GPU", 40, 60, check_degradations),
    Check("upscale_12mp", "Tiled upscale to 12 megapixels", 90, 90, check_upscale),
    Check("quickstart", "Quickstart, its 600 iterations", 75, 180, check_quickstart),
    Check(
        "quickstart_check", "Quickstart check: degraded Set5 against bicubic", 45, 120, check_quickstart_eval
    ),
]


# ---------------------------------------------------------------------------------------
# The driver: one process per check, a budget each, results written after each
# ---------------------------------------------------------------------------------------


def run_child(out: Path, name: str, dry_run: bool, budget_s: float = math.inf) -> int:
    check = next(c for c in CHECKS if c.name == name)
    ctx = Context(out, name, dry_run, budget_s)
    try:
        check.run(ctx)
    except BaseException as error:  # recorded, then the driver goes on with the next check
        ctx.result["error"] = "".join(traceback.format_exception(type(error), error, error.__traceback__))[
            -4000:
        ]
        ctx.save()
        traceback.print_exc()
        return 1
    return 0


def run_check(check: Check, out: Path, dry_run: bool, budget: float) -> dict:
    part = out / "parts" / f"{check.name}.json"
    part.unlink(missing_ok=True)
    log = out / "logs" / f"{check.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        str(out),
        "--child",
        check.name,
        "--child-budget",
        f"{budget:.1f}",
    ] + (["--dry-run"] if dry_run else [])
    start = time.perf_counter()
    status = "ok"
    with open(log, "w") as handle:
        # its own process group: on timeout the check and everything it started are stopped together
        child = subprocess.Popen(
            command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait(timeout=max(1.0, budget))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code, status = None, "timeout"
    seconds = time.perf_counter() - start
    result = (
        json.loads(part.read_text())
        if part.is_file()
        else {"columns": [], "rows": [], "notes": [], "passed": None}
    )
    if status == "timeout":
        result["error"] = f"stopped after its budget of {budget:.1f} s; the rows above are what it measured"
    elif code != 0 or "error" in result:
        status = "error"
        result.setdefault(
            "error", f"exited with status {code}; see {log.relative_to(out)}:\n" + tail(log, 3000)
        )
    elif result.get("passed") is False:
        status = "ok (dry run; criterion not enforced)" if dry_run else "failed"
    return {
        "title": check.title,
        "status": status,
        "seconds": round(seconds, 1),
        "budget_s": round(budget),
        "log": str(log.relative_to(out)),
        **result,
    }


def tail(path: Path, chars: int) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"# realciao GPU check{' (dry run on the CPU)' if meta['dry_run'] else ''}",
        "",
        f"{meta['device']}; started {meta['started']}; {meta['seconds']:.0f} s in all "
        f"(budget {meta['total_budget_s']} s). Written by `{meta['command']}`.",
        "",
        "| check | status | seconds | budget s |",
        "| --- | --- | --- | --- |",
    ]
    for name, check in report["checks"].items():
        lines.append(
            f"| {check['title']} (`{name}`) | {check['status']} | {check['seconds']} | {check['budget_s']} |"
        )
    for check in report["checks"].values():
        lines += [
            "",
            f"## {check['title']}",
            "",
            f"Status: **{check['status']}** in {check['seconds']} s "
            f"(budget {check['budget_s']} s; log `{check['log']}`).",
        ]
        for note in check.get("notes", []):
            lines += ["", note if not note.startswith("$ ") else f"`{note}`"]
        columns = check.get("columns") or []
        if columns and check.get("rows"):
            lines += [
                "",
                "| " + " | ".join(header for _, header in columns) + " |",
                "| " + " | ".join("---" for _ in columns) + " |",
            ]
            for row in check["rows"]:
                lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |")
        if check.get("criteria"):
            lines.append("")
            lines += [f"- {'pass' if c['passed'] else 'FAIL'}: {c['what']}" for c in check["criteria"]]
        if check.get("error"):
            lines += ["", "```", check["error"].strip()[-2000:], "```"]
    return "\n".join(lines) + "\n"


def device_words(dry_run: bool) -> str:
    import torch

    if dry_run:
        return f"CPU ({cpu_model()}), torch {torch.__version__}"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"no CUDA device, torch {torch.__version__}"


def write_report(out: Path, report: dict) -> None:
    for name, text in (
        ("gpu_check.json", json.dumps(report, indent=1, default=str)),
        ("gpu_check.md", markdown(report)),
    ):
        temporary = out / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, out / name)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "outdir", type=Path, help="folder for gpu_check.json, gpu_check.md and the checks' outputs"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="every check on the CPU at tiny sizes (seconds each)"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated checks to run: {', '.join(c.name for c in CHECKS)}"
    )
    parser.add_argument(
        "--total-budget",
        type=float,
        default=TOTAL_BUDGET_S,
        help="seconds for all checks together; later checks get what is left",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-budget", type=float, default=math.inf, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return run_child(out, args.child, args.dry_run, args.child_budget)

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here; use --dry-run to exercise every check on the CPU",
            file=sys.stderr,
        )
        return 2
    chosen = [c for c in CHECKS if not args.only or c.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {c.name for c in CHECKS}
    if unknown:
        parser.error(f"--only: unknown check(s) {sorted(unknown)}")
    if args.dry_run:
        # tiny sizes: one thread each is fastest, and robust on a shared CI machine (OpenMP threads
        # of tiny ops wait for each other); the checks' own processes (pytest, accelerate, eval) inherit it
        os.environ["OMP_NUM_THREADS"] = "1"
    started = time.perf_counter()
    report = {
        "meta": {
            "dry_run": args.dry_run,
            "device": device_words(args.dry_run),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds": 0.0,
            "total_budget_s": args.total_budget,
            "command": "bash scripts/gpu_check.sh OUTDIR" + (" --dry-run" if args.dry_run else ""),
        },
        "checks": {},
    }
    for check in chosen:
        left = args.total_budget - (time.perf_counter() - started)
        budget = min(check.dry_budget_s if args.dry_run else check.budget_s, left)
        if budget < 1:
            report["checks"][check.name] = {
                "title": check.title,
                "status": "skipped (no time left)",
                "seconds": 0,
                "budget_s": 0,
                "log": "-",
                "rows": [],
                "notes": [],
            }
        else:
            print(f"[gpu_check] {check.name} (budget {budget:.0f} s) ...", flush=True)
            report["checks"][check.name] = run_check(check, out, args.dry_run, budget)
            print(
                f"[gpu_check] {check.name}: {report['checks'][check.name]['status']} "
                f"in {report['checks'][check.name]['seconds']} s",
                flush=True,
            )
        report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
        write_report(out, report)
    bad = [n for n, c in report["checks"].items() if not c["status"].startswith("ok")]
    print(
        f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}"
        + (f"; not ok: {', '.join(bad)}" if bad else "; all checks ok")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
