"""Peer super-resolution models (Real-ESRGAN, BSRGAN, RealSR, SwinIR, HAT, ...) run the way
the CiaoSR paper runs fixed-scale models at arbitrary scales, for ``realciao-eval``.

spandrel detects the architecture and hyper-parameters from a checkpoint's keys. Pickled
checkpoints are read with torch's weights-only unpickler (tensors and plain containers, no
code) rather than through spandrel's file reader: both unpickle safely, but ``torch.load``
without ``weights_only`` hands any zip that looks like TorchScript to ``torch.jit.load``,
and TorchScript archives carry code. Such archives are refused before anything is read.

The paper's convention for a model of native scale s asked for an output of H x W: run it
at s; while the output is still smaller than H x W on an axis, run it again on its own
output; then resize to exactly H x W with MATLAB bicubic (antialiased when shrinking).

Each pass is tiled in bounded memory: the image stays on the CPU, each tile's LR window
(core + margin) goes to the device, and the core's output comes back into a CPU buffer.
For convolutional models the receptive radius is read off the layers and confirmed by
perturbing one pixel; a margin that covers it makes tiles give the whole-image result.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from spandrel import ImageModelDescriptor, ModelLoader, ModelTiling, SizeRequirements, UnsupportedModelError

from realciao.bicubic import matlab_resize
from realciao.devices import autocast, autocast_dtype, available_memory, check_precision, without_autocast
from realciao.errors import RealciaoError
from realciao.tiling import plan_axis

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
SUFFIXES = PICKLE_SUFFIXES + (".safetensors",)
# a radius up to this is used as the margin (tiles exact); beyond it the exact margin costs
# more than it is worth (a 23-block RRDB reads ~350 LR px, its weights far less) and, as for
# attention models, whose reach is unbounded, FIXED_MARGIN is used: 3x Real-ESRGAN's default pad
MAX_EXACT_MARGIN = 48
FIXED_MARGIN = 32
PROBE_SIDE = 16  # LR pixels per side of the probe run at load
# bytes held per element of the largest layer output while a tile runs: input, output and a
# residual in fp32, and one spare for what hooks cannot see (attention maps, functional ops)
BYTES_PER_ACTIVATION = 4 * 4
# leaf modules that act on each pixel on its own
_POINTWISE = (
    torch.nn.Identity,
    torch.nn.ReLU,
    torch.nn.LeakyReLU,
    torch.nn.PReLU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Sigmoid,
    torch.nn.Tanh,
    torch.nn.ELU,
    torch.nn.Hardswish,
    torch.nn.Mish,
    torch.nn.Dropout,
    torch.nn.Dropout2d,
    torch.nn.BatchNorm2d,
    torch.nn.PixelShuffle,
)
_TIMES = {1: "once", 2: "twice"}


class PeerError(RealciaoError):
    """A peer model file that cannot be loaded or run as asked, in one line naming the file;
    ``reason`` is the part after the file's name, for callers that word their own line."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def _unsupported(path: Path, reason: str) -> PeerError:
    return PeerError(f"{path}: not a supported super-resolution model ({reason})", reason)


@dataclass
class PeerOutput:
    image: np.ndarray  # (H, W, 3) float32 RGB in [0, 1]
    description: str  # one line: how the output was made
    passes: int  # model applications at its native scale
    tiles: int  # model calls, over all passes
    fp32_fallbacks: int = 0  # tiles recomputed in fp32 because reduced precision gave NaN
    resized: bool = False  # whether MATLAB bicubic made the final size


