"""Generator speed and memory: EDSR-baseline-CiaoSR, whole-image inference, fp32 and bf16,
against the official algorithm measured in the same run.

    python scripts/bench_generator.py                      # the four issue configs
    python scripts/bench_generator.py --configs 48x4 --precisions fp32 --repeats 5
    python scripts/bench_generator.py --configs 24x2 --repeats 1 --no-baseline   # quick check
    python scripts/bench_generator.py --configs nl256 --precisions fp32         # the non-local branch alone

Each (config, precision) runs in a fresh subprocess so that peak RSS is its own. Prints
median wall time, peak RSS, multiply-accumulates per output pixel (counted with torch's
FlopCounterMode: matmuls and convolutions), achieved GFLOP/s next to a matrix-multiply
peak measured in the same run, and bf16-vs-fp32 PSNR. Each config also runs the official
algorithm (``scripts/official_ciaosr.py``: fp32, test-mode chunks of 30,000 queries that
each redo the unfold and the quadratic-memory non-local branch) in a subprocess of the
same kind, with the same threads, weights, input and allocator setting (like the upscaling
and evaluation commands on the CPU, each process keeps freed memory, ``realciao/allocator.py``;
``--no-keep-memory`` runs both with glibc's defaults); every row shows its seconds and
peak RSS and the ratio official / realciao, and the minor page faults per run. The baseline is slow: at 256x256 -> x2 its
non-local branch alone takes about a minute and 12 GiB per chunk, and it runs 9 chunks.
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

from realciao.benchmarks import BenchmarkTable, add_json_argument, table_markdown, write_results
from realciao.devices import describe_cpu
from realciao.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]

FIXTURE_WEIGHTS = ROOT.parent / "shared" / "fixtures" / "ciaosr_official" / "weights.safetensors"
OFFICIAL = "official"  # the child's "precision" that runs the baseline
AUTO = "auto"  # the child's "precision" that decides as the commands do, then runs in the choice


NON_LOCAL_PREFIX = "nl"  # "nl256": the non-local branch alone on a 256x256 LR image's encoder feature


def parse_config(text: str) -> tuple[int, int]:
    if text.startswith(NON_LOCAL_PREFIX):
        return int(text[len(NON_LOCAL_PREFIX) :]), 1
    lr, scale = text.split("x")
    return int(lr), int(scale)


def non_local_child(config: str, precision: str, repeats: int, threads: int) -> dict:
    """The non-local branch alone on the encoder feature of the test image: realciao's chunked,
    down-composed branch, or (precision "official") the official full-attention-map one."""
    import official_ciaosr

    torch.set_num_threads(threads)
    lr_size, _ = parse_config(config)
    model, weights = load_model()
    with torch.no_grad():
        feature = model.encoder(test_image(lr_size) - torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    branch = model.upsampler.cs_attn
    times = []
    faults = minor_faults()
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            if precision == OFFICIAL:
                out = official_ciaosr.non_local(branch, feature)
            else:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    out = branch(feature)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "config": config,
        "precision": precision,
        "seconds": statistics.median(times),
        "runs": len(times),
        "peak_rss_gib": peak,
        "branch_rss_gib": peak - rss_before,
        "weights": weights,
        "faults_per_run": (minor_faults() - faults) / len(times),
    }
    if precision == OFFICIAL:
        with torch.no_grad():
            result["max_abs_diff_vs_fp32"] = (out - branch(feature)).abs().max().item()
    return result


def test_image(lr_size: int) -> torch.Tensor:
    """A crop of scikit-image's bundled astronaut photo, (1, 3, n, n) in [0, 1]."""
    from skimage import data

    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)
    image = torch.nn.functional.interpolate(image[None], size=(512, 512), mode="area")
    return image[:, :, 40 : 40 + lr_size, 120 : 120 + lr_size].contiguous()


