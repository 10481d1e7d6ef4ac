"""Losses of the two stages: L1, Charbonnier, LDL, VGG19 perceptual (pre-ReLU features), vanilla GAN,
and their registry (``LOSSES``): the trainer's loss set is built from it and the options.

A loss is one entry: its term function (what it computes from a step's ``LossInputs``), the
``losses.<field>`` that holds its weight (0 turns it off), the stages it belongs to, and,
when it needs one, how to make its state for a run (the perceptual loss's VGG19). Adding a
loss is a function, its entry here, and its weight field in ``LossOptions``
(``realciao/train/config.py``); the trainer is not touched.

Charbonnier (Lai et al., LapSRN, 2017): the mean of sqrt(d^2 + eps^2) over every value of
d = output - target; a smooth L1 whose value at d = 0 is eps.

LDL (Liang, Zeng and Zhang, "Details or Artifacts", CVPR 2022): with R = |target - output|
(C x H x W), a per-pixel map M(i, j) = var of R over the n x n window centred on (i, j)
(n = 7, all channels; reflect padding at the borders; unbiased variance) is scaled by the
patch's sigma = var(R over the whole patch) ** (1 / 5). The map is kept only where the EMA
model's output is strictly closer to the target than the current output (per pixel,
residuals averaged over channels) and zeroed elsewhere, so only pixels where the current
model is worse than its moving average, the unstable artifacts, are penalised. The loss is the mean of |M * (target - output)|; M is a
weight and carries no gradient.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from realciao.errors import RealciaoError

if TYPE_CHECKING:  # the options' types only: config imports this module to check layer names
    from realciao.train.config import LossOptions

# pre-ReLU convolutions of VGG19 and their index in torchvision's ``features``
VGG_LAYERS = {
    "conv1_1": 0,
    "conv1_2": 2,
    "conv2_1": 5,
    "conv2_2": 7,
    "conv3_1": 10,
    "conv3_2": 12,
    "conv3_3": 14,
    "conv3_4": 16,
    "conv4_1": 19,
    "conv4_2": 21,
    "conv4_3": 23,
    "conv4_4": 25,
    "conv5_1": 28,
    "conv5_2": 30,
    "conv5_3": 32,
    "conv5_4": 34,
}
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's file name for its ImageNet VGG19 weights
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsMissingError(RealciaoError, FileNotFoundError):
    """A weight file the configuration needs is not there; the message says where to put it."""


def torchvision_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def resolve_vgg19_weights(path: str | None, allow_download: bool = False) -> dict[str, torch.Tensor]:
    """VGG19 weights in torchvision's layout: from ``path``, else torchvision's cache, else
    (only when ``allow_download``) downloaded into that cache by torchvision."""
    candidates = [Path(path)] if path else [torchvision_cache_path()]
    for candidate in candidates:
        if candidate.is_file():
            return read_vgg19_file(candidate)
    if allow_download and not path:
        try:
            return torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu", progress=False)
        except Exception as error:  # offline: say where the file goes instead
            raise WeightsMissingError(
                missing_vgg_message(candidates[0], f"download failed: {error}")
            ) from error
    raise WeightsMissingError(missing_vgg_message(candidates[0], "file not found"))


def missing_vgg_message(path: Path, reason: str) -> str:
    return (
        f"VGG19 weights for the perceptual loss: {path}: {reason}. Download {VGG19_URL} on a connected machine and "
        f"either put it at {torchvision_cache_path()} or set losses.vgg_weights to its path."
    )


def read_vgg19_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    # torchvision's file is a plain state dict: the restricted (weights-only) unpickler reads it safely
    return torch.load(path, map_location="cpu", weights_only=True)


class VGGFeatures(nn.Module):
    """Pre-ReLU VGG19 feature maps at the named layers, for inputs in [0, 1]. Frozen."""

    def __init__(self, layers: list[str], state_dict: dict[str, torch.Tensor]):
        super().__init__()
        from torchvision.models import vgg19

        last = max(VGG_LAYERS[name] for name in layers)
        features = vgg19(weights=None).features[: last + 1]
        features.load_state_dict(
            {
                k[len("features.") :]: v
                for k, v in state_dict.items()
                if k.startswith("features.") and int(k.split(".")[1]) <= last
            }
        )
        for i, module in enumerate(features):
            if isinstance(module, nn.ReLU):
                features[i] = nn.ReLU(inplace=False)  # the pre-ReLU outputs we keep must not be overwritten
        self.features = features.requires_grad_(False).eval()
        self.capture = {VGG_LAYERS[name]: name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self.capture:
                out[self.capture[i]] = x
        return out


class PerceptualLoss(nn.Module):
    def __init__(self, layer_weights: dict[str, float], state_dict: dict[str, torch.Tensor]):
        super().__init__()
        self.layer_weights = dict(layer_weights)
        self.vgg = VGGFeatures(list(layer_weights), state_dict)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x_features = self.vgg(x)
        with torch.no_grad():
            target_features = self.vgg(target)
        return sum(w * F.l1_loss(x_features[k], target_features[k]) for k, w in self.layer_weights.items())


LDL_WINDOW = 7  # n of the local variance window
LDL_EXPONENT = 5  # a of sigma = var(R) ** (1 / a)


def charbonnier_loss(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of sqrt((output - target)^2 + eps^2)."""
    diff = output.float() - target.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def local_variance(x: torch.Tensor, window: int = LDL_WINDOW) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W): the unbiased variance of the window x window x C values
    centred on each pixel (reflect padding; replicate where the image is too small to reflect)."""
    pad = window // 2
    b, c, h, w = x.shape
    mode = "reflect" if min(h, w) > pad else "replicate"
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)  # centred: E[x^2] - E[x]^2 loses less to cancellation
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    n = window * window * c
    mean = F.avg_pool2d(padded, window, stride=1).mean(1, keepdim=True)
    mean_sq = F.avg_pool2d(padded * padded, window, stride=1).mean(1, keepdim=True)
    return ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0)


@torch.no_grad()
def ldl_artifact_map(
    output: torch.Tensor,
    target: torch.Tensor,
    ema_output: torch.Tensor,
    window: int = LDL_WINDOW,
    exponent: float = LDL_EXPONENT,
) -> torch.Tensor:
    """LDL's refined artifact map M, (B, 1, H, W), for (B, C, H, W) images."""
    output, target, ema_output = output.float(), target.float(), ema_output.float()
    residual = (target - output).abs()
    sigma = residual.flatten(1).var(dim=1).pow(1.0 / exponent).view(-1, 1, 1, 1)
    weight = sigma * local_variance(residual, window)
    worse_than_ema = (target - ema_output).abs().mean(1, keepdim=True) < residual.mean(1, keepdim=True)
    return weight * worse_than_ema


