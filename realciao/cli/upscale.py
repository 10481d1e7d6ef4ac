"""``realciao-upscale``: upscale image files and folders with a CiaoSR generator.

    realciao-upscale -i photos/ -o upscaled/ --model net_g_ema.safetensors -s 2.5

Exit codes: 0 every image written (or already there), 1 some image failed (the others are
written), 2 bad usage or input (one line, before any image is processed).
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from realciao.cli import bad_output, exit_process, fail, parse_size
from realciao.errors import RealciaoError
from realciao.imageio import READ_SUFFIXES, ImageReadError, output_extension, read_image, write_image
from realciao.logs import show_messages

if TYPE_CHECKING:
    from realciao.checkpoint import CheckpointError
    from realciao.upscaling import OutputSize

# the modules that import torch (seconds) are imported where used, after the output check

PROG = "realciao-upscale"
LOGGER = logging.getLogger(__name__)
DEFAULT_MAX_MEGAPIXELS = 200.0
DEFAULT_OUTPUT = "upscaled"


def build_parser() -> argparse.ArgumentParser:
    from realciao.devices import AUTO, PRECISIONS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Upscale photos with a CiaoSR generator to any scale or size, tile by tile in bounded memory. "
        "Real-ESRGAN's flags (--outscale, -t, --tile_pad, --fp32, -g) are accepted too.",
    )
    parser.add_argument(
        "-i", "--input", nargs="+", action="extend", required=True, help="image files, folders or globs"
    )
    parser.add_argument(
        "-o", "--output", default=DEFAULT_OUTPUT, help=f"output folder (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--recursive", action="store_true", help="also read images in subfolders of input folders"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="realciao (.safetensors) or official CiaoSR checkpoint, or an "
        ".onnx file from realciao-export (run with onnxruntime)",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a .pth/.pt checkpoint that needs full unpickling (it can run code)",
    )
    size = parser.add_argument_group("output size (one of; default --scale 2)")
    size.add_argument(
        "-s",
        "--scale",
        "--outscale",
        dest="scale",
        type=float,
        help="scale factor, any positive number (e.g. 2, 2.5, 3.7)",
    )
    size.add_argument(
        "--width", type=int, help="output width in pixels (keeps the aspect ratio unless --height)"
    )
    size.add_argument(
        "--height", type=int, help="output height in pixels (keeps the aspect ratio unless --width)"
    )
    size.add_argument("--size", type=parse_size, metavar="WxH", help="exact output size, e.g. 6000x8000")
    size.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        help=f"refuse outputs larger than this (default {DEFAULT_MAX_MEGAPIXELS:g}; 0: no limit)",
    )
    tiles = parser.add_argument_group("tiles")
    tiles.add_argument(
        "-t", "--tile", type=int, help="LR tile side in pixels (default: from free memory; 0: no tiling)"
    )
    tiles.add_argument(
        "--tile-margin",
        "--tile_pad",
        dest="tile_margin",
        type=int,
        help="LR context around each tile (default: exact for EDSR)",
    )
    run = parser.add_argument_group("device")
    run.add_argument(
        "--precision",
        choices=(AUTO, *PRECISIONS),
        default=None,
        help="auto (default): the faster of fp32 and the reduced precisions the device runs (bf16 on CPUs "
        "with AVX512-BF16 or AMX; bf16/fp16 on GPUs), timed once on this model and cached; fp16: GPUs only",
    )
    run.add_argument("--fp32", action="store_true", help="same as --precision fp32 (Real-ESRGAN's flag)")
    run.add_argument(
        "--device", default=None, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
    )
    run.add_argument("-g", "--gpu-id", type=int, default=None, help="CUDA device N (same as --device cuda:N)")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: the cores available to this process, or OMP_NUM_THREADS if you set it)",
    )
    out = parser.add_argument_group("output files")
    out.add_argument(
        "--ext", choices=["auto", "png", "jpg", "webp", "tiff"], default="auto", help="default: as input"
    )
    out.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    out.add_argument(
        "--suffix",
        default="",
        help="added to each output name after an underscore, as Real-ESRGAN "
        "does: --suffix out gives NAME_out.png (a suffix starting with _ - or . is used as is)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@dataclass
class Job:
    source: Path
    target_stem: Path  # output path without --suffix and extension


def find_inputs(patterns: list[str], output_root: Path, recursive: bool) -> tuple[list[Job], list[str]]:
    """Jobs for every image named, inside a named folder, or matching a glob; plus the inputs
    that matched nothing. With one folder, its layout is kept under the output folder; with
    several inputs each keeps its path relative to what the inputs have in common, so two
    ``x.png`` in different folders never map to one output."""
    found: list[tuple[Path, Path]] = []  # (source, path relative to its input)
    unmatched: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in (path.rglob("*") if recursive else path.iterdir()) if is_image_name(p))
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            files = sorted(Path(p) for p in glob.glob(pattern, recursive=recursive) if Path(p).is_file())
            found += [(p, Path(p.name)) for p in files]
            if not files:
                unmatched.append(pattern)
    unique = list(dict.fromkeys(found))  # an image named twice is upscaled once
    if len(patterns) > 1 or any(not Path(p).exists() for p in patterns):  # several inputs, or a glob
        common = common_parent([source for source, _ in unique])
        return [
            Job(s, output_root / s.resolve().relative_to(common).with_suffix("")) for s, _ in unique
        ], unmatched
    return [Job(s, output_root / rel.with_suffix("")) for s, rel in unique], unmatched


def common_parent(paths: list[Path]) -> Path:
    parents = [p.resolve().parent for p in paths]
    if not parents:
        return Path.cwd()
    common = parents[0]
    while not all(p == common or common in p.parents for p in parents):
        common = common.parent
    return common


def is_image_name(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in READ_SUFFIXES and not path.name.startswith(".")


def output_suffix(suffix: str) -> str:
    """Real-ESRGAN's convention: NAME_SUFFIX; a suffix that brings its own separator is kept."""
    return "" if not suffix else suffix if suffix[0] in "_-." else f"_{suffix}"