def load_model():
    import realciao

    if FIXTURE_WEIGHTS.is_file():
        return realciao.load_generator(FIXTURE_WEIGHTS), "official-fixture weights"
    torch.manual_seed(0)
    return realciao.build_generator("edsr-baseline-ciaosr").eval(), "random init (../shared absent)"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_upscale(config: str, repeats: int, threads: int, upscale) -> tuple[dict, torch.Tensor, tuple]:
    """``upscale(model, lr, size)`` on the config's input, ``repeats`` times: the median seconds,
    the peak RSS so far, the last output and what it ran on (model, lr, size)."""
    torch.set_num_threads(threads)
    lr_size, scale = parse_config(config)
    model, weights = load_model()
    lr = test_image(lr_size)
    size = (lr_size * scale, lr_size * scale)
    times = []
    faults = minor_faults()  # the first run included: it is timed too
    for _ in range(repeats):
        start = time.perf_counter()
        out = upscale(model, lr, size)
        times.append(time.perf_counter() - start)
    stats = {
        "config": config,
        "seconds": statistics.median(times),
        "runs": len(times),
        "weights": weights,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "faults_per_run": (minor_faults() - faults) / len(times),
    }
    return stats, out, (model, lr, size)


def official_child(config: str, repeats: int, threads: int) -> dict:
    """The official algorithm on the same input; then realciao fp32 once, for their difference."""
    import official_ciaosr

    import realciao

    # peak RSS is taken before realciao's run below
    stats, out, (model, lr, size) = timed_upscale(config, repeats, threads, official_ciaosr.official_upscale)
    diff = (out - realciao.upscale(model, lr, size)).abs().max().item()
    return {**stats, "precision": OFFICIAL, "max_abs_diff_vs_fp32": diff}


def child(config: str, precision: str, repeats: int, threads: int, keep_memory: bool = True) -> dict:

    from realciao.allocator import keep_freed_memory

    kept = keep_freed_memory() if keep_memory else False  # the same setting for realciao and the baseline
    return {**measure(config, precision, repeats, threads), "kept": kept}