def ldl_loss(output: torch.Tensor, target: torch.Tensor, ema_output: torch.Tensor) -> torch.Tensor:
    """Mean of |M * (target - output)|, M the artifact map (no gradient through it)."""
    weight = ldl_artifact_map(output.detach(), target, ema_output)
    return (weight * (target.float() - output.float())).abs().mean()


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss on discriminator logits."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


DISCRIMINATOR_MULTIPLE = 8  # the U-Net discriminator downsamples three times


def discriminator_view(image: torch.Tensor) -> torch.Tensor:
    """The part the U-Net discriminator takes: sides cut down to multiples of 8 (real pairs'
    GT keeps the exact size its LR patch covers)."""
    h, w = (
        max(DISCRIMINATOR_MULTIPLE, s // DISCRIMINATOR_MULTIPLE * DISCRIMINATOR_MULTIPLE)
        for s in image.shape[-2:]
    )
    return image if (h, w) == tuple(image.shape[-2:]) else image[..., :h, :w]


# ----------------------------------------------------------------------------- the registry
@dataclass
class LossInputs:
    """What a loss term sees in one micro-step.

    ``output`` and ``target``: the generator's prediction (float32) and what it should be: the
    Net stage's sampled pixels, (B, Q, 3) in model space, or the GAN stage's whole patches,
    (B, 3, H, W) in [0, 1]. ``images`` views values of that layout as (B, 3, H, W) images (in
    the Net stage only when a term of the set ``needs_images``: its pixels are then one window
    per patch). ``ema_output`` is the EMA model's prediction for the same queries, computed
    when first read (by ``ema_prediction``). ``discriminator`` is the GAN stage's (None in the
    Net stage); ``autocast()`` the run's precision.
    """

    output: torch.Tensor
    target: torch.Tensor
    images: Callable[[torch.Tensor], torch.Tensor]
    ema_prediction: Callable[[], torch.Tensor]
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    discriminator: nn.Module | None = None

    @functools.cached_property
    def ema_output(self) -> torch.Tensor:
        return self.ema_prediction()


Term = Callable[[LossInputs], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    """One registered loss: ``make(options, device)`` gives its term for a run (most return a
    plain function; the perceptual loss loads its VGG19 there), the term gives its unweighted
    value; ``weight`` names its ``LossOptions`` field."""

    name: str
    """The term's name in the logged losses."""
    weight: str
    """The ``losses.<field>`` holding its weight; a weight of 0 leaves the term out."""
    make: Callable[[LossOptions, torch.device], Term]
    stages: tuple[str, ...] = ("net", "gan")
    needs_images: bool = False
    """The term compares neighbourhoods: the Net stage then samples a square window per patch."""
    always: bool = False
    """Kept (and logged) even at weight 0: the stage's own base term."""


def _plain(term: Term) -> Callable[[LossOptions, torch.device], Term]:
    return lambda options, device: term


def l1_term(inputs: LossInputs) -> torch.Tensor:
    return F.l1_loss(inputs.output, inputs.target)


def make_charbonnier(options: LossOptions, device: torch.device) -> Term:
    return lambda inputs: charbonnier_loss(inputs.output, inputs.target, options.charbonnier_eps)


def ldl_term(inputs: LossInputs) -> torch.Tensor:
    return ldl_loss(
        inputs.images(inputs.output), inputs.images(inputs.target), inputs.images(inputs.ema_output)
    )


def make_perceptual(options: LossOptions, device: torch.device) -> Term:
    vgg_state = resolve_vgg19_weights(options.vgg_weights, allow_download=online_allowed())
    return perceptual_term(PerceptualLoss(options.perceptual_layers, vgg_state).to(device))


def perceptual_term(network: PerceptualLoss) -> Term:
    """The perceptual term of ``network`` (a ``PerceptualLoss``), in the run's precision."""

    def term(inputs: LossInputs) -> torch.Tensor:
        with inputs.autocast():
            return network(inputs.output, inputs.target)

    return term


def gan_term(inputs: LossInputs) -> torch.Tensor:
    """The generator's side: the discriminator (not trained by this term) should take the output as real."""
    inputs.discriminator.requires_grad_(False)
    with inputs.autocast():
        fake_logits = inputs.discriminator(discriminator_view(inputs.output))
    inputs.discriminator.requires_grad_(True)
    return gan_loss(fake_logits, real=True)


# in this order the terms are summed (and logged)
LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("l1", "l1_weight", _plain(l1_term), always=True),
        Loss("charbonnier", "charbonnier_weight", make_charbonnier),
        Loss("ldl", "ldl_weight", _plain(ldl_term), needs_images=True),
        Loss("perceptual", "perceptual_weight", make_perceptual, stages=("gan",)),
        Loss("gan", "gan_weight", _plain(gan_term), stages=("gan",), always=True),
    )
}


