"""realciao.install_spandrel: CiaoSR checkpoints through ``spandrel.ModelLoader().load_from_file``."""

from __future__ import annotations

import pytest
import spandrel
import torch
from safetensors.torch import load_file

import realciao
from realciao.archs import build_generator
from realciao.checkpoint import load_generator, save_generator
from realciao.errors import RealciaoError
from realciao.inference import upscale
from tests.conftest import shared_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def restored_registry():
    """MAIN_REGISTRY is global: other tests expect spandrel not to know CiaoSR."""
    registry = spandrel.MAIN_REGISTRY
    saved = (list(registry._architectures), list(registry._ordered), dict(registry._by_id))
    yield
    registry._architectures, registry._ordered, registry._by_id = saved


def tiny(non_local: bool):
    torch.manual_seed(0)
    return build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=2, mlp_hidden=[16, 16],
                           non_local=non_local).eval()


def lr_image(height: int = 11, width: int = 14, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("non_local", [False, True])
def test_a_realciao_file_loads_as_an_x4_descriptor_that_upscales_like_realciao(tmp_path, non_local):
    model = tiny(non_local)
    path = save_generator(model, tmp_path / "net_g.safetensors")
    realciao.install_spandrel(scale=4)
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert descriptor.architecture.id == "realciao-CiaoSR" and descriptor.purpose == "SR"
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (4, 3, 3)
    assert not descriptor.supports_half and not descriptor.supports_bfloat16
    assert descriptor.size_requirements == spandrel.SizeRequirements()
    # tiles give the whole image's result only without the non-local branch (global attention)
    expected_tiling = spandrel.ModelTiling.DISCOURAGED if non_local else spandrel.ModelTiling.SUPPORTED
    assert descriptor.tiling == expected_tiling
    lr = lr_image(batch=2)
    out = descriptor(lr)
    assert out.shape == (2, 3, 44, 56)
    torch.testing.assert_close(out, upscale(model, lr, (44, 56)), rtol=0, atol=1e-6)


def test_the_scale_is_the_one_installed_last(tmp_path):
    path = save_generator(tiny(False), tmp_path / "net_g.safetensors")
    realciao.install_spandrel(scale=2)
    assert spandrel.ModelLoader().load_from_file(path)(lr_image()).shape == (1, 3, 22, 28)
    realciao.install_spandrel(scale=3)
    assert spandrel.ModelLoader().load_from_file(path).scale == 3


@pytest.mark.parametrize("scale", [0, -4, 2.5, True])
def test_a_scale_that_spandrel_cannot_describe_is_refused(scale):
    with pytest.raises(RealciaoError, match="positive integer"):
        realciao.install_spandrel(scale=scale)


@pytest.mark.parametrize("weights", ["weights.safetensors", "swinir_small_weights.safetensors"])
def test_an_official_mmediting_checkpoint_loads_through_spandrels_safe_unpickler(tmp_path, weights):
    source = shared_path("fixtures/ciaosr_official", weights)
    official = {"meta": {"epoch": 1}, "state_dict": {f"generator.{k}": v for k, v in load_file(source).items()}}
    path = tmp_path / "iter_1000000.pth"
    torch.save(official, path)
    realciao.install_spandrel(scale=4)
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == "realciao-CiaoSR"  # not taken for a plain SwinIR
    lr = lr_image(12, 10)
    torch.testing.assert_close(descriptor(lr), upscale(load_generator(source), lr, (48, 40)), rtol=0, atol=1e-6)


def test_other_architectures_still_load_as_themselves():
    realciao.install_spandrel(scale=4)
    descriptor = spandrel.ModelLoader().load_from_file(shared_path("weights", "realesr-animevideov3.safetensors"))
    assert descriptor.architecture.id != "realciao-CiaoSR"
