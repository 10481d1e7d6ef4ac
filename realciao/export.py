"""ONNX export of CiaoSR generators, checked against realciao's own PyTorch inference.

Two kinds of file, each one graph with everything inside it (normalisation, the query grid
and cells, the upsampler, the clamp), so that any onnxruntime caller, chaiNNer's ONNX
nodes among them, runs it without realciao:

- fixed scale (``scale``): input ``image`` (N, 3, H, W) float32 RGB in [0, 1], output
  (N, 3, round(H*s), round(W*s)) in [0, 1]; N, H and W dynamic;
- any size (``scale=None``): inputs ``image`` and ``size`` (int64[2], output height and
  width), output (N, 3, size[0], size[1]); one file for every scale.

The graph is traced with torch's TorchScript-based exporter (``dynamo=False``: deprecated since
torch 2.9, still in 2.14; the torch.export-based one needs onnxscript, which realciao does not
depend on). While tracing, the generator
takes every query in one pass and the non-local branch every LR position at once (a
traced loop count would be frozen for the example's size), so the graph is correct for
any size; its memory is then the function's own: linear in output pixels for the queries,
quadratic in LR pixels for the non-local branch (its attention map). Callers bound it with
tiles (``realciao-upscale --model x.onnx`` does).
"""

from __future__ import annotations

import copy
import io
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from realciao.archs.ciaosr import CiaoSR, normalise
from realciao.coords import make_query_grid
from realciao.devices import autocast
from realciao.errors import RealciaoError
from realciao.files import atomic_path
from realciao.inference import denormalise_queries, upscale
from realciao.metrics import fullref
from realciao.tiling import default_margin

LOGGER = logging.getLogger(__name__)

EXPORT_PRECISIONS = ("fp32", "fp16", "bf16")
LOWEST_OPSET = 17  # GridSample (16) and LayerNormalization (17)
HIGHEST_OPSET = 20
# PSNR of the exported model against PyTorch below which an export fails; reduced precision
# is compared with realciao's own reduced-precision inference, which rounds differently
MIN_PSNR = {"fp32": 50.0, "fp16": 30.0, "bf16": 30.0}
EXAMPLE_SIZE = (20, 24)  # LR (h, w) the graph is traced with; checks use other sizes
CHECK_SIZES = ((17, 29), (32, 21))
# the ONNX file's metadata_props that realciao's commands read (realciao.onnx_models)
METADATA = {
    key: f"realciao.{key}"
    for key in ("kind", "generator", "scale", "tile_margin", "minimum_side", "non_local")
}


class ExportError(RealciaoError, ValueError):
    """A model or option that cannot be exported as asked, or an export that fails its check."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``scale``: the fixed scale, or None for the any-size model (inputs image
    and size). ``static``: a fixed LR (h, w) for encoders that cannot be traced with dynamic sizes."""

    scale: float | None = None
    precision: str = "fp32"
    opset: int | None = None  # None: the lowest that works, from LOWEST_OPSET
    static: tuple[int, int] | None = None
    check: bool = True
    simplify: bool = True  # with onnxslim, when installed

    def __post_init__(self):
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ExportError(f"scale: expected a positive number, got {self.scale:g}")
        if self.precision not in EXPORT_PRECISIONS:
            raise ExportError(
                f"precision: expected one of {', '.join(EXPORT_PRECISIONS)}, got {self.precision!r}"
            )
        if self.opset is not None and not LOWEST_OPSET <= self.opset <= HIGHEST_OPSET:
            raise ExportError(f"opset: expected {LOWEST_OPSET} to {HIGHEST_OPSET}, got {self.opset}")
        if self.static is not None and (len(self.static) != 2 or min(self.static) < 1):
            raise ExportError(f"static: expected a positive (height, width), got {self.static}")


@dataclass
class CheckResult:
    lr_size: tuple[int, int]
    out_size: tuple[int, int]
    max_abs_diff: float
    psnr: float

    def line(self) -> str:
        h, w = self.lr_size
        return (
            f"{w}x{h} -> {self.out_size[1]}x{self.out_size[0]}: max abs diff {self.max_abs_diff:.2e}, "
            f"PSNR {self.psnr:.1f} dB against PyTorch"
        )


