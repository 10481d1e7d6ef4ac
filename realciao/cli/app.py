"""``realciao-app``: upscale photos in the browser, on this machine.

    realciao-app --model net_g_ema.safetensors            # then open http://127.0.0.1:7860
    realciao-app --model ours=net_g_ema.safetensors --model Real-ESRGAN=RealESRGAN_x4plus.safetensors

Scripts call its one endpoint with gradio_client:
``Client("http://127.0.0.1:7860").predict(handle_file("photo.jpg"), 2.5, api_name="/upscale")``.

Exit codes: 0 stopped (Ctrl+C), 2 bad usage, or a model or port it cannot use (one line).
Everything it writes (uploads, results) lives in one temporary folder, removed when it stops.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from realciao.cli import DefaultsHelpFormatter, exit_process, fail
from realciao.cli.upscale import DEFAULT_MAX_MEGAPIXELS
from realciao.errors import RealciaoError
from realciao.logs import show_messages

# the modules that import torch or Gradio (seconds each) are imported where used

PROG = "realciao-app"
# not __name__: that is "__main__" under python -m, outside the tree show_messages shows
LOGGER = logging.getLogger("realciao.cli.app")
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 100.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A page in the browser that upscales a photo to any size with a CiaoSR generator (or a peer), "
        "shows it beside bicubic, and gives the file back as realciao-upscale writes it. Runs offline, on this "
        "machine; one API endpoint, /upscale (photo, scale), for gradio_client.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a realciao/official CiaoSR checkpoint, an .onnx file from realciao-export, or a model "
        "spandrel loads (Real-ESRGAN, SwinIR...: run as realciao-eval runs peers); repeatable, the "
        "first is the page's default and /upscale's model; NAME= names it (default: the file's stem)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a .pth/.pt checkpoint that needs full unpickling (it can run code)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on; anything but 127.0.0.1/localhost makes the page reachable from "
        "other machines",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to serve on")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="as realciao-upscale's: auto measures fp32 against the reduced precisions the device "
        "runs, once per model, on the first CiaoSR model at x2",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: the cores available to this process, or OMP_NUM_THREADS)",
    )
    parser.add_argument(
        "-t",
        "--tile",
        type=int,
        default=None,
        help="LR tile side in pixels, as realciao-upscale's (default: from free memory; 0: no tiling)",
    )
    parser.add_argument(
        "--tile-margin",
        type=int,
        default=None,
        help="LR context around each tile, as realciao-upscale's (default: exact for EDSR)",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        help="refuse outputs larger than this (0: no limit)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help="refuse uploaded files larger than this many megabytes (0: no limit)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality of the results")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: expected 0 to 65535, got {args.port}")
    for name in ("tile", "tile_margin", "max_megapixels", "max_upload_mb"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')}: expected a number >= 0, got {value:g}")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    show_messages()
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    from realciao.app.page import gradio_problem

    if gradio_problem():  # before the models load, which takes a while
        return fail(PROG, gradio_problem())
    from realciao.allocator import keep_freed_memory
    from realciao.app.service import AppSettings, load_upscaler
    from realciao.devices import ThreadGovernor, choose_device, configure_threads

    # a terminated app cleans up as Ctrl+C does
    previous_handler = signal.signal(signal.SIGTERM, signal.default_int_handler)
    temporary = Path(tempfile.mkdtemp(prefix="realciao-app-"))
    # importing spandrel (peers) makes torch create its compiler cache folder, by default in TMPDIR
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(temporary / "torchinductor"))
    try:
        threads = configure_threads(args.threads)
        governor = ThreadGovernor(threads)
        settings = AppSettings(
            args.max_megapixels, args.max_upload_mb, args.tile, args.tile_margin, args.quality
        )
        try:
            device = choose_device(args.device)
            if device.type == "cpu":
                keep_freed_memory()  # tiles reuse the same buffers, as in realciao-upscale
            upscaler, precision = load_upscaler(
                args.model,
                args.allow_pickle,
                device,
                args.precision,
                settings,
                temporary / "results",
                governor.adjust,
            )
        except RealciaoError as error:
            return fail(PROG, error)
        except KeyboardInterrupt:
            return 130
        LOGGER.info(
            "%s: %s, %s, %d thread(s) (%s)", PROG, device.type, precision, threads.count, threads.reason
        )
        for name in upscaler.names:
            LOGGER.info("  %s: %s", name, upscaler.method(name).description)
        return serve_until_stopped(upscaler, args, temporary, start)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_handler)


def serve_until_stopped(upscaler, args, temporary: Path, start: float) -> int:
    from realciao.app.page import offline_environment

    offline_environment(temporary)  # before Gradio is imported; results in it are served without a copy
    page = None
    try:
        from realciao.app.model_thread import ModelThread
        from realciao.app.page import build_page, serve, warm_up_in_background

        model_thread = ModelThread()  # this thread, which loaded the models (see model_thread.py)
        page = build_page(upscaler, args.max_megapixels, model_thread)
        try:
            serve(page, args.host, args.port, args.max_upload_mb, temporary)
        except OSError as error:  # the port is taken, or the host is not an address of this machine
            return fail(PROG, f"--host {args.host} --port {args.port}: {error}")
        warm_up_in_background()
        where = "this machine only" if is_loopback(args.host) else "REACHABLE FROM OTHER MACHINES"
        LOGGER.info(
            "%s: serving %s (%s; started in %.1f s; Ctrl+C stops)",
            PROG,
            page.local_url.rstrip("/"),
            where,
            time.perf_counter() - start,
        )
        model_thread.serve()  # until Ctrl+C
    except KeyboardInterrupt:
        LOGGER.info("%s: stopped", PROG)
        return 0
    finally:
        if page is not None:
            page.close()


if __name__ == "__main__":
    exit_process(main())
