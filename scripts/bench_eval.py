"""Throughput of ``realciao-eval`` on real photos: bicubic x4 on RealSRSet with NIQE and PIQE
(BRISQUE needs a weight file that is not available offline), against the same metrics
computed by a plain pyiqa loop over PIL-bicubic outputs in the same run.

    python scripts/bench_eval.py                 # ../shared/data/RealSRSet, median of 3 runs
    python scripts/bench_eval.py --runs 1 --folder DIR

The goal for realciao-eval: 20 RealSRSet images within 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def realciao_run(folder: Path, weights: Path) -> float:
    from realciao.cli import evaluate

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        code = evaluate.main(["--real", str(folder), "--scale", "4", "--metrics", "niqe,piqe", "--weights-dir",
                              str(weights), "-o", out, "--quiet"])
        seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"realciao-eval failed with exit code {code}")
    return seconds


def plain_pyiqa_run(folder: Path, weights: Path) -> float:
    from realciao.metrics.iqa import create_pyiqa_metric

    start = time.perf_counter()
    niqe = create_pyiqa_metric("niqe", weights_dir=weights)
    piqe = create_pyiqa_metric("piqe", weights_dir=weights)
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")):
        image = Image.open(path).convert("RGB")
        image = image.resize((image.width * 4, image.height * 4), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(image)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            niqe(x), piqe(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=SHARED / "RealSRSet")
    parser.add_argument("--weights-dir", type=Path, default=SHARED / "iqa_params")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"no image folder at {args.folder} (pass --folder)")
    torch.set_num_threads(args.threads)
    ours, plain = [], []
    for _ in range(args.runs):
        ours.append(realciao_run(args.folder, args.weights_dir))
        plain.append(plain_pyiqa_run(args.folder, args.weights_dir))
    count = len([p for p in args.folder.iterdir() if p.is_file()])
    print(f"{args.folder.name}: {count} files, x4 bicubic, NIQE + PIQE, {args.threads} threads, {args.runs} runs")
    print(f"realciao-eval: median {statistics.median(ours):.1f} s (runs: {', '.join(f'{t:.1f}' for t in ours)}); goal 60 s")
    print(f"plain pyiqa loop (PIL bicubic, no report): median {statistics.median(plain):.1f} s")
    print(f"ratio realciao-eval / plain loop: {statistics.median(ours) / statistics.median(plain):.2f}")


if __name__ == "__main__":
    main()