@dataclass
class ExportReport:
    path: Path
    opset: int
    dynamic: bool
    simplified: bool
    checks: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def output_pixels(lr_side: torch.Tensor, scale: float) -> torch.Tensor:
    """round(side * scale) as ``realciao.upscaling.OutputSize`` computes it, in float64, in the graph."""
    return torch.floor(lr_side.to(torch.float64) * scale + 0.5).to(torch.int64)


class GraphUpscaler(nn.Module):
    """A generator as one traceable image-to-image function; the encoder stays in fp32 and the
    upsampler runs under autocast to ``precision``, as in ``realciao.upscale``."""

    def __init__(self, model: CiaoSR, precision: str = "fp32"):
        super().__init__()
        self.encoder = model.encoder
        self.upsampler = model.upsampler
        self.precision = precision

    def upscale(self, image: torch.Tensor, height: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        lr = normalise(image)
        coord, cell = make_query_grid(height, width, image.shape[0], device=image.device)
        feature = self.encoder(lr)
        with autocast(image.device, self.precision):  # traced: its casts become Cast nodes
            pred = self.upsampler(feature, lr, coord, cell)
        return denormalise_queries(pred, height, width)


class FixedScaleGraph(GraphUpscaler):
    def __init__(self, model: CiaoSR, scale: float, precision: str = "fp32"):
        super().__init__(model, precision)
        self.scale = float(scale)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shape = torch._shape_as_tensor(image)  # a Shape node when traced: the sizes stay dynamic
        return self.upscale(image, output_pixels(shape[2], self.scale), output_pixels(shape[3], self.scale))


class AnySizeGraph(GraphUpscaler):
    def forward(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return self.upscale(image, size[0], size[1])


def graph_module(model: CiaoSR, options: ExportOptions) -> GraphUpscaler:
    """The graph's module, around ``model`` (already an fp32 CPU copy in eval mode)."""
    if options.scale is None:
        return AnySizeGraph(model, options.precision)
    return FixedScaleGraph(model, options.scale, options.precision)


def minimum_side(model: CiaoSR) -> int:
    """The smallest LR side the dynamic graph takes: its padding reflects, which needs a side
    longer than the pad (SwinIR pads to its window, the non-local branch to even sizes)."""
    window = getattr(model.encoder, "window_size", 1)
    return max(window, 2 if model.upsampler.cs_attn is not None else 1)


def example_inputs(options: ExportOptions) -> tuple[torch.Tensor, ...]:
    h, w = options.static or EXAMPLE_SIZE
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if options.scale is None:
        return image, torch.tensor([2 * h + 3, 2 * w + 1])
    return (image,)


def trace_to_onnx(module: GraphUpscaler, options: ExportOptions, opset: int) -> bytes:
    """The ONNX file's bytes for one opset (legacy TorchScript-based exporter)."""
    inputs = example_inputs(options)
    names = ["image", "size"][: len(inputs)]
    dynamic = None
    if options.static is None:
        dynamic = {
            "image": {0: "batch", 2: "height", 3: "width"},
            "output": {0: "batch", 2: "out_height", 3: "out_width"},
        }
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about sizes: the graph is checked at other sizes
        torch.onnx.export(
            module,
            inputs,
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["output"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def onnx_packages(what: str):
    """(onnx, onnxruntime), or one line saying how to install them (the ``export`` extra)."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError(f"{what} needs onnx and onnxruntime: pip install 'realciao[export]'") from None
    return onnx, onnxruntime


def finish_graph(data: bytes, model: CiaoSR, options: ExportOptions) -> tuple[bytes, bool]:
    """The graph simplified with onnxslim (when installed and asked for) and labelled with
    what realciao's commands read back (``realciao.onnx_models``); whether it was simplified."""
    onnx, _ = onnx_packages("ONNX export")
    graph = onnx.load_from_string(data)
    simplified = False
    if options.simplify:
        try:
            import onnxslim
        except ImportError:
            pass
        else:
            graph, simplified = onnxslim.slim(graph), True
    labels = {
        METADATA["kind"]: "any-size" if options.scale is None else "fixed-scale",
        METADATA["generator"]: model.name,
        METADATA["tile_margin"]: str(default_margin(model)),
        METADATA["minimum_side"]: str(minimum_side(model)),
        METADATA["non_local"]: str(model.upsampler.cs_attn is not None).lower(),
    }
    if options.scale is not None:
        labels[METADATA["scale"]] = repr(float(options.scale))
    onnx.helper.set_model_props(graph, labels)
    return graph.SerializeToString(), simplified


def export_onnx(
    model: CiaoSR, path: str | os.PathLike, options: ExportOptions = ExportOptions()
) -> ExportReport:
    """Export ``model`` to ``path``, written atomically and only once it has passed its check
    (``options.check``): onnxruntime against ``realciao.upscale`` at sizes other than the example's,
    each check logged as it finishes."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"{path}: the folder {path.parent} does not exist")
    onnx_packages("ONNX export")
    reference = copy.deepcopy(model).float().cpu().eval().requires_grad_(False)
    module = graph_module(reference, options)
    opsets = [options.opset] if options.opset is not None else list(range(LOWEST_OPSET, HIGHEST_OPSET + 1))
    failures = []
    for opset in opsets:
        try:
            data = trace_to_onnx(module, options, opset)
        except Exception as error:  # the exporter's errors have no common type
            failures.append(f"opset {opset}: {first_line(error)}")
            continue
        data, simplified = finish_graph(data, reference, options)
        report = ExportReport(path, opset, options.static is None, simplified)
        if options.static is None:
            report.notes.append(f"inputs need at least {minimum_side(reference)} px per side")
        with atomic_path(path) as temporary:
            temporary.write_bytes(data)
            if options.check:
                report.checks = check_export(temporary, reference, options, path)
                for result in report.checks:
                    LOGGER.info(f"  check: {result.line()}")
                worst = min(r.psnr for r in report.checks)
                if worst < MIN_PSNR[options.precision]:
                    raise ExportError(
                        f"{path}: the exported model differs from PyTorch ({worst:.1f} dB, "
                        f"below {MIN_PSNR[options.precision]:g} dB in {options.precision}); "
                        f"no file written"
                    )
        return report
    raise ExportError(f"{path}: {model.name} could not be exported ({'; '.join(failures)})")


def first_line(error: BaseException, limit: int = 200) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_sizes(options: ExportOptions) -> tuple[tuple[int, int], ...]:
    return (options.static,) if options.static is not None else CHECK_SIZES


def check_export(
    path: Path, model: CiaoSR, options: ExportOptions, label: Path | None = None
) -> list[CheckResult]:
    """Run the file with onnxruntime (CPU) at sizes other than the example's, against
    ``realciao.upscale`` in fp32; ``label`` names the file in errors (``path`` may be a temporary)."""
    label = label or path
    _, onnxruntime = onnx_packages("the export's check")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's errors have no public type
        raise ExportError(
            f"{label}: onnxruntime's CPU provider cannot run the {options.precision} graph, so it "
            f"cannot be checked ({first_line(error)}); no file written"
        ) from None
    results = []
    generator = torch.Generator().manual_seed(1)
    for h, w in check_sizes(options):
        lr = torch.rand(1, 3, h, w, generator=generator)
        if options.scale is None:
            out_size = (int(1.7 * h) + 1, int(2.3 * w))
            feed = {"image": lr.numpy(), "size": np.array(out_size, dtype=np.int64)}
        else:
            out_size = (math.floor(h * options.scale + 0.5), math.floor(w * options.scale + 0.5))
            feed = {"image": lr.numpy()}
        got = session.run(None, feed)[0]
        expected = upscale(model, lr, out_size).numpy()
        if got.shape != expected.shape:
            raise ExportError(f"{label}: the exported model gives {got.shape[2:]} for {out_size} asked for")
        diff = np.abs(got.astype(np.float64) - expected)
        psnr = fullref.psnr(torch.from_numpy(got), torch.from_numpy(expected), y_channel=False)
        results.append(CheckResult((h, w), out_size, float(diff.max()), psnr))
    return results
