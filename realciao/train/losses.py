"""Losses of the two stages: L1, Charbonnier, LDL, VGG19 perceptual (pre-ReLU features), vanilla GAN.

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

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from realciao.errors import RealciaoError
from realciao.train.config import VGG_LAYERS

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
            raise WeightsMissingError(missing_vgg_message(candidates[0], f"download failed: {error}")) from error
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
        features.load_state_dict({k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")
                                  and int(k.split(".")[1]) <= last})
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
def ldl_artifact_map(output: torch.Tensor, target: torch.Tensor, ema_output: torch.Tensor,
                     window: int = LDL_WINDOW, exponent: float = LDL_EXPONENT) -> torch.Tensor:
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


def online_allowed() -> bool:
    return os.environ.get("REALCIAO_OFFLINE", "") == "" and os.environ.get("HF_HUB_OFFLINE", "") == ""
