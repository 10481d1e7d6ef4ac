"""The methods an evaluation compares: bicubic (always), CiaoSR checkpoints and, where a
file is not a CiaoSR checkpoint, any super-resolution model spandrel can load (peers).

Every method upscales an (h, w, 3) float32 image to an exact (H, W) and returns
(1, 3, H, W) quantised to 8 bits, as a saved file would be. Each says in one line how its
outputs are made (the report prints it).
"""

from __future__ import annotations

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
    precision: str = "fp32"


class Method:
    name: str
    description: str

    def upscale(self, lr: np.ndarray, size: tuple[int, int], settings: RunSettings) -> torch.Tensor:
        raise NotImplementedError


class Bicubic(Method):
    name = BICUBIC
    description = "MATLAB bicubic (imresize), antialiased when shrinking"

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

        out = upscale_image(self.model, lr, size=size, tile=settings.tile, tile_margin=settings.tile_margin,
                            precision=settings.precision)
        return quantize_8bit(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None].float())


class PeerMethod(Method):
    """A fixed-scale model through spandrel, run by the paper's convention (``realciao.peers``)."""

    def __init__(self, name: str, peer):
        self.name = name
        self.peer = peer
        self.description = f"{peer.label} ({peer.name} arch, x{peer.scale}) at its native scale"
        self.made: dict[tuple, str] = {}  # how each output size was made, for the report

    def upscale(self, lr, size, settings):
        out = self.peer.upscale(lr, size, tile=settings.tile, margin=settings.tile_margin, precision=settings.precision)
        ratio = (size[0] / lr.shape[0], size[1] / lr.shape[1])
        self.made.setdefault((round(ratio[0], 4), round(ratio[1], 4)), out.description)
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
    spandrel; a file neither recognises is one line naming it."""
    from realciao.checkpoint import PickleRefused, generator_from_state, is_ciaosr_state, read_state
    from realciao.peers import PeerError, load_peer

    file = Path(path)
    if not file.is_file():
        raise ModelFileError(f"{file}: no such model file")
    refused = None
    try:
        metadata, state = read_state(file, allow_pickle, "--allow-pickle")
        if is_ciaosr_state(metadata, state):
            return "ciaosr", generator_from_state(metadata, state, file).to(device).eval()
    except PickleRefused as error:
        refused = error  # a peer's loader reads no more than torch's restricted one: it will fail too
    try:
        return "peer", load_peer(file, device=device)
    except PeerError as error:
        if refused is not None:
            raise refused from None
        raise ModelFileError(f"{file}: not a supported super-resolution model (neither a CiaoSR checkpoint "
                             f"nor a model spandrel loads: {str(error).split('(', 1)[-1].rstrip(')')})") from None


def load_methods(specs: list[str], allow_pickle: bool, device) -> list[Method]:
    """Bicubic first, then one method per --model (NAME=PATH or PATH; 'bicubic' is skipped)."""
    methods: list[Method] = [Bicubic()]
    names = {BICUBIC}
    for spec in specs:
        if spec.lower() == BICUBIC:
            continue
        label, path = parse_model_spec(spec)
        base = label or Path(path).stem
        name, suffix = base, 2
        while name in names:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names.add(name)
        kind, model = load_model(path, allow_pickle, device)
        methods.append(CiaoSRMethod(name, model, Path(path)) if kind == "ciaosr" else PeerMethod(name, model))
    return methods
