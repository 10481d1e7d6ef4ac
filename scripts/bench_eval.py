"""Throughput of ``realciao-eval`` on real photos, against plain loops doing the same work in
the same process: RealSRSet at x4, NIQE and PIQE.

- bicubic (default): realciao-eval (bicubic only, with its report) against a pyiqa loop over
  PIL-bicubic outputs. Goal: 20 RealSRSet images within 60 s on 2 CPU cores.
- ``--peer``: one spandrel model (a random-weight Real-ESRGAN general-x4v3 compact model,
  SRVGG 64 features x 32 convs, or ``--peer-file`` with your weights) scored by realciao-eval
  beside bicubic, against the model's own inference (spandrel's call on the whole image, as
  Real-ESRGAN runs on the CPU) plus the same metrics. Goal: scoring a peer costs no more than
  its inference plus the metrics (ratio <= 1.0, within timing noise).

    python scripts/bench_eval.py                        # bicubic, ../shared/data/RealSRSet, median of 3
    python scripts/bench_eval.py --peer --max-images 8  # one spandrel model
    python scripts/bench_eval.py --runs 1 --folder DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.devices import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def photos(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    return files[: limit or None]


def realciao_run(folder: Path, weights: Path, threads: int, peer: Path | None = None) -> dict[str, float]:
    """Wall seconds of the whole command, and its own per-method seconds (upscale + metrics)."""
    from realciao.cli import evaluate

    with tempfile.TemporaryDirectory() as out:
        args = [
            "--real",
            str(folder),
            "--scale",
            "4",
            "--metrics",
            "niqe,piqe",
            "--weights-dir",
            str(weights),
            "--precision",
            "fp32",
            "--threads",
            str(threads),
            "-o",
            out,
            "--quiet",
        ]
        if peer is not None:
            args += ["--label", f"peer={peer}"]
        start = time.perf_counter()
        code = evaluate.main(args)
        seconds = {"total": time.perf_counter() - start}
        if code:
            raise SystemExit(f"realciao-eval failed with exit code {code}")
        for key, value in json.loads((Path(out) / "results.json").read_text())["seconds"].items():
            seconds[key.rsplit("|", 1)[1]] = value
    return seconds


def plain_run(files: list[Path], weights: Path, peer: Path | None = None) -> dict[str, float]:
    """The same work without realciao: PIL bicubic, the peer's own call, pyiqa metrics."""
    from realciao.metrics.iqa import create_pyiqa_metric

    start = time.perf_counter()
    niqe = create_pyiqa_metric("niqe", weights_dir=weights)
    piqe = create_pyiqa_metric("piqe", weights_dir=weights)
    model = None
    if peer is not None:
        from spandrel import ModelLoader

        model = ModelLoader("cpu").load_from_file(peer).eval()
    seconds = {"bicubic": 0.0, "peer": 0.0}
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            t = time.perf_counter()
            up = image.resize((image.width * 4, image.height * 4), Image.BICUBIC)
            x = torch.from_numpy(np.array(up)).permute(2, 0, 1)[None].contiguous().float() / 255
            niqe(x), piqe(x)
            seconds["bicubic"] += time.perf_counter() - t
            if model is not None:
                t = time.perf_counter()
                lr = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].contiguous().float() / 255
                sr = model(lr).contiguous()  # spandrel: pads to the size requirements, runs, clamps, crops
                niqe(sr), piqe(sr)
                seconds["peer"] += time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    return seconds


def random_compact_peer(folder: Path) -> Path:
    """Real-ESRGAN's general x4v3 architecture (SRVGG: 64 features, 32 convs, PReLU), random weights."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
    path = folder / "realesr-general-x4v3-random.pth"
    torch.save({"params": model.state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=SHARED / "RealSRSet")
    parser.add_argument("--weights-dir", type=Path, default=SHARED / "iqa_params")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-images", type=int, default=0, help="first N photos (0: all)")
    parser.add_argument("--peer", action="store_true", help="also score one spandrel model")
    parser.add_argument(
        "--peer-file",
        type=Path,
        default=None,
        help="the spandrel model (default: a random general-x4v3 compact model)",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"no image folder at {args.folder} (pass --folder)")
    torch.set_num_threads(args.threads)
    print(f"{describe_cpu()}; {args.threads} threads")
    with tempfile.TemporaryDirectory() as scratch:
        files = photos(args.folder, args.max_images)
        folder = args.folder
        if args.max_images:
            folder = Path(scratch) / args.folder.name
            folder.mkdir()
            for path in files:
                (folder / path.name).symlink_to(path.resolve())
        peer = (args.peer_file or random_compact_peer(Path(scratch))) if args.peer or args.peer_file else None
        # untimed warm-up: oneDNN builds its kernels once per process for each new image shape,
        # and whichever ran first would pay for the other; the plain loop visits every shape
        first = Path(scratch) / "warm-up"
        first.mkdir()
        (first / files[0].name).symlink_to(files[0].resolve())
        realciao_run(first, args.weights_dir, args.threads, peer)
        plain_run(files, args.weights_dir, peer)
        ours, plain = [], []
        for run in range(args.runs):  # interleaved, alternating who goes first: load changes hit both
            if run % 2:
                plain.append(plain_run(files, args.weights_dir, peer))
            ours.append(realciao_run(folder, args.weights_dir, args.threads, peer))
            if not run % 2:
                plain.append(plain_run(files, args.weights_dir, peer))

    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    what = f"x4, NIQE + PIQE, {args.threads} threads, {args.runs} run(s), median"
    print(f"{args.folder.name}: {len(files)} photos, {what}")
    runs = ", ".join(f"{run['total']:.1f}" for run in ours)
    print(
        f"realciao-eval: {median(ours, 'total'):.1f} s in all (runs: {runs})"
        + ("; goal 60 s for 20 photos" if peer is None else "")
    )
    print(f"plain loop: {median(plain, 'total'):.1f} s in all")
    print(f"ratio in all, realciao-eval / plain loop: {median(ours, 'total') / median(plain, 'total'):.2f}")
    print(
        f"bicubic rows: realciao-eval {median(ours, 'bicubic'):.1f} s, plain (PIL bicubic + metrics) "
        f"{median(plain, 'bicubic'):.1f} s"
    )
    if peer is not None:
        ratio = median(ours, "peer") / median(plain, "peer")
        print(
            f"peer ({peer.name}) rows: realciao-eval {median(ours, 'peer'):.1f} s (upscale, 8-bit, metrics), "
            f"its own inference + metrics {median(plain, 'peer'):.1f} s; ratio {ratio:.2f} (goal <= 1.0)"
        )
    if args.json:
        parts = {"the whole command": "total", "bicubic rows": "bicubic"}
        if peer is not None:
            parts[f"peer ({peer.name}) rows"] = "peer"
        rows = [
            {
                "what": label,
                "realciao-eval s": f"{median(ours, key):.1f}",
                "plain loop s": f"{median(plain, key):.1f}",
                "realciao-eval / plain loop": f"{median(ours, key) / median(plain, key):.2f}",
            }
            for label, key in parts.items()
        ]
        notes = [f"{args.folder.name}: {len(files)} photos, {what}; realciao-eval runs: {runs} s"]
        print(
            f"wrote {write_results(args.json, 'eval', [BenchmarkTable(columns=list(rows[0]), rows=rows)], notes)}"
        )


if __name__ == "__main__":
    main()