def measure(config: str, precision: str, repeats: int, threads: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    import realciao

    if config.startswith(NON_LOCAL_PREFIX):
        return non_local_child(config, precision, repeats, threads)
    if precision == OFFICIAL:
        return official_child(config, repeats, threads)
    chosen = {}
    if precision == AUTO:  # what the commands' default picks, decided here as they decide it
        chosen = auto_choice(config, threads)
        precision = chosen["chose"]
    stats, out, (model, lr, size) = timed_upscale(
        config,
        repeats,
        threads,
        lambda model, lr, size: realciao.upscale(model, lr, size, precision=precision),
    )
    result = {**stats, "precision": precision, **chosen}
    lr_size = lr.shape[-1]
    if lr_size <= 128:  # counting adds a run; at 256 the non-local share would dominate its time
        with FlopCounterMode(display=False) as counter:
            realciao.upscale(model, lr, size, precision=precision)
        result["macs_per_px"] = counter.get_total_flops() / 2 / (size[0] * size[1])
    if precision == "bf16" and lr_size <= 128:
        result["psnr_vs_fp32"] = psnr(
            out, realciao.upscale(model, lr, size, precision="fp32"), y_channel=False
        )
    return result


def auto_choice(config: str, threads: int) -> dict:
    """``auto``'s decision for this config, measured afresh (a cache of this run's own), and
    how long deciding took."""
    import os
    import tempfile

    from realciao.autoprecision import CACHE_ENV, decide_precision
    from realciao.inference import inference_probe

    torch.set_num_threads(threads)
    _, scale = parse_config(config)
    model, _ = load_model()
    os.environ[CACHE_ENV] = str(Path(tempfile.mkdtemp(prefix="bench-auto-")) / "precision.json")
    start = time.perf_counter()
    decision = decide_precision(AUTO, torch.device("cpu"), inference_probe(model, scale))
    return {
        "chose": decision.precision,
        "auto": decision.describe(),
        "decision_seconds": time.perf_counter() - start,
    }


def rate_cells(flops: float, seconds: float, peak: float) -> tuple[str, str]:
    """ "GFLOP/s (peak)" and the share of the exact-work bound (the counted FLOPs at the same
    run's matmul peak in the row's precision); "-" where a figure is missing."""
    if not flops:
        return "-", "-"
    achieved = flops / seconds / 1e9
    return f"{achieved:.0f} ({peak:.0f})", f"{100 * achieved / peak:.0f} %" if peak > 0 else "-"


def print_auto_choices(rows: list[dict], key: str) -> None:
    """What ``auto`` chose for each row that ran it, and how long deciding took."""
    for r in rows:
        if "chose" in r:
            print(
                f"auto for {r[key]}: {r['auto']}; deciding took {r['decision_seconds']:.2f} s (once per "
                f"machine, model and shapes; cached after)"
            )


def official_cells(base: dict | None, row: dict) -> str:
    """The four official columns of a table row: its seconds and peak RSS, and the ratios."""
    if not base:
        return "- | - | - | -"
    return (
        f"{base['seconds']:.2f} | {base['peak_rss_gib']:.2f} | {base['seconds'] / row['seconds']:.1f}x | "
        f"{base['peak_rss_gib'] / row['peak_rss_gib']:.1f}x"
    )


def matmul_peak(dtype: torch.dtype, threads: int) -> float:
    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def measured_peaks(threads: int) -> dict[str, float]:
    """fp32 and, where the CPU runs it natively, bf16 (emulated bf16 takes minutes to gauge)."""
    from realciao.devices import cpu_runs_bf16_natively

    peaks = {"fp32": matmul_peak(torch.float32, threads)}
    peaks["bf16"] = matmul_peak(torch.bfloat16, threads) if cpu_runs_bf16_natively() else float("nan")
    return peaks


def higher_peaks(before: dict[str, float], threads: int) -> dict[str, float]:
    """Reads the gauge again after the runs and keeps the higher of each pair: on a shared host
    one reading can land in a busy minute."""
    after = measured_peaks(threads)
    print(
        f"matrix-multiply peak after the runs: fp32 {after['fp32']:.0f} GFLOP/s, bf16 {after['bf16']:.0f} GFLOP/s; "
        "the higher of each pair is used below"
    )
    return {k: max(before[k], after[k]) for k in before}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="48x4,64x4,128x2,256x2", help="LRxSCALE list, square LR")
    parser.add_argument(
        "--precisions",
        default="fp32,bf16,auto",
        help="fp32, bf16 and auto (the commands' "
        "default: decided by measurement as they decide, then run in the choice)",
    )
    parser.add_argument(
        "--repeats", type=int, default=0, help="timed runs per config (0: 5 for small, 3 for 128, 1 for 256)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true", help="skip the official algorithm (quick runs)")
    parser.add_argument(
        "--no-keep-memory",
        action="store_true",
        help="glibc's default allocator behaviour in "
        "every process (the commands keep freed memory on the CPU), to see what that setting is worth",
    )
    parser.add_argument(
        "--official-default-memory",
        action="store_true",
        help="realciao keeps freed memory, "
        "the baseline runs with glibc's defaults: each as its own code runs (not the same setting)",
    )
    add_json_argument(parser)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                child(
                    *args.child,
                    repeats=args.repeats,
                    threads=args.threads,
                    keep_memory=not args.no_keep_memory,
                )
            )
        )
        return

    peaks = measured_peaks(args.threads)
    print(f"{describe_cpu()}; {args.threads} threads")
    print(
        f"matrix-multiply peak before the runs, {args.threads} threads: fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    rows, baselines = [], {}
    for config in args.configs.split(","):
        lr_size, _ = parse_config(config)
        repeats = args.repeats or (5 if lr_size <= 64 else 3 if lr_size <= 128 else 1)
        runs = args.precisions.split(",") + ([] if args.no_baseline else [OFFICIAL])
        for precision in runs:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                config,
                precision,
                "--repeats",
                str(repeats),
                "--threads",
                str(args.threads),
            ]
            if args.no_keep_memory or (args.official_default_memory and precision == OFFICIAL):
                cmd.append("--no-keep-memory")
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{config} {precision}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if precision == OFFICIAL:
                baselines[config] = result
            else:
                rows.append(result)
            print(f"  done {config} {precision}: {result['seconds']:.2f} s", file=sys.stderr)

    memory = (
        "glibc's default allocator in both"
        if args.no_keep_memory
        else "freed memory kept (realciao/allocator.py) by realciao, glibc's defaults for the official code"
        if args.official_default_memory
        else "freed memory kept (realciao/allocator.py) in both"
    )
    peaks = higher_peaks(peaks, args.threads)
    notes = [
        f"EDSR-baseline-CiaoSR, whole image, {rows[0]['weights'] if rows else ''}; median wall time; "
        f"official = the official algorithm (scripts/official_ciaosr.py, fp32) in the same run; {memory}"
    ]
    print(notes[0])
    columns = [
        "LR -> output",
        "precision",
        "seconds",
        "peak RSS GiB",
        "MAC/output px",
        "GFLOP/s (peak)",
        "% of bound",
        "bf16 PSNR vs fp32",
        "official seconds",
        "official peak RSS GiB",
        "official / realciao time",
        "official / realciao RSS",
        "page faults per run (official)",
    ]
    table = []
    macs_by_config = {
        r["config"]: r["macs_per_px"] for r in rows if "macs_per_px" in r and r["precision"] == "fp32"
    }
    for r in rows:
        lr_size, scale = parse_config(r["config"])
        macs = r.get("macs_per_px", macs_by_config.get(r["config"]))
        pixels = (lr_size * scale) ** 2
        gflops, bound = rate_cells(2 * macs * pixels if macs else 0, r["seconds"], peaks[r["precision"]])
        shown = f"auto: {r['precision']}" if "chose" in r else r["precision"]
        acc = f"{r['psnr_vs_fp32']:.1f} dB" if "psnr_vs_fp32" in r else "-"
        mac_text = f"{macs / 1e6:.2f} M" if macs else "-"
        official = official_cells(baselines.get(r["config"]), r)
        label = (
            f"non-local branch alone, {lr_size}x{lr_size}"
            if r["config"].startswith(NON_LOCAL_PREFIX)
            else f"{lr_size}x{lr_size} -> x{scale}"
        )
        base = baselines.get(r["config"])
        faults = f"{r['faults_per_run']:,.0f}" + (f" ({base['faults_per_run']:,.0f})" if base else "")
        cells = [
            label,
            shown,
            f"{r['seconds']:.2f}",
            f"{r['peak_rss_gib']:.2f}",
            mac_text,
            gflops,
            bound,
            acc,
            *official.split(" | "),
            faults,
        ]
        table.append(dict(zip(columns, cells)))
    table = BenchmarkTable(columns=columns, rows=table)
    print(table_markdown(table))
    print_auto_choices(rows, "config")
    for config, base in baselines.items():
        what = "non-local feature" if config.startswith(NON_LOCAL_PREFIX) else "output image"
        notes.append(
            f"official {config}: {base['runs']} run(s); max |official - realciao fp32| on the {what} "
            f"{base['max_abs_diff_vs_fp32']:.1e}"
        )
    for config, base in baselines.items():
        # what the counted work allows: realciao's FLOPs at the fp32 peak against the official time as measured
        if config in macs_by_config:
            lr_size, scale = parse_config(config)
            floor = 2 * macs_by_config[config] * (lr_size * scale) ** 2 / (peaks["fp32"] * 1e9)
            notes.append(
                f"{config}: realciao's counted work at the fp32 peak would take {floor:.2f} s: official / "
                f"realciao fp32 can reach at most {base['seconds'] / floor:.1f}x on this CPU"
            )
    for r in rows:
        base = baselines.get(r["config"])
        if r["config"].startswith(NON_LOCAL_PREFIX) and base:
            notes.append(
                f"non-local branch alone, {r['config'][2:]}x{r['config'][2:]} LR, {r['precision']}: memory the "
                f"branch added to the process {r['branch_rss_gib']:.2f} GiB against the official "
                f"{base['branch_rss_gib']:.2f} GiB "
                f"({base['branch_rss_gib'] / max(r['branch_rss_gib'], 1e-3):.0f}x)"
            )
    for note in notes[1:]:
        print(note)
    if args.json:
        notes.append(
            f"{args.threads} threads; matrix-multiply peak fp32 {peaks['fp32']:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16']:.0f} GFLOP/s (the higher of the readings before and after the runs)"
        )
        print(f"wrote {write_results(args.json, 'generator', [table], notes)}")


if __name__ == "__main__":
    main()
