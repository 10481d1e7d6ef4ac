"""CiaoSR generators loadable through spandrel, as chaiNNer and ComfyUI load models.

    import realciao, spandrel
    realciao.install_spandrel(scale=4)
    model = spandrel.ModelLoader().load_from_file("net_g_ema.safetensors")  # or an official .pth

spandrel's descriptors have one integer scale, so the arbitrary-scale generator is
registered at the scale ``install_spandrel`` is given; its call maps (N, 3, H, W) in [0, 1]
to (N, 3, scale*H, scale*W) with ``realciao.upscale``. spandrel reads the file (safetensors,
or pickles through its restricted unpickler); realciao infers the generator from the keys
(``realciao.checkpoint``), so a realciao file loads here without its metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch
from spandrel import (
    MAIN_REGISTRY,
    Architecture,
    ArchSupport,
    ImageModelDescriptor,
    ModelTiling,
    SizeRequirements,
    StateDict,
)
from torch import nn

from realciao.archs.ciaosr import CiaoSR
from realciao.checkpoint import generator_from_state, is_ciaosr_state
from realciao.errors import RealciaoError
from realciao.inference import upscale

ARCH_ID = "realciao-CiaoSR"
STATE_LABEL = Path("<state dict given to spandrel>")  # names the source in realciao's errors


class FixedScaleCiaoSR(nn.Module):
    """A generator at one integer scale: (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), in fp32."""

    def __init__(self, generator: CiaoSR, scale: int):
        super().__init__()
        self.generator = generator
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        return upscale(self.generator, image, (self.scale * height, self.scale * width)).to(image.dtype)


class CiaoSRArch(Architecture[FixedScaleCiaoSR]):
    def __init__(self):
        super().__init__(id=ARCH_ID, name="CiaoSR (realciao)", detect=lambda state: is_ciaosr_state({}, state))
        self.scale = 4

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[FixedScaleCiaoSR]:
        generator = generator_from_state({}, dict(state_dict), STATE_LABEL).eval()
        exact_tiles = generator.encoder.receptive_radius() is not None and generator.upsampler.cs_attn is None
        model = FixedScaleCiaoSR(generator, self.scale)
        return ImageModelDescriptor(
            model,
            model.state_dict(),  # the descriptor loads it into the model: realciao's keys, converted
            architecture=self,
            purpose="SR",
            tags=[generator.name, "non-local"] if generator.upsampler.cs_attn is not None else [generator.name],
            # realciao keeps the encoder in fp32 and reduces the upsampler by autocast; a model
            # converted with .half()/.bfloat16() as spandrel does would not run
            supports_half=False,
            supports_bfloat16=False,
            scale=self.scale,
            input_channels=3,
            output_channels=3,
            size_requirements=SizeRequirements(),  # any size: SwinIR and the non-local branch pad inside
            # tiles change the result where features see beyond a fixed radius (non-local, SwinIR windows)
            tiling=ModelTiling.SUPPORTED if exact_tiles else ModelTiling.DISCOURAGED,
        )


ARCHITECTURE = CiaoSRArch()


def install_spandrel(scale: int = 4) -> Architecture:
    """Register CiaoSR in spandrel's ``MAIN_REGISTRY`` at ``scale`` (checked before the other
    architectures, whose detectors can mistake an official SwinIR-CiaoSR checkpoint for SwinIR);
    calling it again changes the scale of models loaded from then on."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise RealciaoError(f"install_spandrel: scale must be a positive integer (spandrel's models have one "
                            f"integer scale), got {scale!r}")
    ARCHITECTURE.scale = scale
    others = tuple(a.architecture.id for a in MAIN_REGISTRY.architectures("insertion") if a.architecture.id != ARCH_ID)
    MAIN_REGISTRY.add(ArchSupport.from_architecture(ARCHITECTURE, before=others), ignore_duplicates=True)
    return ARCHITECTURE
