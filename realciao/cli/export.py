"""``realciao-export``: a CiaoSR generator as an ONNX file, checked with onnxruntime.

    realciao-export --model net_g_ema.safetensors --scale 4 -o ciaosr_x4.onnx
    realciao-export --model net_g_ema.safetensors --arbitrary -o ciaosr_any.onnx

Exit codes: 0 written and checked, 2 bad usage or input, or a failed check (one line; no file).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from realciao.checkpoint import load_generator
from realciao.cli import exit_process, fail, parse_size
from realciao.errors import RealciaoError
from realciao.export import (
    EXPORT_PRECISIONS,
    HIGHEST_OPSET,
    LOWEST_OPSET,
    MIN_PSNR,
    ExportOptions,
    export_onnx,
)
from realciao.logs import show_messages

PROG = "realciao-export"


def parse_static(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W): LR pixels, height first."""
    return parse_size(text, height_first=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a CiaoSR generator to ONNX (normalisation, query grid and clamp inside the graph; "
        "batch, height and width dynamic) and check it with onnxruntime against realciao's PyTorch inference.",
    )
    parser.add_argument(
        "--model", required=True, help="realciao (.safetensors) or official CiaoSR checkpoint"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--scale",
        type=float,
        help="a fixed-scale model: input image (N,3,H,W) in [0,1], "
        "output (N,3,round(H*scale),round(W*scale)); any positive number",
    )
    kind.add_argument(
        "--arbitrary",
        action="store_true",
        help="one model for every scale: inputs image and size (int64[2], output height and width)",
    )
    parser.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="the upsampler's precision (the encoder stays fp32, as in realciao-upscale); "
        "fp16 runs on onnxruntime's CPU provider; bf16 does not (no CPU kernels), so it cannot be checked "
        "and is refused",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help=f"ONNX opset, {LOWEST_OPSET}-{HIGHEST_OPSET} (default: the lowest that works)",
    )
    parser.add_argument(
        "--static",
        type=parse_static, metavar="HxW",
        help="a graph for this one LR size (for runtimes that need static shapes)",
    )
    parser.add_argument(
        "--no-check", action="store_true",
        help=f"skip the onnxruntime check (by default the export fails below "
        f"{MIN_PSNR['fp32']:g} dB PSNR against PyTorch in fp32)",
    )
    parser.add_argument(
        "--no-simplify", action="store_true", help="do not simplify with onnxslim (when installed)"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true",
        help="allow a .pth/.pt checkpoint that needs full unpickling (it can run code)",
    )
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> ExportOptions:
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        parser.error(f"--scale: expected a positive number, got {args.scale:g}")
    if args.output.suffix.lower() != ".onnx":
        parser.error(f"-o {args.output}: expected a .onnx file name")
    if args.output.is_dir():
        parser.error(f"-o {args.output}: is a folder; give the .onnx file to write")
    if not args.output.parent.is_dir():
        parser.error(f"-o {args.output}: the folder {args.output.parent} does not exist")
    if args.opset is not None and not LOWEST_OPSET <= args.opset <= HIGHEST_OPSET:
        parser.error(f"--opset: expected {LOWEST_OPSET} to {HIGHEST_OPSET}, got {args.opset}")
    return ExportOptions(
        scale=args.scale,
        precision=args.precision,
        opset=args.opset,
        static=args.static,
        check=not args.no_check,
        simplify=not args.no_simplify,
    )


def main(argv: list[str] | None = None) -> int:
    show_messages()  # each check on stdout as it finishes, before the summary
    parser = build_parser()
    args = parser.parse_args(argv)
    options = check_arguments(parser, args)
    try:
        model = load_generator(args.model, allow_pickle=args.allow_pickle)
        report = export_onnx(model, args.output, options)
    except RealciaoError as error:
        return fail(PROG, error)
    kind = f"x{args.scale:g}" if args.scale is not None else "any size"
    shapes = (
        f"static {args.static[0]}x{args.static[1]} input"
        if args.static
        else "dynamic batch, height and width"
    )
    extras = "; simplified with onnxslim" if report.simplified else ""
    print(
        f"wrote {report.path} ({model.name}, {kind}, {args.precision}, opset {report.opset}, {shapes}{extras})"
    )
    for note in report.notes:
        print(f"  note: {note}")
    if not options.check:
        print("  not checked (--no-check)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    exit_process(main())
