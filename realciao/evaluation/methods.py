"""The methods an evaluation compares: bicubic (always), CiaoSR checkpoints and, where a
file is not a CiaoSR checkpoint, any super-resolution model spandrel can load (peers).

Every method upscales an (h, w, 3) float32 image to an exact (H, W) and returns
(1, 3, H, W) quantised to 8 bits, as a saved file would be. Each says in one line how its
outputs are made (the report prints it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from realciao.bicubic import matlab_resize
from realciao.errors import RealciaoError
from realciao.metrics import quantize_8bit

BICUBIC = "bicubic"


class ModelFileError(RealciaoError, ValueError):
    """A --model file that no loader recognises."""


@dataclass(frozen=True)
class RunSettings:
    tile: int | None = None  # LR tile side (None: from free memory; 0: whole image)
    tile_margin: int | None = None
    precision: str = "fp32"  # fp32, bf16, fp16 (``run_evaluation`` resolves "auto" first)
    # True when the precision was chosen for the device (auto): a peer that spandrel marks
    # as unable to run in it runs in fp32 instead of being an error
    precision_fallback: bool = False


class Method:
    """``upscale`` gives the output; ``how`` then says in a line how it was made (the same
    line for every image of a scale, so the report can show one per method and scale)."""

    name: str
    description: str
    how: str = ""

    def upscale(self, lr: np.ndarray, size: tuple[int, int], settings: RunSettings) -> torch.Tensor:
        raise NotImplementedError


class Bicubic(Method):
    name = BICUBIC
    description = "MATLAB bicubic (imresize), antialiased when shrinking"
    how = "MATLAB bicubic to the size asked for"

    def upscale(self, lr, size, settings):
        return quantize_8bit(matlab_resize(torch.from_numpy(lr).permute(2, 0, 1), size)[None])


class CiaoSRMethod(Method):
    def __init__(self, name: str, model, path: Path):
        self.name = name
        self.model = model
        encoder = model.config.get("encoder", "?")
        self.description = f"CiaoSR ({encoder} encoder) from {path.name}, any scale in one pass, tiled"

    def upscale(self, lr, size, settings):
        from realciao.upscaling import upscale_image

        out = upscale_image(
            self.model,
            lr,
            size=size,
            tile=settings.tile,
            tile_margin=settings.tile_margin,
            precision=settings.precision,
        )
        self.how = f"one pass to the size asked for, {settings.precision}"
        return quantize_8bit(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float())


class OnnxAnySizeMethod(CiaoSRMethod):
    """An any-size ONNX graph (``realciao-export --arbitrary``), run as CiaoSR is: one pass, tiled."""

    def __init__(self, name: str, model):
        self.name = name
        self.model = model
        self.description = f"{model.describe()}: any scale in one pass, tiled, onnxruntime"

    def upscale(self, lr, size, settings):
        out = super().upscale(lr, size, settings)
        self.how = "one pass to the size asked for, onnxruntime, the graph's precision"
        return out


class PeerMethod(Method):
    """A fixed-scale model through spandrel, run by the paper's convention (``realciao.peers``)."""

    def __init__(self, name: str, peer):
        self.name = name
        self.peer = peer
        self.description = (
            f"{peer.path.name}: {peer.name} arch, x{peer.scale}, loaded by spandrel; run at x{peer.scale}, "
            f"again on its own output while smaller than the size asked for, then MATLAB bicubic"
        )

    def precision_for(self, precision: str, fallback: bool) -> str:
        """``precision`` when spandrel says the model runs in it; fp32 when ``fallback``; else an error."""
        unable = (precision == "bf16" and not self.peer.supports_bfloat16) or (
            precision == "fp16" and not self.peer.supports_half
        )
        if not unable:
            return precision
        if fallback:
            return "fp32"
        from realciao.peers import PeerError

        raise PeerError(
            f"{self.peer.path}: spandrel marks {self.peer.name} as not running in {precision}; "
            f"use --precision fp32 or auto"
        )

    def upscale(self, lr, size, settings):
        precision = self.precision_for(settings.precision, settings.precision_fallback)
        out = self.peer.upscale(
            lr, size, tile=settings.tile, margin=settings.tile_margin, precision=precision
        )
        self.how = f"{self.peer.how(out)}, {precision}"
        return quantize_8bit(torch.from_numpy(np.ascontiguousarray(out.image)).permute(2, 0, 1)[None].float())


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` (the row is then named after the file's stem)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if name and path:
            return name, path
    return None, spec


def load_model(path: str, allow_pickle: bool, device):
    """("ciaosr", generator) when the file is a CiaoSR checkpoint, else ("peer", model) through
    spandrel; an .onnx file is ("peer", ...) at a fixed scale, ("onnx-any-size", model) otherwise
    (``realciao.onnx_models``); a file none recognises is one line naming it.

    Both readers load pickles with torch's restricted (weights-only) unpickler, so a peer's
    .pth needs no --allow-pickle; a pickle that only full unpickling reads is refused unless
    --allow-pickle (and spandrel never reads one). TorchScript archives carry code and are
    refused before torch.load sees them."""
    from realciao.checkpoint import PickleRefused, generator_from_state, is_ciaosr_state, read_state
    from realciao.onnx_models import FIXED, OnnxModelError, is_onnx, load_onnx
    from realciao.peers import PeerError, is_torchscript, load_peer

    file = Path(path)
    if file.is_dir():
        raise ModelFileError(f"{file}: is a folder; give the model file in it (e.g. net_g_ema.safetensors)")
    if not file.is_file():
        raise ModelFileError(f"{file}: no such model file")
    unsupported = f"{file}: not a supported super-resolution model"
    if is_onnx(file):  # fixed-scale graphs run as fixed-scale peers do, any-size ones as CiaoSR
        try:
            model = load_onnx(file, device)
            return ("peer", model.as_peer()) if model.kind == FIXED else ("onnx-any-size", model)
        except OnnxModelError as error:
            raise ModelFileError(f"{unsupported} ({str(error).removeprefix(f'{file}: ')})") from None
    if is_torchscript(file):
        raise ModelFileError(
            f"{unsupported} (a TorchScript archive, which carries code; save its state dict instead)"
        )
    refused = None
    try:
        metadata, state = read_state(file, allow_pickle, "--allow-pickle")
    except PickleRefused as error:
        refused = error
    except Exception:  # CheckpointError, or what torch's reader raises on other files (KeyError...)
        pass  # not a weights file realciao reads: spandrel's reader says why
    else:
        if is_ciaosr_state(metadata, state):
            return "ciaosr", generator_from_state(metadata, state, file).to(device).eval()
    if refused is not None:
        raise ModelFileError(
            f"{unsupported} without full unpickling: it holds Python objects beyond tensors and plain containers, "
            f"and unpickling them can run code. If it is a CiaoSR checkpoint from a source you trust, pass "
            f"--allow-pickle (spandrel's models never need it)"
        ) from None
    try:
        return "peer", load_peer(file, device=device)
    except PeerError as error:
        raise ModelFileError(
            f"{unsupported} (neither a CiaoSR checkpoint nor a model spandrel loads: {error.reason})"
        ) from None


def safe_name(name: str) -> str:
    """A method, dataset or image name as part of a file name."""
    return re.sub(r"[^\w.+-]+", "_", name).strip("._") or "_"


def load_methods(specs: list[str], allow_pickle: bool, device) -> list[Method]:
    """Bicubic first, then one method per --model (NAME=PATH or PATH; 'bicubic' is skipped).
    Names are made unique (``_2``...) as they appear in file names."""
    methods: list[Method] = [Bicubic()]
    taken = {safe_name(BICUBIC).lower()}
    for spec in specs:
        if spec.lower() == BICUBIC:
            continue
        label, path = parse_model_spec(spec)
        base = label or Path(path).stem
        name, suffix = base, 2
        while safe_name(name).lower() in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(safe_name(name).lower())
        kind, model = load_model(path, allow_pickle, device)
        if kind == "ciaosr":
            methods.append(CiaoSRMethod(name, model, Path(path)))
        elif kind == "onnx-any-size":
            methods.append(OnnxAnySizeMethod(name, model))
        else:
            methods.append(PeerMethod(name, model))
    return methods
