"""Tiled upscaling throughput and peak memory, each configuration in its own process.

    python scripts/bench_upscale.py                         # 0.25, 1, 4 MP out at x2, fp32 and bf16 (slow on CPU)
    python scripts/bench_upscale.py --sizes 0.25 1 --precisions bf16
    python scripts/bench_upscale.py --agreement             # tiled vs whole image with the non-local branch

For each output size (megapixels) and precision: output MP/s and peak RSS (and peak GPU
memory on CUDA) of ``upscale_image`` on a synthetic photo at a fixed tile size; plus the
generator's own untiled throughput (``realciao.inference.upscale``) on an image of one
tile, the yardstick for tiling overhead. On a GPU, 12 and 48 MP are added. The model is the
full-size EDSR-baseline-CiaoSR: the official-format fixture weights when present, else
random initialisation (same cost).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from realciao.benchmarks import (  # light: no torch, no pydantic
    BenchmarkTable,
    add_json_argument,
    table_markdown,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "ciaosr_official" / "weights.safetensors"


def synthetic_photo(height: int, width: int, seed: int = 0):
    """Smooth shading, hard edges and sensor-like noise, uint8 RGB: a stand-in for a photo.
    Built in bands of rows so that making it does not add to the peak memory being measured."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    x = np.arange(width, dtype=np.float32)[None, :, None]
    phase = np.arange(3, dtype=np.float32)
    for top in range(0, height, 128):
        y = np.arange(top, min(height, top + 128), dtype=np.float32)[:, None, None]
        shade = 0.5 + 0.25 * np.sin(x / 37 + phase) * np.cos(y / 53)
        edges = 0.2 * ((x // 41 + y // 29) % 2)
        noise = rng.normal(0, 0.03, (y.shape[0], width, 3)).astype(np.float32)
        image[top : top + y.shape[0]] = (np.clip(shade + edges + noise, 0, 1) * 255).round()
    return image


def lr_shape(megapixels: float, scale: float) -> tuple[int, int]:
    """LR (h, w) at 4:3 whose x``scale`` output has about ``megapixels``."""
    width = math.sqrt(megapixels * 1e6 * 4 / 3) / scale
    return max(1, round(width * 3 / 4)), max(1, round(width))


def load_model(device: str):
    import torch

    from realciao.archs import build_generator
    from realciao.checkpoint import load_generator

    if FIXTURE.exists():
        return load_generator(FIXTURE, device=device), "fixture weights"
    torch.manual_seed(0)
    return build_generator("edsr-baseline-ciaosr").to(device).eval(), "random init"


def peak_memory(device: str) -> dict:
    import torch

    result = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    if device.startswith("cuda"):
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_one(config: dict) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    from realciao.allocator import keep_freed_memory
    from realciao.inference import upscale
    from realciao.upscaling import upscale_image

    # as realciao-upscale does on the CPU; peak RSS below includes what the heap keeps
    kept = keep_freed_memory() if config["device"] == "cpu" and config["keep_memory"] else False
    model, weights = load_model(config["device"])
    scale, tile = config["scale"], config["tile"]
    if config["kind"] == "untiled":
        h = w = tile
    else:
        h, w = lr_shape(config["megapixels"], scale)
    size = (round(h * scale), round(w * scale))
    image = synthetic_photo(h, w)
    # warm-up: the first model call pays one-off costs (kernel selection, allocator growth)
    upscale_image(model, synthetic_photo(24, 24), scale=scale, tile=tile, precision=config["precision"])
    lr = torch.from_numpy(synthetic_photo(tile, tile)).permute(2, 0, 1)[None].float().div(255)
    tile_size = (round(tile * scale), round(tile * scale))

    def timed(run) -> tuple[float, float]:
        """Wall seconds and CPU seconds of this process: on a shared machine the CPU time is
        what the work itself costs, the wall time also counts other people's jobs."""
        if config["device"].startswith("cuda"):
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        if config["device"].startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start

    def untiled() -> tuple[float, float]:  # the generator on one tile's worth of image: seconds per MP
        seconds, cpu = timed(lambda: upscale(model, lr, tile_size, precision=config["precision"]).cpu())
        mp = tile_size[0] * tile_size[1] / 1e6
        return seconds / mp, cpu / mp

    out_mp = size[0] * size[1] / 1e6
    if config["kind"] == "untiled":
        seconds, cpu = timed(lambda: upscale(model, lr, size, precision=config["precision"]).cpu())
        memory = peak_memory(config["device"])
        yardstick = [(seconds / out_mp, cpu / out_mp)]
    else:
        seconds, cpu = timed(
            lambda: upscale_image(model, image, size=size, tile=tile, precision=config["precision"])
        )
        memory = peak_memory(config["device"])  # before the yardstick runs: the tiled run's own peak
        # the yardstick in the same process and right after, so that both see a similar machine load
        yardstick = [untiled(), untiled()]
    return {
        **config,
        "lr": f"{w}x{h}",
        "out": f"{size[1]}x{size[0]}",
        "out_mp": out_mp,
        "seconds": seconds,
        "mp_per_s": out_mp / seconds,
        "cpu_seconds": cpu,
        "untiled_mp_per_s": len(yardstick) / sum(y[0] for y in yardstick),
        "untiled_cpu_s_per_mp": sum(y[1] for y in yardstick) / len(yardstick),
        "weights": weights,
        "kept": kept,
        "threads": torch.get_num_threads(),
        **memory,
    }


def agreement(crop: int = 72, tile: int = 36, scale: float = 2.0) -> tuple[list[dict], str]:
    """Tiled vs whole-image output with the non-local branch (the one approximation): PSNR, and the
    mean error on output rows/columns within 2 px of a tile border vs elsewhere (a seam would
    raise the first). Centre crops of RealSRSet photos from ../shared, read only."""
    import numpy as np
    import torch
    from PIL import Image

    from realciao.inference import upscale
    from realciao.metrics import fullref
    from realciao.tiling import TiledUpscaler, split_cores

    model, weights = load_model("cpu")
    folder = ROOT.parent / "shared" / "data" / "RealSRSet"
    size = (round(crop * scale), round(crop * scale))
    what = f"{weights}, {crop}x{crop} centre crops -> x{scale}, tile {tile}"
    print(what)
    rows = []
    for name in ["building.png", "butterfly.png", "dog.png"]:
        image = np.asarray(Image.open(folder / name).convert("RGB"))
        top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
        lr = image[top : top + crop, left : left + crop].astype(np.float32) / 255
        whole = upscale(model, torch.from_numpy(lr).permute(2, 0, 1)[None], size)[0].permute(1, 2, 0).numpy()
        tiled, _ = TiledUpscaler(model, tile=tile)(lr, size)
        error = np.abs(tiled - whole).mean(axis=2)
        border = np.zeros(size[0], bool)
        for _, stop in split_cores(crop, tile)[:-1]:
            edge = round(stop * scale)
            border[edge - 2 : edge + 2] = True
        lines = np.concatenate([error.mean(1), error.mean(0)])
        near = np.concatenate([border, border])
        psnr = fullref.psnr(torch.from_numpy(tiled), torch.from_numpy(whole), y_channel=False)
        print(
            f"{name}: PSNR {psnr:.2f} dB; mean abs error near tile borders {lines[near].mean():.5f}, "
            f"elsewhere {lines[~near].mean():.5f}"
        )
        rows.append(
            {
                "image": name,
                "tiled vs whole-image PSNR dB": f"{psnr:.2f}",
                "mean abs error within 2 px of a tile border": f"{lines[near].mean():.5f}",
                "elsewhere": f"{lines[~near].mean():.5f}",
            }
        )
    return rows, what


def in_subprocess(config: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(config)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"config {config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=float, nargs="+", help="output megapixels (default 0.25 1 4; +12 48 on GPU)"
    )
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--tile", type=int, default=96, help="LR tile side, fixed across sizes (default 96)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    add_json_argument(parser)
    parser.add_argument(
        "--no-keep-memory",
        action="store_true",
        help="glibc's default allocator behaviour (realciao-upscale keeps freed memory on the CPU)",
    )
    parser.add_argument("--agreement", action="store_true", help="tiled vs whole-image agreement instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agreement:
        rows, what = agreement()
        if args.json:
            table = BenchmarkTable(
                title="tiled against whole image, with the non-local branch", columns=list(rows[0]), rows=rows
            )
            print(f"wrote {write_results(args.json, 'upscale_agreement', [table], [what])}")
        return
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return

    import torch

    from realciao.devices import describe_cpu

    print(describe_cpu(), flush=True)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.sizes or ([0.25, 1, 4, 12, 48] if device.startswith("cuda") else [0.25, 1, 4])
    base = {"device": device, "scale": args.scale, "tile": args.tile, "keep_memory": not args.no_keep_memory}
    results = []
    for precision in args.precisions:
        configs = [{**base, "kind": "untiled", "precision": precision, "megapixels": None}]
        configs += [{**base, "kind": "tiled", "precision": precision, "megapixels": mp} for mp in sizes]
        for config in configs:
            result = in_subprocess(config)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    table, what = print_table(results)
    if args.json:
        machine = describe_cpu() + (
            f"; GPU: {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
        )
        print(f"wrote {write_results(args.json, 'upscale', [table], [what], machine=machine)}")


def print_table(results: list[dict]) -> tuple[BenchmarkTable, str]:
    """The results as a table, printed; returns it and the line that says what ran."""
    first = results[0]
    what = (
        f"device {first['device']} ({first['threads']} threads), x{first['scale']}, tile {first['tile']}, "
        f"EDSR-baseline-CiaoSR ({first['weights']}); "
        f"{'freed memory kept (realciao/allocator.py)' if first['kept'] else 'glibc default allocator'}"
    )
    print(f"\n{what}\n")
    columns = [
        "run",
        "precision",
        "LR",
        "output",
        "MP/s",
        "untiled MP/s, same process",
        "wall time per MP vs untiled",
        "CPU time per MP vs untiled",
        "peak RSS MiB",
        "peak GPU MiB",
    ]
    rows = []
    for r in results:
        ratio = f"{r['untiled_mp_per_s'] / r['mp_per_s']:.2f}" if r["kind"] == "tiled" else "1"
        cpu_ratio = r["cpu_seconds"] / r["out_mp"] / r["untiled_cpu_s_per_mp"] if r["kind"] == "tiled" else 1
        gpu = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "-"
        name = "untiled, one tile" if r["kind"] == "untiled" else f"tiled {r['megapixels']} MP"
        cells = [
            name,
            r["precision"],
            str(r["lr"]),
            str(r["out"]),
            f"{r['mp_per_s']:.4f}",
            f"{r['untiled_mp_per_s']:.4f}",
            ratio,
            f"{cpu_ratio:.2f}",
            f"{r['peak_rss_mib']:.0f}",
            gpu,
        ]
        rows.append(dict(zip(columns, cells)))
    table = BenchmarkTable(columns=columns, rows=rows)
    print(table_markdown(table))
    return table, what


if __name__ == "__main__":
    main()
