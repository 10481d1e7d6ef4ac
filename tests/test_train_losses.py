"""Losses and the discriminator: VGG weights from a local file, the clear error without
them, and a U-Net discriminator that is Real-ESRGAN's (basicsr as the oracle)."""

from __future__ import annotations

import pytest
import torch

from realciao.archs.discriminator import UNetDiscriminatorSN
from realciao.train.losses import (
    PerceptualLoss,
    WeightsMissingError,
    charbonnier_loss,
    gan_loss,
    ldl_artifact_map,
    ldl_loss,
    resolve_vgg19_weights,
)
from realciao.train.trainer import step_seed


def fake_vgg19_file(path):
    """Random weights in torchvision's VGG19 layout (as a real download would be laid out)."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    torch.save(vgg19(weights=None).state_dict(), path)
    return path


def test_missing_vgg_weights_name_the_file_and_where_to_put_it(tmp_path):
    with pytest.raises(WeightsMissingError, match=r"nope\.pth: file not found.*vgg19-dcbb9e9d\.pth.*losses\.vgg_weights"):
        resolve_vgg19_weights(str(tmp_path / "nope.pth"))


def test_perceptual_loss_from_a_local_torchvision_file(tmp_path):
    state = resolve_vgg19_weights(str(fake_vgg19_file(tmp_path / "vgg19.pth")))
    loss = PerceptualLoss({"conv1_2": 0.1, "conv3_4": 1.0}, state)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    value = loss(x, target)
    value.backward()
    assert value > 0 and x.grad.abs().sum() > 0
    assert loss(target, target) == 0
    assert not any(p.requires_grad for p in loss.vgg.parameters())


def test_features_are_taken_before_the_relu(tmp_path):
    state = resolve_vgg19_weights(str(fake_vgg19_file(tmp_path / "vgg19.pth")))
    features = PerceptualLoss({"conv1_2": 1.0}, state).vgg(torch.rand(1, 3, 16, 16))
    assert (features["conv1_2"] < 0).any()  # a post-ReLU map would have no negative values


def test_discriminator_matches_real_esrgan_layout_and_output():
    from realciao.compat import import_basicsr

    reference = import_basicsr("archs.discriminator_arch").UNetDiscriminatorSN(3, 16).eval()
    ours = UNetDiscriminatorSN(3, 16).eval()
    assert set(reference.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 24, 40)
    assert torch.allclose(ours(x), reference(x), atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 8"):
        ours(torch.rand(1, 3, 20, 24))


def test_gan_loss_directions():
    logits = torch.tensor([5.0, 4.0])
    assert gan_loss(logits, real=True) < gan_loss(logits, real=False)


def test_step_seeds_differ_by_step_and_rank():
    assert len({step_seed(0, 3, s, r) for s in range(10) for r in range(2)}) == 20


# --- Charbonnier and LDL against their published definitions --------------------------------------

def test_charbonnier_is_the_mean_of_sqrt_d2_plus_eps2():
    output = torch.tensor([[0.0, 3.0], [1.0, -4.0]])
    target = torch.zeros(2, 2)
    expected = (4.0 + 5.0 + (1 + 16) ** 0.5 + (16 + 16) ** 0.5) / 4  # eps = 4: sqrt(d^2 + 16)
    assert charbonnier_loss(output, target, eps=4.0).item() == pytest.approx(expected)
    assert charbonnier_loss(target, target, eps=1e-3).item() == pytest.approx(1e-3)  # its floor is eps
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    y = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    assert charbonnier_loss(x, y, 1e-6).item() == pytest.approx(torch.nn.functional.l1_loss(x, y).item(), abs=1e-5)


def brute_force_ldl_map(output, target, ema, n=7, a=5):
    """Liang et al. 2022, pixel by pixel: R = |HR - SR|; M(i, j) = var(R over the n x n window at
    (i, j), all channels); sigma = var(R) ** (1/a); kept where |HR - SR_ema| < |HR - SR|."""
    import numpy as np

    maps = []
    for o, t, e in zip(output.double().numpy(), target.double().numpy(), ema.double().numpy()):
        residual = np.abs(t - o)
        sigma = residual.var(ddof=1) ** (1 / a)
        padded = np.pad(residual, ((0, 0), (n // 2, n // 2), (n // 2, n // 2)), mode="reflect")
        ema_residual = np.abs(t - e).mean(0)
        out = np.zeros(residual.shape[1:])
        for i in range(residual.shape[1]):
            for j in range(residual.shape[2]):
                if ema_residual[i, j] < residual[:, i, j].mean():
                    out[i, j] = sigma * padded[:, i : i + n, j : j + n].var(ddof=1)
        maps.append(out[None])
    return torch.from_numpy(np.stack(maps))


def test_ldl_map_and_loss_match_the_definition_on_small_tensors():
    torch.manual_seed(1)
    target = torch.rand(2, 3, 9, 11)
    output = target + 0.2 * torch.randn(2, 3, 9, 11)
    ema = target + 0.1 * torch.randn(2, 3, 9, 11)
    expected = brute_force_ldl_map(output, target, ema)
    assert torch.allclose(ldl_artifact_map(output, target, ema).double(), expected, rtol=1e-4, atol=1e-7)
    expected_loss = (expected * (target - output).double().abs()).mean()
    assert ldl_loss(output, target, ema).item() == pytest.approx(expected_loss.item(), rel=1e-4)


def test_ldl_penalises_only_where_the_model_is_worse_than_its_ema_and_passes_no_gradient_through_the_map():
    torch.manual_seed(2)
    target = torch.rand(1, 3, 12, 12)
    output = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    assert ldl_loss(output, target, ema_output=output.detach()).item() == 0  # no pixel is worse than the EMA
    assert ldl_loss(output, target, ema_output=target).item() > 0  # a perfect EMA: every pixel with a residual
    flat = torch.full_like(target, 0.5)
    assert ldl_loss(flat + 0.1, flat, ema_output=flat).item() == 0  # a uniform error has no local variance
    ema = target.clone()
    ema[..., :6] = output.detach()[..., :6]  # the EMA is as bad as the model on the left half
    weights = ldl_artifact_map(output.detach(), target, ema)
    assert (weights[..., :6] == 0).all() and (weights[..., 6:] > 0).all()
    ldl_loss(output, target, ema).backward()
    expected = weights * torch.sign(output.detach() - target) / target.numel()  # d|M (t - o)| / do with M fixed
    assert torch.allclose(output.grad, expected, atol=1e-9)