class PeerModel:
    """A loaded single-image SR model: its metadata, and ``upscale`` to any output size."""

    def __init__(
        self,
        descriptor: ImageModelDescriptor,
        path: Path,
        receptive_radius: int | None,
        bytes_per_pixel: float,
    ):
        self.descriptor = descriptor
        self.path = path
        self.label = path.stem  # e.g. RealESRGAN_x4plus: names the model in reports
        self.name: str = descriptor.architecture.name  # architecture, as spandrel names it
        self.scale: int = descriptor.scale
        self.size_requirements: SizeRequirements = descriptor.size_requirements
        self.supports_half: bool = descriptor.supports_half
        self.supports_bfloat16: bool = descriptor.supports_bfloat16
        self.tiling: ModelTiling = descriptor.tiling
        self.tags: list[str] = list(descriptor.tags)
        # LR pixels an output pixel depends on in each direction; None when unbounded or unknown
        self.receptive_radius = receptive_radius
        self.bytes_per_pixel = bytes_per_pixel  # device bytes per input pixel of a tile (estimate)

    @property
    def device(self) -> torch.device:
        return self.descriptor.device

    @property
    def default_margin(self) -> int:
        """The receptive radius when known and at most MAX_EXACT_MARGIN (tiles exact), else FIXED_MARGIN."""
        radius = self.receptive_radius
        return radius if radius is not None and radius <= MAX_EXACT_MARGIN else FIXED_MARGIN

    def default_tile(self, margin: int | None = None, size: tuple[int, int] | None = None) -> int:
        """Tile core side (input pixels) for the device's free memory: 0 (whole image) when an
        input of ``size`` fits, and for models that tile internally; else the largest square
        whose window (core + margins) fits. The budget is a quarter of the free memory, at most
        4 GiB on the CPU (16 GiB on CUDA). Margins are recomputed work (a 256 px core with 32 px
        margins costs 1.56x its area), so the whole image is preferred wherever it fits."""
        if self.tiling == ModelTiling.INTERNAL:
            return 0
        margin = self.default_margin if margin is None else margin
        device = self.device
        budget = min(available_memory(device) // 4, (16 << 30) if device.type == "cuda" else (4 << 30))
        if size is not None:
            padded = [_sized_side(self.size_requirements, n) for n in size]
            if self.bytes_per_pixel * padded[0] * padded[1] <= budget:
                return 0
        return max(32, int(math.sqrt(budget / self.bytes_per_pixel)) - 2 * margin)

    def describe(self, passes: int, size: tuple[int, int], resized: bool) -> str:
        times = _TIMES.get(passes, f"{passes} times")
        text = f"{self.label} ({self.name} arch, x{self.scale}) applied {times} (x{self.scale**passes})"
        height, width = size
        return (
            f"{text}, then MATLAB bicubic to {width}x{height}"
            if resized
            else f"{text}, {width}x{height} as is"
        )

    def how(self, out: PeerOutput) -> str:
        """How ``out`` was made, without the image's size: one line for every image of a scale."""
        times = _TIMES.get(out.passes, f"{out.passes} times")
        text = f"x{self.scale} model applied {times} (x{self.scale**out.passes})"
        text += ", then MATLAB bicubic to the size asked for" if out.resized else ", output as is"
        if out.fp32_fallbacks:
            text += f"; {out.fp32_fallbacks} tile(s) redone in fp32 (NaN in reduced precision)"
        return text

    def passes_for(self, lr_size: tuple[int, int], size: tuple[int, int]) -> int:
        """Model applications until the output covers ``size`` on both axes (1 for scale 1)."""
        passes = 1
        if self.scale > 1:
            while any(n * self.scale**passes < want for n, want in zip(lr_size, size)):
                passes += 1
        return passes

    @torch.no_grad()
    def upscale(
        self,
        image: np.ndarray,
        size: tuple[int, int],
        tile: int | None = None,
        margin: int | None = None,
        precision: str = "fp32",
    ) -> PeerOutput:
        """(h, w, 3) float RGB in [0, 1] -> exactly ``size`` = (H, W), by the paper's convention
        (module docstring). ``tile``: core side in input pixels of each pass; None picks
        ``default_tile`` per pass (the whole image where it fits), 0 runs the whole image at
        once. ``margin``: context per side (None: ``default_margin``). ``precision``: fp32,
        bf16 or fp16 (CUDA only), by autocast."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype.kind != "f":
            raise ValueError(f"image must be an (h, w, 3) float RGB array, got {image.dtype} {image.shape}")
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"output size must be positive, got {size}")
        self._check_precision(precision)
        margin = self.default_margin if margin is None else int(margin)
        if margin < 0:
            raise ValueError(f"tile margin must be >= 0, got {margin}")
        passes = self.passes_for(image.shape[:2], (height, width))
        out = PeerOutput(np.clip(image, 0, 1).astype(np.float32), "", passes, 0)
        for _ in range(passes):  # by default each pass gets the tile its own input size allows
            side = self.default_tile(margin, out.image.shape[:2]) if tile is None else int(tile)
            out.image = self.run_native(out.image, side, margin, precision, out)
        resized = out.resized = out.image.shape[:2] != (height, width)
        if resized:
            chw = torch.from_numpy(np.ascontiguousarray(out.image.transpose(2, 0, 1)))
            out.image = matlab_resize(chw, (height, width)).clamp_(0, 1).permute(1, 2, 0).numpy()
        out.description = self.describe(passes, (height, width), resized)
        return out

    @torch.no_grad()
    def run_native(
        self,
        image: np.ndarray,
        tile: int,
        margin: int,
        precision: str = "fp32",
        report: PeerOutput | None = None,
    ) -> np.ndarray:
        """One application at the native scale: (h, w, 3) float32 -> (h*s, w*s, 3) float32,
        tile by tile (``tile`` <= 0: whole image); counts tiles and fallbacks into ``report``."""
        self._check_precision(precision)
        s = self.scale
        h, w = image.shape[:2]
        out = np.empty((h * s, w * s, 3), dtype=np.float32)
        align = self.size_requirements.multiple_of
        rows = plan_axis(h, tile, margin, align)
        cols = plan_axis(w, tile, margin, align)
        for row in rows:
            for col in cols:
                (e0, e1), (f0, f1) = row.window, col.window
                window = np.ascontiguousarray(image[e0:e1, f0:f1].transpose(2, 0, 1))
                pred = self._run_tile(torch.from_numpy(window)[None], precision, report)
                (c0, c1), (d0, d1) = row.core, col.core
                core = pred[0, :, (c0 - e0) * s : (c1 - e0) * s, (d0 - f0) * s : (d1 - f0) * s]
                out[c0 * s : c1 * s, d0 * s : d1 * s] = core.permute(1, 2, 0).float().cpu().numpy()
                if report is not None:
                    report.tiles += 1
        return out

    def _run_tile(self, window: torch.Tensor, precision: str, report: PeerOutput | None) -> torch.Tensor:
        """spandrel's call pads the window to the size requirements (reflect, then replicate,
        at the bottom and right), runs the model, clamps to [0, 1] and crops the padding off."""
        window = window.to(self.device)
        with without_autocast(self.device), autocast(self.device, precision):
            pred = self.descriptor(window)
        if not bool(torch.isfinite(pred).all()):
            if autocast_dtype(precision) is None:
                raise PeerError(f"{self.path}: the model produced NaN in fp32 (a broken checkpoint?)")
            if report is not None:
                report.fp32_fallbacks += 1  # never a silently black tile
            with without_autocast(self.device):
                pred = self.descriptor(window)
        return pred

    def _check_precision(self, precision: str) -> None:
        check_precision(precision, self.device)
        if precision == "bf16" and not self.supports_bfloat16:
            raise PeerError(f"{self.path}: spandrel marks {self.name} as not running in bf16; use fp32")
        if precision == "fp16" and not self.supports_half:
            raise PeerError(
                f"{self.path}: spandrel marks {self.name} as not running in fp16; use bf16 or fp32"
            )


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def load_peer(path: str | Path, device: str | torch.device = "cpu") -> PeerModel:
    """A .pth/.pt/.ckpt/.safetensors single-image SR model, on ``device``; PeerError otherwise."""
    path = Path(path)
    descriptor = read_peer(path)
    descriptor.to(torch.device(device)).eval()
    radius, bytes_per_pixel = _probe(path, descriptor)
    return PeerModel(descriptor, path, radius, bytes_per_pixel)


def read_peer(path: str | Path) -> ImageModelDescriptor:
    """spandrel's descriptor of a model file, on the CPU, without running it; PeerError otherwise."""
    path = Path(path)
    if not path.exists():
        raise PeerError(f"{path}: no such file")
    if not path.is_file():
        raise _unsupported(path, "a folder, not a model file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _unsupported(path, f"extension {suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")
    loader = ModelLoader("cpu")
    state_dict = _read_safetensors(path, loader) if suffix == ".safetensors" else _read_pickle(path)
    try:
        descriptor = loader.load_from_state_dict(state_dict)
    except UnsupportedModelError:
        raise _unsupported(path, "spandrel recognises no architecture in its keys") from None
    except Exception as error:  # an architecture matched the keys but could not be built from them
        raise _unsupported(path, f"spandrel could not build it: {_short(error)}") from None
    _check_descriptor(path, descriptor)
    return descriptor


def peer_architecture(path: str | Path) -> str | None:
    """The architecture spandrel names in ``path`` (e.g. RRDBNet), or None when it loads no
    model from it: for saying which command runs a file that is not a CiaoSR checkpoint."""
    try:
        return load_peer(path).name
    except PeerError:
        return None


def _short(error: BaseException, limit: int = 100) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def is_torchscript(path: Path) -> bool:
    """torch.load's own test (a constants.pkl record), on the zip's names."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _read_pickle(path: Path) -> dict:
    if is_torchscript(path):
        raise _unsupported(path, "a TorchScript archive, which carries code; save its state dict instead")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found:
            reason = (
                f"its pickle would call {found.group(1)}; only tensors and plain containers are unpickled"
            )
        elif isinstance(error, pickle.UnpicklingError):
            reason = "its pickle holds more than tensors and plain containers; refused unread"
        else:
            reason = f"not a PyTorch checkpoint: {_short(error)}"
        raise _unsupported(path, reason) from None
    if not isinstance(state_dict, dict):
        raise _unsupported(path, f"it holds a {type(state_dict).__name__}, not a state dict")
    return state_dict


def _read_safetensors(path: Path, loader: ModelLoader) -> dict:
    try:
        return loader.load_state_dict_from_file(path)
    except Exception as error:
        raise _unsupported(path, f"not a safetensors file: {_short(error)}") from None


def _check_descriptor(path: Path, descriptor) -> None:
    arch = descriptor.architecture.name
    if not isinstance(descriptor, ImageModelDescriptor):
        raise _unsupported(path, f"{arch} is an {descriptor.purpose.lower()} model")
    if descriptor.purpose == "Restoration":
        # its output has the input's size: compared with SR models it would be bicubic's result
        raise _unsupported(path, f"{arch} is a x1 restoration model (denoise/deblur/JPEG)")
    if descriptor.purpose == "FaceSR":
        raise _unsupported(path, f"{arch} is a face restoration model for aligned face crops")
    if descriptor.purpose != "SR" or descriptor.scale < 1:
        raise _unsupported(path, f"{arch} is a {descriptor.purpose} model of scale {descriptor.scale}")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        channels = f"{descriptor.input_channels} -> {descriptor.output_channels} channels"
        raise _unsupported(path, f"{arch} with {channels}; only RGB -> RGB models are compared")


# ---------------------------------------------------------------------------------------
# The probe: receptive radius and memory per pixel, from runs on small inputs
# ---------------------------------------------------------------------------------------


def _layer_reach(module: torch.nn.Module) -> float | None:
    """Input pixels (of the layer's own resolution) an output pixel reads per direction;
    None for a layer whose reach is unknown (attention, pooling, custom code)."""
    if isinstance(module, torch.nn.Conv2d):
        reach = 0
        for axis, (k, d, s) in enumerate(zip(module.kernel_size, module.dilation, module.stride)):
            span = d * (k - 1)
            if module.padding == "same":
                pad = span // 2
            else:
                pad = 0 if module.padding == "valid" else module.padding[axis]
            reach = max(reach, max(pad, span - pad) + s - 1)
        return float(reach)
    if isinstance(module, torch.nn.PixelUnshuffle):
        return float(module.downscale_factor - 1)
    if isinstance(module, torch.nn.Upsample):
        return 0.0 if module.mode == "nearest" else 2.0
    if isinstance(module, _POINTWISE):
        return 0.0
    return None


def _sized_side(requirements: SizeRequirements, side: int) -> int:
    side = max(side, requirements.minimum)
    return -(-side // requirements.multiple_of) * requirements.multiple_of


def _probe(path: Path, descriptor: ImageModelDescriptor) -> tuple[int | None, float]:
    """Run the model on a small square at load (a file that loads but cannot run fails here).

    Memory: the largest leaf-module output per input pixel. Radius: the sum over the layers
    of each one's reach in LR pixels (its reach divided by its resolution relative to the
    input), an upper bound on any path through them; then checked by changing one corner
    pixel of a probe larger than the radius: outputs beyond it must not move, which also
    catches spatial code that hooks cannot see (functional pooling, global statistics)."""
    leaves = [m for m in descriptor.model.modules() if not list(m.children())]
    reaches = [_layer_reach(m) for m in leaves]
    bounded = all(r is not None for r in reaches)
    records: list[tuple[torch.nn.Module, int, int]] = []

    def hook(module, inputs, output):
        first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        in_height = first.shape[-2] if first is not None and first.dim() == 4 else 0
        records.append((module, in_height, output.numel() if isinstance(output, torch.Tensor) else 0))

    side = _sized_side(descriptor.size_requirements, PROBE_SIDE)
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand(1, 3, side, side, generator=generator)
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        _run_probe(path, descriptor, probe)
    finally:
        for handle in handles:
            handle.remove()
    bytes_per_pixel = BYTES_PER_ACTIVATION * max([n for _, _, n in records] + [3 * side * side]) / side**2
    if not bounded:
        return None, bytes_per_pixel
    reach_of = dict(zip(leaves, reaches))
    # a layer called twice (shared weights) counts twice: each call lengthens the path
    total = sum(reach_of[m] * side / h for m, h, _ in records if h > 0 and reach_of[m] > 0)
    radius = math.ceil(total - 1e-9)
    if radius > MAX_EXACT_MARGIN or not _radius_holds(path, descriptor, radius):
        return None, bytes_per_pixel
    return radius, bytes_per_pixel


def _radius_holds(path: Path, descriptor: ImageModelDescriptor, radius: int) -> bool:
    side = _sized_side(descriptor.size_requirements, radius + 8)
    generator = torch.Generator().manual_seed(1)
    base = torch.rand(1, 3, side, side, generator=generator)
    changed = base.clone()
    changed[0, :, 0, 0] = 1 - changed[0, :, 0, 0]
    diff = (_run_probe(path, descriptor, changed) - _run_probe(path, descriptor, base)).abs()[0].amax(0)
    edge = (radius + 1) * descriptor.scale  # outputs at or beyond this row or column must not move
    beyond = torch.cat([diff[edge:].flatten(), diff[:edge, edge:].flatten()])
    return beyond.numel() == 0 or float(beyond.max()) <= 1e-6


def _run_probe(path: Path, descriptor: ImageModelDescriptor, image: torch.Tensor) -> torch.Tensor:
    try:
        return descriptor(image.to(descriptor.device)).float().cpu()
    except Exception as error:
        size = f"{image.shape[-1]}x{image.shape[-2]}"
        raise _unsupported(path, f"it fails on a {size} probe image: {_short(error)}") from None
