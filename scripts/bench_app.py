"""realciao-app's two targets: start-up to a served page, and the page's overhead over realciao-upscale.

    python scripts/bench_app.py                                  # 3 start-ups, 5 timed upscales each way
    python scripts/bench_app.py --startups 1 --repeats 2         # a quick check that it works

Start-up: ``python -m realciao.cli.app`` in a fresh process, from its launch until GET / answers
200 (imports, model loading and Gradio included); target 20 s on 2 cores.

Overhead: the same 0.5-megapixel result (a synthetic 4:3 photo, JPEG, at x2) made two ways,
taking turns so that both see the same machine load: through the app's ``/upscale`` endpoint
with gradio_client (upload, queue, upscale, write, download), and with the function
realciao-upscale runs for each image (``realciao.cli.upscale.process``: read, upscale, write),
in this process, with the model loaded once, as the command has it after start-up. Same model,
fp32, threads and tile settings; target: the app at most 10 % slower.

The model is the full-size EDSR-baseline-CiaoSR: the official-format fixture weights when
../shared has them, else random initialisation (same cost).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_upscale import FIXTURE, lr_shape, synthetic_photo

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
        "--threads",
        str(threads),
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


def cli_upscaler(model_path: Path, photo: Path, output: Path, threads: int):
    """A function that does realciao-upscale's work for ``photo`` once (its own ``process``)."""
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
            "--threads",
            str(threads),
            "--overwrite",
            "--no-progress",
        ]
    )
    request = check_arguments(parser, args)
    governor = ThreadGovernor(configure_threads(args.threads))
    model = load_generator(model_path)
    tile_bar = make_tile_bar(False, governor.adjust)

    def run() -> Path:
        summary = Summary()
        process(Job(photo, output / photo.stem), args, model, request, summary, tile_bar)
        if summary.failed:
            raise RuntimeError(summary.failed)
        return summary.written[0]

    return run


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
    parser.add_argument("--threads", type=int, default=None, help="default: the cores available")
    args = parser.parse_args()

    from gradio_client import Client, handle_file
    from PIL import Image

    from realciao.devices import available_cores, describe_cpu
    from realciao.imageio import read_image

    threads = args.threads or available_cores()
    print(describe_cpu(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as scratch:
        folder = Path(scratch)
        model, weights = model_file(folder)
        print(f"model: EDSR-baseline-CiaoSR ({weights}); fp32; {threads} thread(s)", flush=True)

        startups = []
        for index in range(args.startups):
            process, _, seconds = start_app(model, threads, folder / "app.log")
            stop(process)
            startups.append(seconds)
            print(f"start-up {index + 1}: {seconds:.1f} s", flush=True)

        height, width = lr_shape(args.megapixels, 2.0)
        photo = folder / "photo.jpg"
        Image.fromarray(synthetic_photo(height, width)).save(photo, quality=95)
        cli = cli_upscaler(model, photo, folder / "cli", threads)
        process, url, _ = start_app(model, threads, folder / "app.log")
        try:
            client = Client(url, download_files=str(folder / "downloads"), verbose=False)

            def app() -> Path:
                return Path(client.predict(handle_file(str(photo)), 2.0, api_name="/upscale"))

            same = read_image(app()).pixels.shape == read_image(cli()).pixels.shape  # the warm-ups
            times = {"app": [], "cli": []}
            for _ in range(args.repeats):
                times["cli"].append(timed(cli))
                times["app"].append(timed(app))
        finally:
            stop(process)
    out_mp = 4 * height * width / 1e6
    app_s, cli_s = statistics.median(times["app"]), statistics.median(times["cli"])
    print(
        f"\nstart-up to a served page (model loading included), median of {len(startups)}: "
        f"{statistics.median(startups):.1f} s (target <= 20 s on 2 cores); all: "
        f"{', '.join(f'{s:.1f}' for s in startups)}"
    )
    print(
        f"{width}x{height} JPEG -> {2 * width}x{2 * height} ({out_mp:.2f} MP), median of {args.repeats}, taking turns:"
    )
    print(
        f"  realciao-upscale's per-image function (realciao.cli.upscale.process, in process): {cli_s:.2f} s"
    )
    print(f"  the app's /upscale through gradio_client (upload, upscale, write, download):    {app_s:.2f} s")
    print(
        f"  ratio app / realciao-upscale: {app_s / cli_s:.3f} (overhead {100 * (app_s / cli_s - 1):+.1f} %; "
        f"target <= +10 %){'' if same else '; OUTPUT SIZES DIFFER'}"
    )


if __name__ == "__main__":
    main()
