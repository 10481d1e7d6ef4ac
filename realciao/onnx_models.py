"""ONNX upscalers in realciao's commands: files from ``realciao-export``, or any image model
with the same inputs, run with onnxruntime.

- a fixed-scale file (one input ``image`` (N, 3, H, W)) is run as a fixed-scale peer is
  (``realciao.peers``: at its scale, again while the output is smaller than asked, then
  MATLAB bicubic), tile by tile with margins;
- an any-size file (inputs ``image`` and ``size`` int64[2]) is run as CiaoSR is: one pass to
  the exact size. Its tiles are cut where LR and output pixel grids meet (multiples of
  h / gcd(h, H) LR pixels), so each tile's output pixels are the whole image's; as with
  ``realciao.tiling``, tiles are exact up to the frame-dependent neighbour shift and what the
  non-local branch and SwinIR's windows see.

Providers follow ``--device``: auto takes CUDA, DirectML or CoreML where onnxruntime has them,
then the CPU. The precision is the graph's own (``realciao-export --precision``).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realciao.errors import RealciaoError
from realciao.export import METADATA, ExportError, first_line, onnx_packages
from realciao.tiling import TileReport, from_unit_float, split_cores, to_unit_float

AUTO_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")
FIXED, ANY_SIZE = "fixed-scale", "any-size"
# LR tile sides when none is given: the graph's non-local branch holds its whole attention map
# (quadratic in a tile's area: ~85 MB at 96 px), the rest is linear; as realciao.tiling on the CPU
TILE_WITH_NON_LOCAL = 96
TILE = 256
DEFAULT_MARGIN = 16
PROBE_SIDE = 16


class OnnxModelError(RealciaoError, ValueError):
    """An .onnx file that is not an image upscaler realciao can run, or a provider that is missing."""


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def providers_for(device: str | torch.device | None, available: list[str]) -> list:
    """onnxruntime execution providers for a ``--device`` value (auto, cpu, cuda, cuda:N, mps),
    from the ``available`` ones."""
    name = str(device or "auto")
    if name == "auto":
        return [p for p in AUTO_PROVIDERS if p in available]
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise OnnxModelError(f"--device {name}: this onnxruntime has no CUDA provider (install onnxruntime-gpu); "
                                 f"it has {', '.join(available)}")
        index = int(name.split(":")[1]) if ":" in name else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if name == "mps":
        if "CoreMLExecutionProvider" not in available:
            raise OnnxModelError(f"--device mps: this onnxruntime has no CoreML provider; it has {', '.join(available)}")
        return ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    raise OnnxModelError(f"--device {name}: expected auto, cpu, cuda, cuda:N or mps")


def describe_inputs(session) -> str:
    return ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in session.get_inputs())


def model_kind(session, path: Path) -> str:
    """FIXED or ANY_SIZE from the graph's inputs and output; one line naming the file otherwise."""
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    image = inputs[0] if inputs else None
    image_ok = (image is not None and image.name == "image" and image.type == "tensor(float)"
                and len(image.shape) == 4 and image.shape[1] in (3, "channels", None))
    outputs = session.get_outputs()
    if image_ok and len(outputs) == 1 and len(outputs[0].shape) == 4:
        if names == ["image"]:
            return FIXED
        if names == ["image", "size"] and inputs[1].type == "tensor(int64)":
            return ANY_SIZE
    raise OnnxModelError(f"{path}: not an image upscaler: its inputs are {describe_inputs(session) or 'none'}; "
                         f"expected image tensor(float) [N, 3, H, W] (fixed scale), plus size tensor(int64) [2] "
                         f"(any size), and one (N, 3, H', W') output")


