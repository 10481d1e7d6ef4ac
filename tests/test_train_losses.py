"""Losses and the discriminator: VGG weights from a local file, the clear error without
them, and a U-Net discriminator that is Real-ESRGAN's (basicsr as the oracle)."""

from __future__ import annotations

import pytest
import torch

from realciao.archs.discriminator import UNetDiscriminatorSN
from realciao.train.losses import PerceptualLoss, WeightsMissingError, gan_loss, resolve_vgg19_weights
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
