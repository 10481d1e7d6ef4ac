"""Photo upscaling speed, the way a user decides: realciao against Real-ESRGAN, same run.

One phone-photo-sized LR (default 640x480, made from a RealSRSet photo), tiled as the
commands tile, on ``--threads`` threads. Real-ESRGAN x4plus runs through realciao's peer path
(spandrel, ``realciao.peers``) as users run it: x4, then a MATLAB-bicubic resize to the size
asked for (``--outscale``). Its x4 pass is timed once and reused for x2 and x3, whose time is
that pass plus their own resize, timed separately: the same work ``PeerModel.upscale`` does
per scale. realciao's EDSR-baseline-CiaoSR (official fixture weights when ``../shared`` has
them) and ``rrdb-ciaosr`` (its encoder from the Real-ESRGAN trunk) compute only the pixels
asked for, at each scale. Speed does not depend on the weights' values, only on the shapes.

Prints output megapixels per second per method, scale and precision (fp32, and what ``auto``
picks here; a precision equal to fp32 is not run twice), and the same-run ratio of each
realciao row against Real-ESRGAN at that scale (> 1: realciao faster), with the CPU named.

    python scripts/bench_photo.py                       # 640x480 LR, x2 x3 x4, fp32 + auto
    python scripts/bench_photo.py --lr-size 320x240 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.devices import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL_ESRGAN = SHARED / "weights" / "RealESRGAN_x4plus.safetensors"
FIXTURE = SHARED / "fixtures" / "ciaosr_official" / "weights.safetensors"
PHOTO = SHARED / "data" / "RealSRSet" / "building.png"
PEER_LABEL = "Real-ESRGAN x4plus"


def photo(height: int, width: int) -> np.ndarray:
    """A real photo brought to (height, width) by reflection (random pixels without ../shared)."""
    if not PHOTO.is_file():
        return np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    from realciao.imageio import read_image

    pixels = read_image(PHOTO).pixels.astype(np.float32) / 255.0
    while pixels.shape[0] < height or pixels.shape[1] < width:
        pixels = np.pad(
            pixels,
            (
                (0, max(0, min(height - pixels.shape[0], pixels.shape[0] - 1))),
                (0, max(0, min(width - pixels.shape[1], pixels.shape[1] - 1))),
                (0, 0),
            ),
            mode="reflect",
        )
    return np.ascontiguousarray(pixels[:height, :width])


def timed(run, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def peer_x4(peer, image: np.ndarray, size: tuple[int, int], precision: str) -> np.ndarray:
    return peer.upscale(image, size, precision=precision).image


def realciao_models() -> dict[str, torch.nn.Module]:
    import realciao

    edsr = (
        realciao.load_generator(FIXTURE)
        if FIXTURE.is_file()
        else realciao.build_generator("edsr-baseline-ciaosr")
    )
    rrdb = realciao.build_generator("rrdb-ciaosr", encoder_weights=REAL_ESRGAN)
    return {"EDSR-baseline-CiaoSR": edsr.eval(), "rrdb-ciaosr": rrdb.eval()}


def auto_precision(probe) -> str:
    from realciao.autoprecision import decide_precision

    return decide_precision("auto", torch.device("cpu"), probe).precision


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lr-size", default="640x480", help="LR width x height (default 640x480)")
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per row; the median is printed")
    parser.add_argument("--threads", type=int, default=2)
    add_json_argument(parser)
    args = parser.parse_args()
    if not REAL_ESRGAN.is_file():
        raise SystemExit(f"needs Real-ESRGAN's weights at {REAL_ESRGAN}")
    width, height = (int(v) for v in args.lr_size.lower().split("x"))
    torch.set_num_threads(args.threads)

    from realciao.bicubic import matlab_resize
    from realciao.evaluation.methods import PeerMethod
    from realciao.evaluation.protocols import peer_probe
    from realciao.inference import inference_probe
    from realciao.peers import load_peer
    from realciao.upscaling import upscale_array

    print(describe_cpu(), flush=True)
    setting = f"LR {width}x{height}, {args.threads} threads, median of {args.repeats}; output MP/s (higher is faster)"
    print(setting, flush=True)
    image = photo(height, width)
    sizes = {scale: (round(height * scale), round(width * scale)) for scale in args.scales}
    peer = PeerMethod(PEER_LABEL, load_peer(REAL_ESRGAN))
    models = realciao_models()
    rows: list[tuple[str, str, float, float]] = []  # method, precision, scale, seconds
    precisions = {"fp32": ["fp32"], PEER_LABEL: ["fp32"]}
    peer_auto = auto_precision(peer_probe(peer))
    if peer_auto != "fp32":
        precisions[PEER_LABEL].append(peer_auto)
    print(f"auto picks {peer_auto} for {PEER_LABEL}", flush=True)

    for precision in precisions[PEER_LABEL]:
        x4 = (height * 4, width * 4)
        native, out = timed(functools.partial(peer_x4, peer.peer, image, x4, precision), args.repeats)
        for scale, size in sizes.items():
            resize = 0.0
            if size != x4:
                chw = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
                resize, _ = timed(functools.partial(matlab_resize, chw, size), args.repeats)
            rows.append((PEER_LABEL, precision, scale, native + resize))
            print(
                f"  {PEER_LABEL:24s} {precision:5s} x{scale:g}: {size[1] * size[0] / 1e6 / rows[-1][3]:.4f} MP/s "
                f"({rows[-1][3]:.1f} s)",
                flush=True,
            )

    for name, model in models.items():
        chosen = {scale: auto_precision(inference_probe(model, scale)) for scale in args.scales}
        print(f"auto picks {', '.join(f'x{s:g} {p}' for s, p in chosen.items())} for {name}", flush=True)
        for scale, size in sizes.items():
            for precision in dict.fromkeys(["fp32", chosen[scale]]):
                run = functools.partial(upscale_array, model, image, size, precision=precision)
                seconds, _ = timed(run, args.repeats)
                rows.append((name, precision, scale, seconds))
                print(
                    f"  {name:24s} {precision:5s} x{scale:g}: {size[1] * size[0] / 1e6 / seconds:.4f} MP/s "
                    f"({seconds:.1f} s)",
                    flush=True,
                )

    peer_fp32 = {
        scale: seconds
        for method, precision, scale, seconds in rows
        if method == PEER_LABEL and precision == "fp32"
    }
    print("\nmethod                    precision  scale  output MP/s  vs Real-ESRGAN fp32 (same run)")
    table = []
    for method, precision, scale, seconds in rows:
        megapixels = sizes[scale][0] * sizes[scale][1] / 1e6
        ratio = peer_fp32[scale] / seconds
        print(f"{method:25s} {precision:9s} x{scale:<5g} {megapixels / seconds:11.4f}  {ratio:.2f}x")
        table.append(
            {
                "method": method,
                "precision": precision,
                "scale": f"x{scale:g}",
                "output MP/s": f"{megapixels / seconds:.4f}",
                "vs Real-ESRGAN fp32 (same run)": f"{ratio:.2f}x",
            }
        )
    if args.json:
        table = BenchmarkTable(columns=list(table[0]), rows=table)
        print(f"wrote {write_results(args.json, 'photo', [table], [setting])}")


if __name__ == "__main__":
    main()