@dataclass
class OnnxUpscaler:
    path: Path
    session: object  # onnxruntime.InferenceSession
    kind: str
    scale: float | None  # FIXED: the graph's scale
    margin: int  # LR context per tile side
    minimum_side: int
    non_local: bool
    generator: str  # what realciao-export wrote it from; "" for other files

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def describe(self) -> str:
        what = f"{self.generator} " if self.generator else ""
        scale = f"x{self.scale:g}" if self.kind == FIXED else "any size"
        return f"{self.path.name} ({what}ONNX, {scale}, {self.providers[0]})"

    def run(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """(N, 3, h, w) float32 in [0, 1] -> (N, 3, H, W); ``size`` for any-size graphs."""
        feed = {"image": np.ascontiguousarray(image, dtype=np.float32)}
        if self.kind == ANY_SIZE:
            feed["size"] = np.asarray(size, dtype=np.int64)
        return self.session.run(None, feed)[0]

    def default_tile(self) -> int:
        return TILE_WITH_NON_LOCAL if self.non_local else TILE

    def as_peer(self):
        """A FIXED graph as ``realciao.peers.PeerModel`` (the paper's convention for fixed scales)."""
        from realciao.peers import PeerModel

        return PeerModel(OnnxDescriptor(self), self.path, receptive_radius=self.margin, bytes_per_pixel=1.0)

    def upscale_any_size(self, lr: np.ndarray, out_size: tuple[int, int], tile: int, margin: int,
                         on_tile=None) -> tuple[np.ndarray, int]:
        """(h, w, 3) float32 -> (H, W, 3) float32 with an ANY_SIZE graph, tile by tile; and the tile count."""
        h, w = lr.shape[:2]
        height, width = out_size
        out = np.empty((height, width, 3), dtype=np.float32)
        rows = aligned_tiles(h, height, tile, margin, self.minimum_side)
        cols = aligned_tiles(w, width, tile, margin, self.minimum_side)
        done = 0
        for (c0, c1), (e0, e1) in rows:
            for (d0, d1), (f0, f1) in cols:
                window = np.ascontiguousarray(lr[e0:e1, f0:f1].transpose(2, 0, 1))[None]
                size = (out_row(e1, h, height) - out_row(e0, h, height), out_row(f1, w, width) - out_row(f0, w, width))
                pred = self.run(window, size)[0].transpose(1, 2, 0)
                o0, p0 = out_row(e0, h, height), out_row(f0, w, width)
                rows_out = slice(out_row(c0, h, height), out_row(c1, h, height))
                cols_out = slice(out_row(d0, w, width), out_row(d1, w, width))
                out[rows_out, cols_out] = pred[rows_out.start - o0 : rows_out.stop - o0,
                                               cols_out.start - p0 : cols_out.stop - p0]
                done += 1
                if on_tile is not None:
                    on_tile(done, len(rows) * len(cols))
        return out, done


class OnnxDescriptor:
    """What ``realciao.peers.PeerModel`` reads of a spandrel descriptor, for a FIXED graph."""

    def __init__(self, model: OnnxUpscaler):
        from spandrel import ModelTiling, SizeRequirements

        self.model = model
        self.architecture = types.SimpleNamespace(name=f"ONNX {model.generator}".strip())
        self.scale = int(model.scale)
        self.size_requirements = SizeRequirements(minimum=model.minimum_side)
        self.supports_half = self.supports_bfloat16 = False  # the graph has its own precision
        self.tiling = ModelTiling.SUPPORTED
        self.tags: list[str] = []
        self.device = torch.device("cpu")  # where tiles are handed over; the provider runs them

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """As spandrel's call: pads up to the minimum side (replicate), clamps, crops back."""
        h, w = image.shape[-2:]
        side = self.model.minimum_side
        pad_h, pad_w = max(0, side - h), max(0, side - w)
        if pad_h or pad_w:
            image = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        out = torch.from_numpy(self.model.run(image.float().cpu().numpy())).clamp_(0, 1)
        return out[..., : h * self.scale, : w * self.scale]


def out_row(lr_row: int, lr_length: int, out_length: int) -> int:
    """The output pixel where LR pixel ``lr_row`` starts (exact on the aligned grid)."""
    return lr_row * out_length // lr_length


def aligned_tiles(length: int, out_length: int, tile: int, margin: int, minimum: int):
    """[(core, window)] LR ranges along one axis whose ends are multiples of the grid period
    length / gcd(length, out_length), where LR and output pixel edges meet; one tile when the
    period exceeds the tile (the grids never meet inside it)."""
    period = length // math.gcd(length, out_length)
    if tile <= 0 or tile >= length or period > tile:
        return [((0, length), (0, length))]
    cores = [(round_to(a, period), round_to(b, period)) for a, b in split_cores(length, tile)]
    cores = [(a, length if i == len(cores) - 1 else b) for i, (a, b) in enumerate(cores)]
    cores = [(a, b) for a, b in cores if b > a]
    tiles = []
    for a, b in cores:
        start = max(0, a - margin) // period * period
        stop = min(length, -(-(b + margin) // period) * period)
        while stop - start < minimum and (start > 0 or stop < length):  # the graph's smallest input
            start, stop = max(0, start - period), min(length, stop + period)
        tiles.append(((a, b), (start, stop)))
    return tiles


def round_to(value: int, period: int) -> int:
    return int(round(value / period)) * period


def load_onnx(path: str | Path, device: str | torch.device | None = "auto") -> OnnxUpscaler:
    """An .onnx image upscaler on ``device``'s onnxruntime provider; one line naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such ONNX file")
    try:
        _, onnxruntime = onnx_packages(f"{path}: running .onnx models")
    except ExportError as error:
        raise OnnxModelError(str(error)) from None
    providers = providers_for(device, onnxruntime.get_available_providers())
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime's errors have no public type
        raise OnnxModelError(f"{path}: not an ONNX model onnxruntime can run ({first_line(error)})") from None
    kind = model_kind(session, path)
    labels = session.get_modelmeta().custom_metadata_map
    scale = float(labels[METADATA["scale"]]) if METADATA["scale"] in labels else None
    minimum = int(labels.get(METADATA["minimum_side"], 1))
    model = OnnxUpscaler(path, session, kind, scale, int(labels.get(METADATA["tile_margin"], DEFAULT_MARGIN)),
                         minimum, labels.get(METADATA["non_local"]) == "true",
                         labels.get(METADATA["generator"], ""))
    if kind == FIXED and scale is None:
        model.scale = probe_scale(model)
    if kind == FIXED and model.scale != int(model.scale):
        raise OnnxModelError(f"{path}: a fixed-scale graph of scale {model.scale:g}; realciao runs fixed-scale models "
                             f"at integer scales, as peers (export with --arbitrary for any scale)")
    return model


def probe_scale(model: OnnxUpscaler) -> float:
    """The scale of a fixed-scale graph realciao did not write, from one small run."""
    side = max(PROBE_SIDE, model.minimum_side)
    try:
        out = model.run(np.zeros((1, 3, side, side), dtype=np.float32))
    except Exception as error:
        raise OnnxModelError(f"{model.path}: fails on a {side}x{side} probe image ({first_line(error)})") from None
    if out.ndim != 4 or out.shape[1] != 3 or out.shape[2] % side or out.shape[2] != out.shape[3]:
        raise OnnxModelError(f"{model.path}: a {side}x{side} probe gave {list(out.shape)}; expected (1, 3, s*{side}, "
                             f"s*{side}) for an integer scale s")
    return float(out.shape[2] // side)


def upscale_colour(model: OnnxUpscaler, colour: np.ndarray, size: tuple[int, int], out: np.ndarray,
                   tile: int | None, margin: int | None, on_tile=None, tile_transform=None) -> TileReport:
    """``realciao.upscaling.upscale_array``'s colour part for an ONNX model: (h, w, 3) or (h, w)
    uint8/uint16/float -> ``out`` (H, W, C)."""
    image = to_unit_float(colour)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    tile = model.default_tile() if tile is None else tile
    margin = model.margin if margin is None else margin
    if model.kind == FIXED:
        result = model.as_peer().upscale(image, size, tile=tile, margin=margin)
        pred, tiles = result.image, result.tiles
        if on_tile is not None:
            on_tile(1, 1)
    else:
        pred, tiles = model.upscale_any_size(image, size, tile, margin, on_tile)
    pred = torch.from_numpy(np.ascontiguousarray(pred))
    if tile_transform is not None:
        pred = tile_transform(pred)
    out[...] = from_unit_float(pred, out.dtype)
    return TileReport(tiles=tiles)