def planned_extension(ext: str, source: Path) -> str:
    """The output extension before reading the file: from --ext, or the source's kind."""
    from realciao.imageio import SUFFIX_TO_EXT

    if ext != "auto":
        return ext
    if source.suffix.lower() in (".heic", ".heif"):
        return "jpg"
    return SUFFIX_TO_EXT.get(source.suffix.lower(), "png")


def resolve_collisions(jobs: list[Job], args) -> list[Job]:
    """Two inputs that would write one output (same name, different source extensions) both
    keep their result: each output gets its source's extension in its name (x_jpg.png,
    x_png.png). Said once, before any work."""
    targets: dict[Path, list[Job]] = defaultdict(list)
    for job in jobs:
        targets[job.target_stem.with_suffix("." + planned_extension(args.ext, job.source))].append(job)
    renamed = {}
    for target, group in targets.items():
        if len(group) < 2:
            continue
        for job in group:
            stem = job.target_stem.with_name(
                f"{job.target_stem.name}_{job.source.suffix.lstrip('.').lower()}"
            )
            renamed[id(job)] = Job(job.source, stem)
        LOGGER.info(
            f"note: {', '.join(str(j.source) for j in group)} would all be written to {target.name}; "
            f"each output keeps its source's extension in its name instead"
        )
    return [renamed.get(id(job), job) for job in jobs]


@dataclass
class Summary:
    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    output_pixels: int = 0
    seconds: float = 0.0


