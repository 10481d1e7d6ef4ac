"""realciao-app's two targets: start-up to a served page, and the page's overhead over realciao-upscale.

    python scripts/bench_app.py                                  # 3 start-ups, 5 timed upscales each way
    python scripts/bench_app.py --startups 1 --repeats 2         # a quick check that it works

Start-up: ``python -m realciao.cli.app`` in a fresh process, from its launch until GET / answers
200 (imports, model loading and Gradio included); target 20 s on 2 cores.

Overhead: the same 0.5-megapixel result (a synthetic 4:3 photo, JPEG, at x2) made two ways,
taking turns so that both see the same machine load: through the app's ``/upscale`` endpoint
with gradio_client (upload, queue, upscale, write, download), and with the function
realciao-upscale runs for each image (``realciao.cli.upscale.process``: read, upscale, write),
in a process of its own that has set up and loaded the model once, as the command has after its
start-up, and is told over a pipe when to run. Same model, fp32 and tile settings; threads as
the commands choose them (the cores available, fewer while other processes hold cores), or
--threads for both; target: the app at most 10 % slower.

The model is the full-size EDSR-baseline-CiaoSR: the official-format fixture weights when
../shared has them, else random initialisation (same cost).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_upscale import FIXTURE, lr_shape, synthetic_photo

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results

STARTUP_TIMEOUT = 300


def model_file(folder: Path) -> tuple[Path, str]:
    if FIXTURE.exists():
        return FIXTURE, "fixture weights"
    import torch

    from realciao.archs import build_generator
    from realciao.checkpoint import save_generator

    torch.manual_seed(0)
    return save_generator(
        build_generator("edsr-baseline-ciaosr").eval(), folder / "model.safetensors"
    ), "random init"


def threads_option(threads: int) -> list[str]:
    """0: as the commands choose (the cores, fewer while other processes hold them)."""
    return ["--threads", str(threads)] if threads else []


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(model: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str, float]:
    """The app in a new process, and the seconds until its page is served."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "realciao.cli.app",
        "--model",
        str(model),
        "--port",
        str(port),
        "--precision",
        "fp32",
        *threads_option(threads),
    ]
    start = time.perf_counter()
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    while True:
        if process.poll() is not None or time.perf_counter() - start > STARTUP_TIMEOUT:
            process.kill()
            raise RuntimeError(f"realciao-app did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process, url, time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def cli_worker(model_path: Path, photo: Path, output: Path, threads: int) -> None:
    """In its own process, as the command has it after start-up: realciao-upscale's parser, the
    allocator setting and the model, then ``process`` (its per-image function: read, upscale,
    write) once per line on stdin, printing the seconds of each."""
    from realciao.allocator import keep_freed_memory
    from realciao.checkpoint import load_generator
    from realciao.cli.upscale import Job, Summary, build_parser, check_arguments, make_tile_bar, process
    from realciao.devices import ThreadGovernor, configure_threads

    parser = build_parser()
    args = parser.parse_args(
        [
            "-i",
            str(photo),
            "-o",
            str(output),
            "--model",
            str(model_path),
            "-s",
            "2",
            "--precision",
            "fp32",
            *threads_option(threads),
            "--overwrite",
            "--no-progress",
        ]
    )
    request = check_arguments(parser, args)
    governor = ThreadGovernor(configure_threads(args.threads))
    keep_freed_memory()  # as realciao-upscale does on the CPU
    model = load_generator(model_path)
    tile_bar = make_tile_bar(False, governor.adjust)
    print("ready", flush=True)
    for _ in sys.stdin:
        summary = Summary()
        start = time.perf_counter()
        governor.adjust()
        process(Job(photo, output / photo.stem), args, model, request, summary, tile_bar)
        seconds = time.perf_counter() - start
        print(f"failed {summary.failed}" if summary.failed else f"{seconds} {summary.written[0]}", flush=True)


class CliProcess:
    """``cli_worker`` in a new process; ``run()`` times one image there."""

    def __init__(self, model: Path, photo: Path, output: Path, threads: int):
        command = [
            sys.executable,
            __file__,
            "--cli-worker",
            str(model),
            str(photo),
            str(output),
            str(threads),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("realciao-upscale's worker did not start")

    def run(self) -> tuple[float, Path]:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer or answer.startswith("failed"):
            raise RuntimeError(f"realciao-upscale's worker: {answer or 'no answer'}")
        seconds, path = answer.split(" ", 1)
        return float(seconds), Path(path)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def rgb_psnr(first: Path, second: Path) -> float:
    import torch

    from realciao.imageio import read_image, to_float_rgb
    from realciao.metrics import psnr

    def tensor(path: Path) -> torch.Tensor:
        return torch.from_numpy(to_float_rgb(read_image(path).pixels)).permute(2, 0, 1)[None]

    return psnr(tensor(first), tensor(second), y_channel=False)


def context_switches(pid: int) -> int | None:
    """Times the process's threads gave up the CPU while waiting (Linux /proc; None elsewhere):
    threads that sleep at OpenMP barriers instead of spinning show here (see realciao/app/model_thread.py)."""
    try:
        return sum(
            int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir()
            for line in (task / "status").read_text().splitlines()
            if line.startswith("voluntary_ctxt_switches")
        )
    except OSError:
        return None


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--startups", type=int, default=3, help="app start-ups timed")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed upscales each way (after one warm-up each)"
    )
    parser.add_argument("--megapixels", type=float, default=0.5, help="output size of the overhead test")
    parser.add_argument("--threads", type=int, default=0, help="for both (default: as the commands choose)")
    parser.add_argument("--cli-worker", nargs=4, help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.cli_worker:
        model, photo, output, threads = args.cli_worker
        cli_worker(Path(model), Path(photo), Path(output), int(threads))
        return

    from gradio_client import Client, handle_file
    from PIL import Image

    from realciao.devices import describe_cpu

    threads = args.threads
    print(describe_cpu(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as scratch:
        folder = Path(scratch)
        model, weights = model_file(folder)
        print(
            f"model: EDSR-baseline-CiaoSR ({weights}); fp32; threads: {threads or 'as the commands choose'}",
            flush=True,
        )

        startups = []
        for index in range(args.startups):
            process, _, seconds = start_app(model, threads, folder / "app.log")
            stop(process)
            startups.append(seconds)
            print(f"start-up {index + 1}: {seconds:.1f} s", flush=True)

        height, width = lr_shape(args.megapixels, 2.0)
        photo = folder / "photo.jpg"
        Image.fromarray(synthetic_photo(height, width)).save(photo, quality=95)
        cli = CliProcess(model, photo, folder / "cli", threads)
        process, url, _ = start_app(model, threads, folder / "app.log")
        try:
            client = Client(url, download_files=str(folder / "downloads"), verbose=False)

            def app() -> Path:
                return Path(client.predict(handle_file(str(photo)), 2.0, api_name="/upscale"))

            agreement = rgb_psnr(app(), cli.run()[1])  # the warm-ups
            times = {"app": [], "cli": []}
            switches = {"app": [], "cli": []}
            for _ in range(args.repeats):
                before = context_switches(cli.process.pid)
                times["cli"].append(cli.run()[0])
                switches["cli"].append((before, context_switches(cli.process.pid)))
                before = context_switches(process.pid)
                times["app"].append(timed(app))
                switches["app"].append((before, context_switches(process.pid)))
            # the app's own log: read, upscale and write of each request, without Gradio's share
            served = [
                float(seconds)
                for seconds in re.findall(
                    r"photo\.jpg: .*, ([\d.]+) s \(upscaling", (folder / "app.log").read_text()
                )
            ][1:]
            # the thread governor's word, if it gave threads away during the runs
            gave_way = [line for line in (folder / "app.log").read_text().splitlines() if "other processes" in line]
        finally:
            stop(process)
            cli.close()
    out_mp = 4 * height * width / 1e6
    app_s, cli_s = statistics.median(times["app"]), statistics.median(times["cli"])
    if startups:
        print(
            f"\nstart-up to a served page (model loading included), median of {len(startups)}: "
            f"{statistics.median(startups):.1f} s (target <= 20 s on 2 cores); all: "
            f"{', '.join(f'{s:.1f}' for s in startups)}"
        )
    print(
        f"{width}x{height} JPEG -> {2 * width}x{2 * height} ({out_mp:.2f} MP), median of {args.repeats}, taking turns:"
    )
    print(
        f"  realciao-upscale's per-image function (realciao.cli.upscale.process, own process): {cli_s:.2f} s"
    )
    print(f"  the app's /upscale through gradio_client (upload, upscale, write, download):    {app_s:.2f} s")
    gradio_share = statistics.median(t - s for t, s in zip(times["app"], served)) if served else None
    if served:
        print(
            f"    of which the app's own read, upscale and write: {statistics.median(served):.2f} s; Gradio's share "
            f"(upload, queue, download): {gradio_share:.2f} s ({100 * gradio_share / app_s:.1f} %)"
        )
    per_run = {
        side: statistics.median(after - before for before, after in pairs) if pairs[0][0] is not None else None
        for side, pairs in switches.items()
    }
    if per_run["app"] is not None:
        print(
            f"    voluntary context switches per image (median; /proc): app {per_run['app']:,.0f}, "
            f"realciao-upscale {per_run['cli']:,.0f}"
        )
    for line in gave_way:
        print(f"    the app: {line}")
    print(
        f"  ratio app / realciao-upscale: {app_s / cli_s:.3f} (overhead {100 * (app_s / cli_s - 1):+.1f} %; "
        f"target <= +10 %); the two results agree to {agreement:.1f} dB RGB PSNR (target >= 60, inf: identical)"
    )
    if args.json:
        rows = [{"measure": "start-up to a served page (s)", "median": statistics.median(startups),
                 "target": "<= 20", "runs": len(startups)}] if startups else []
        rows += [
            {"measure": "realciao-upscale's per-image function (s)", "median": cli_s, "runs": args.repeats},
            {"measure": "the app's /upscale through gradio_client (s)", "median": app_s, "runs": args.repeats},
            {"measure": "of which Gradio's upload, queue and download (s)", "median": gradio_share,
             "runs": len(served)},
            {"measure": "app / realciao-upscale", "median": app_s / cli_s, "target": "<= 1.10",
             "runs": args.repeats},
        ]
        table = BenchmarkTable(
            title=f"{width}x{height} JPEG at x2 ({out_mp:.2f} MP out), taking turns",
            columns=["measure", "median", "target", "runs"],
            rows=rows,
        )
        notes = [
            f"EDSR-baseline-CiaoSR ({weights}), fp32, threads: {threads or 'as the commands choose'}; "
            f"the two results agree to {agreement:.1f} dB RGB PSNR"
        ]
        print(f"wrote {write_results(args.json, 'app', [table], notes)}")


if __name__ == "__main__":
    main()