def register_loss(loss: Loss) -> Loss:
    """Add a loss to the registry (after the shipped ones); its weight field must exist in the options."""
    if loss.name in LOSSES:
        raise ValueError(f"a loss named {loss.name!r} is registered already")
    LOSSES[loss.name] = loss
    return loss


class LossSet:
    """The terms a run's options turn on for its stage, each made once; calling it gives every
    term, weighted, in registry order. ``made``: terms the caller made itself, by name (a
    benchmark's perceptual loss on random VGG19 weights)."""

    def __init__(
        self, options: LossOptions, stage: str, device: torch.device, made: dict[str, Term] | None = None
    ):
        self.terms: list[tuple[str, float, Term]] = []
        for loss in LOSSES.values():
            weight = getattr(options, loss.weight)
            if stage in loss.stages and (weight > 0 or loss.always):
                term = (made or {}).get(loss.name) or loss.make(options, device)
                self.terms.append((loss.name, weight, term))
        self.needs_images = any(LOSSES[name].needs_images for name, _, _ in self.terms)

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.terms]

    def __call__(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        return {name: (term(inputs) * weight).float() for name, weight, term in self.terms}


def online_allowed() -> bool:
    return os.environ.get("REALCIAO_OFFLINE", "") == "" and os.environ.get("HF_HUB_OFFLINE", "") == ""