def process(job: Job, args, model, request: OutputSize, summary: Summary, tile_bar) -> None:
    """Read, upscale and write one image; failures are recorded, not raised."""
    from realciao.upscaling import check_size_limit, upscale_array

    try:
        picture = read_image(job.source)
        ext = output_extension(args.ext, picture.meta)
        target = job.target_stem.with_name(f"{job.target_stem.name}{output_suffix(args.suffix)}.{ext}")
        if target.resolve() == job.source.resolve():
            raise ImageReadError(
                f"{job.source}: the output would replace its input; choose another -o or a --suffix"
            )
        if target.exists() and not args.overwrite:
            summary.existing.append(target)
            return
        size = request.pixels(picture.pixels.shape[:2])
        check_size_limit(job.source, size, args.max_megapixels, model)
        start = time.perf_counter()
        with tile_bar(job.source.name) as on_tile:
            upscaled, report = upscale_array(
                model, picture.pixels, size, args.tile, args.tile_margin, args.precision, on_tile
            )
        summary.seconds += time.perf_counter() - start
        if report.fp32_fallbacks:
            LOGGER.info(
                f"{job.source}: {report.fp32_fallbacks} tile(s) overflowed in {args.precision}, redone in fp32"
            )
        for note in write_image(target, upscaled, picture.meta, args.quality):
            LOGGER.info(f"{job.source}: {note}")
        summary.written.append(target)
        summary.output_pixels += size[0] * size[1]
    except (RealciaoError, OSError, FloatingPointError) as error:
        record_failure(summary, job.source, str(error))
    except RuntimeError as error:  # torch's out-of-memory errors among them
        hint = " (try a smaller --tile)" if "memory" in str(error).lower() else ""
        record_failure(summary, job.source, f"{error}{hint}")


def record_failure(summary: Summary, source: Path, reason: str) -> None:
    if str(source) not in reason:
        reason = f"{source}: {reason}"
    summary.failed.append((source, reason))
    LOGGER.warning(f"skipped {reason}")


def make_tile_bar(enabled: bool, each_tile=lambda: None):
    """Context manager factory: a per-image tile bar, shown only for images of several tiles;
    ``each_tile()`` runs after every tile."""
    from tqdm import tqdm

    @contextmanager
    def tile_bar(name: str):
        bar = None

        def on_tile(done: int, total: int) -> None:
            nonlocal bar
            if enabled and bar is None and total > 1:
                bar = tqdm(total=total, desc=f"  {name}", unit="tile", leave=False, file=sys.stderr)
            if bar is not None:
                bar.update(done - bar.n)
            each_tile()

        try:
            yield on_tile
        finally:
            if bar is not None:
                bar.close()

    return tile_bar


