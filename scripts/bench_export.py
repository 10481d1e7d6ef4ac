"""onnxruntime (CPU provider) against realciao's PyTorch inference, on the same images, in one run.

    nice python scripts/bench_export.py             # 48 -> x4 and 128 -> x2, fp32 and fp16 graphs
    python scripts/bench_export.py --repeats 5

The model is the full-size EDSR-baseline-CiaoSR with the non-local branch (the official-format
fixture weights when present, else random initialisation: same cost), exported once as an
any-size graph (``realciao-export --arbitrary``) per precision. Each case runs the whole image:
``realciao.upscale`` in fp32 (PyTorch, 2 threads, freed memory kept as realciao's commands keep it) and the graph with onnxruntime's CPU provider
(2 intra-op threads, default settings otherwise); the median of ``--repeats`` timed runs after
one warm-up (the runs interleaved within each repeat), the ratio PyTorch / onnxruntime (above 1: onnxruntime faster), and the PSNR of
the graph's output against PyTorch's. bf16 graphs are listed but not run: onnxruntime's CPU
provider has no bf16 kernels for the graph's Conv and MatMul nodes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "ciaosr_official" / "weights.safetensors"
CASES = ((48, 4), (128, 2))  # (LR side, scale)
THREADS = 2


def load_model():
    import torch

    from realciao.archs import build_generator
    from realciao.checkpoint import load_generator

    if FIXTURE.exists():
        return load_generator(FIXTURE), "fixture weights"
    torch.manual_seed(0)
    return build_generator("edsr-baseline-ciaosr").eval(), "random init"


def interleaved_medians(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each named run, timed in turn within every repeat (after one warm-up
    each), so that a burst of load from other processes falls on all of them alike."""
    for run in runs.values():
        run()  # warm-up: first-call allocations and kernel selection
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"  ({name}: {', '.join(f'{v:.2f}' for v in values)} s)")
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    add_json_argument(parser)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from realciao.allocator import keep_freed_memory
    from realciao.devices import describe_cpu
    from realciao.export import ExportOptions, export_onnx
    from realciao.inference import upscale
    from realciao.metrics import psnr

    torch.set_num_threads(THREADS)
    keep_freed_memory()  # as realciao-upscale and realciao-eval do on the CPU (the whole process: both sides)
    model, source = load_model()
    print(describe_cpu())
    notes = [
        "load average before: {:.2f} {:.2f} {:.2f} (other processes on these cores skew both sides)".format(
            *os.getloadavg()
        ),
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime {onnxruntime.__version__}, "
        f"CPUExecutionProvider, {THREADS} intra-op threads; EDSR-baseline-CiaoSR with non-local ({source}); "
        f"whole image, median of {args.repeats}",
    ]
    print("\n".join(notes))
    rows = []
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as folder:
        sessions = {}
        for precision in ("fp32", "fp16"):
            path = Path(folder) / f"{precision}.onnx"
            export_onnx(model, path, ExportOptions(scale=None, precision=precision, check=False))
            sessions[precision] = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        print("bf16: not run (onnxruntime's CPU provider has no bf16 Conv/MatMul kernels)")
        for side, scale in CASES:
            lr = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
            size = (side * scale, side * scale)
            feed = {"image": lr.numpy(), "size": np.array(size, dtype=np.int64)}
            runs = {"PyTorch fp32": lambda lr=lr, size=size: upscale(model, lr, size)}
            runs |= {
                f"onnxruntime {p}": lambda s=s, feed=feed: s.run(None, feed) for p, s in sessions.items()
            }
            seconds = interleaved_medians(runs, args.repeats)
            expected = upscale(model, lr, size).numpy()
            torch_s = seconds["PyTorch fp32"]
            print(f"{side} -> x{scale} ({size[1]}x{size[0]}): PyTorch fp32 {torch_s:.3f} s")
            row = {"LR -> output": f"{side}x{side} -> x{scale}", "PyTorch fp32 s": f"{torch_s:.3f}"}
            for precision, session in sessions.items():
                ort_s = seconds[f"onnxruntime {precision}"]
                got = torch.from_numpy(session.run(None, feed)[0])
                agreement = psnr(got, torch.from_numpy(expected), y_channel=False)
                print(
                    f"  onnxruntime {precision}: {ort_s:.3f} s, PyTorch/onnxruntime {torch_s / ort_s:.2f}x, "
                    f"PSNR {agreement:.1f} dB against PyTorch fp32"
                )
                row |= {
                    f"onnxruntime {precision} s": f"{ort_s:.3f}",
                    f"PyTorch / onnxruntime {precision}": f"{torch_s / ort_s:.2f}x",
                    f"onnxruntime {precision} PSNR vs PyTorch": f"{agreement:.1f} dB",
                }
            rows.append(row)
    notes.append("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(notes[-1])
    if args.json:
        table = BenchmarkTable(columns=list(rows[0]), rows=rows)
        notes.append("bf16: not run (onnxruntime's CPU provider has no bf16 Conv/MatMul kernels)")
        print(f"wrote {write_results(args.json, 'export', [table], notes)}")


if __name__ == "__main__":
    main()