def check_arguments(parser: argparse.ArgumentParser, args) -> OutputSize:
    """Every argument checked once, before any model or image is read (the output folder before
    this, in ``main``)."""
    from realciao.devices import AUTO
    from realciao.upscaling import OutputSize, SizeError

    if args.tile is not None and args.tile < 0:
        parser.error("--tile must be >= 0")
    if args.tile_margin is not None and args.tile_margin < 0:
        parser.error("--tile-margin must be >= 0")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")
    if args.max_megapixels < 0:
        parser.error("--max-megapixels must be >= 0")
    if args.fp32 and args.precision not in (None, "fp32"):
        parser.error(f"--fp32 and --precision {args.precision} contradict each other")
    args.precision = "fp32" if args.fp32 else (args.precision or AUTO)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.gpu_id is not None:
        if args.device not in (None, f"cuda:{args.gpu_id}"):
            parser.error(f"-g/--gpu-id {args.gpu_id} and --device {args.device} contradict each other")
        args.device = f"cuda:{args.gpu_id}"
    args.device = args.device or "auto"
    has_size = args.size is not None or args.width is not None or args.height is not None
    if args.scale is None and not has_size:
        args.scale = 2.0
    try:
        return OutputSize(args.scale, args.size, args.width, args.height)
    except SizeError as error:
        parser.error(str(error).replace("scale:", "-s/--scale:", 1))
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    """Exit code 0: every image written or already there; 1: some image failed; 2: bad usage."""
    from tqdm import tqdm

    show_messages(stream="stderr")  # stdout: the summary
    problem = bad_output(argv, {("-o", "--output"): True}, {"-o": DEFAULT_OUTPUT})  # before torch loads
    if problem:
        return fail(PROG, f"{problem}; give a folder for the outputs")
    from realciao.allocator import keep_freed_memory
    from realciao.autoprecision import decide_precision
    from realciao.checkpoint import CheckpointError, load_generator
    from realciao.devices import AUTO, ThreadGovernor, choose_device, configure_threads
    from realciao.inference import inference_probe
    from realciao.onnx_models import is_onnx

    parser = build_parser()
    args = parser.parse_args(argv)
    request = check_arguments(parser, args)
    try:
        threads = configure_threads(args.threads)
        governor = ThreadGovernor(threads)  # its first window: the model's loading
        if is_onnx(args.model):
            model, where = load_onnx_model(args)
        else:
            device = choose_device(args.device)
            if device.type == "cpu":
                keep_freed_memory()  # tiles reuse the same buffers: no page faults on them, see allocator.py
            model = load_generator(args.model, allow_pickle=args.allow_pickle, device=device)
            # sizes given in pixels: measured at x2, the default scale
            probe = inference_probe(model, request.scale or 2.0) if args.precision == AUTO else None
            decision = decide_precision(args.precision, device, probe)
            args.precision = decision.precision
            where = f"{device.type}, {decision.describe()}"
    except CheckpointError as error:
        return fail(PROG, not_ciaosr_hint(args.model, error))
    except RealciaoError as error:
        return fail(PROG, error)
    LOGGER.info(f"{PROG}: {where}, {threads.count} thread(s) ({threads.reason})")
    jobs, unmatched = find_inputs(args.input, Path(args.output), args.recursive)
    for pattern in unmatched:
        LOGGER.warning(f"{PROG}: no images at {pattern!r}")
    if not jobs:
        return fail(PROG, "no input images found")

    show = not args.no_progress
    jobs = resolve_collisions(jobs, args)
    summary = Summary()
    bar = tqdm(jobs, desc="images", unit="img", disable=not show, file=sys.stderr)
    tile_bar = make_tile_bar(show, governor.adjust)
    for job in bar:
        bar.set_postfix_str(job.source.name)
        governor.adjust()  # fewer threads while other processes hold cores (see ThreadGovernor)
        process(job, args, model, request, summary, tile_bar)
    bar.close()
    print_summary(summary, len(unmatched))
    return 1 if summary.failed or unmatched else 0


def load_onnx_model(args):
    """An .onnx model (realciao-export's, or any with its inputs) and how it runs, in words; the
    graph's precision is its own, so only --precision fp32 or auto are accepted."""
    from realciao.devices import AUTO
    from realciao.onnx_models import OnnxModelError, load_onnx

    if args.precision not in (AUTO, "fp32"):
        raise OnnxModelError(
            f"{args.model}: an ONNX model runs in the precision it was exported in; "
            f"--precision {args.precision} applies to PyTorch checkpoints (see realciao-export --precision)"
        )
    model = load_onnx(args.model, args.device)
    return model, f"onnxruntime {', '.join(model.providers)}, {model.describe()}"


def not_ciaosr_hint(path: str, error: CheckpointError) -> str:
    """The loader's message, and for a model spandrel runs (Real-ESRGAN, SwinIR...) the command that runs it."""
    from realciao.checkpoint import PickleRefused

    if isinstance(error, PickleRefused) or not Path(path).is_file():
        return str(error)
    from realciao.peers import peer_architecture

    architecture = peer_architecture(path)
    if architecture is None:
        return str(error)
    return (
        f"{path}: not a CiaoSR generator (spandrel loads it as {architecture}); realciao-upscale runs CiaoSR generators, "
        f"realciao-eval runs such models (realciao-eval --real PHOTOS --model {path} -o OUTDIR)"
    )


def print_summary(summary: Summary, unmatched: int) -> None:
    rate = summary.output_pixels / 1e6 / summary.seconds if summary.seconds else 0.0
    print(
        f"{len(summary.written)} written, {len(summary.existing)} already there (use --overwrite to redo), "
        f"{len(summary.failed) + unmatched} failed; {summary.output_pixels / 1e6:.1f} output megapixels "
        f"in {summary.seconds:.1f} s ({rate:.3f} MP/s)"
    )
    for _, reason in summary.failed:
        print(f"  failed: {reason}")


if __name__ == "__main__":
    exit_process(main())
