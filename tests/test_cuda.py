"""The CUDA-only branches: grouped-convolution blur, fp16 tiles that overflow, fp16 GAN
training with one gradient scaler per optimiser.

Tests marked ``cuda`` skip without a CUDA device (tests/conftest.py); ``scripts/gpu_check.sh``
runs them on a GPU machine. Each has a CPU twin where the branch has a CPU meaning, so the
test's own logic is exercised on every machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import realciao
from realciao.coords import make_query_grid
from realciao.degradations.filters import filter2d, reflect_pad
from realciao.inference import normalise
from realciao.tiling import TiledUpscaler

CUDA = pytest.param("cuda", marks=pytest.mark.cuda)
TINY = {"channels": 8, "num_blocks": 1, "mlp_hidden": [16, 16]}


def reference_blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlation of the reflect-padded images in float64 on the CPU, one sample at a time."""
    images, kernels = images.double().cpu(), kernels.double().cpu().expand(images.shape[0], -1, -1)
    padded = reflect_pad(images, kernels.shape[-1] // 2)
    return torch.cat([F.conv2d(padded[i].unsqueeze(1), kernels[i][None, None]).transpose(0, 1)
                      for i in range(images.shape[0])])


def random_kernels(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    kernels = torch.rand(batch, size, size, generator=generator, dtype=torch.float64)
    return (kernels / kernels.sum((1, 2), keepdim=True)).float()


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("batch,side,size", [(16, 256, 21), (3, 37, 7), (2, 8, 21), (4, 64, 3)])
def test_grouped_convolution_blur_equals_the_fft_blur(device, batch, side, size):
    generator = torch.Generator().manual_seed(size)
    images = torch.rand(batch, 3, side, side, generator=generator)
    kernels = random_kernels(batch, size, generator)
    truth = reference_blur(images, kernels)
    images, kernels = images.to(device), kernels.to(device)
    conv = filter2d(images, kernels, method="conv")
    fft = filter2d(images, kernels, method="fft")
    # what the degradation pipeline runs: default backend flags (cuDNN may use TF32 on GPUs)
    assert (conv.double().cpu() - truth).abs().max() < 2e-3
    assert (fft.double().cpu() - truth).abs().max() < 1e-5
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        exact = filter2d(images, kernels, method="conv")
    assert (exact.double().cpu() - truth).abs().max() < 1e-5
    assert (exact - fft).abs().max() < 1e-5
    if device != "cpu":  # on GPUs "auto" is the grouped convolution
        assert torch.allclose(filter2d(images, kernels), conv, rtol=0, atol=1e-6)


@pytest.mark.cuda
def test_one_kernel_for_the_whole_batch_on_cuda():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, 40, 48, generator=generator).cuda()
    kernel = random_kernels(1, 21, generator).cuda()
    conv = filter2d(images, kernel, method="conv")
    assert (conv - filter2d(images, kernel.expand(5, -1, -1), method="fft")).abs().max() < 2e-3


def lr_photo(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = 0.5 + 0.3 * np.sin(7 * x[..., None] + 5 * y[..., None] + np.array([0, 1, 2]))
    return (np.clip(base + 0.1 * rng.standard_normal((height, width, 3)), 0, 1) * 255).round().astype(np.uint8)


def overflowing_model(device: str) -> torch.nn.Module:
    """A tiny generator whose red output is 1e5 before the clamp: finite in fp32 and bf16,
    infinite in fp16 (largest finite value 65504)."""
    torch.manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr", **TINY).to(device).eval()
    with torch.no_grad():
        model.upsampler.imnet_q.linears[-1].bias[0] += 1e5
    return model


@pytest.mark.cuda
def test_fp16_tiles_that_overflow_are_redone_in_fp32():
    model = overflowing_model("cuda")
    lr = lr_photo(40, 36)
    size = (80, 72)
    # the overflow is real: the upsampler's fp16 output is not finite
    tensor = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255).cuda()
    coord, cell = make_query_grid(*size, device="cuda")
    with torch.no_grad():
        feature = model.encoder(normalise(tensor))
        with torch.autocast("cuda", dtype=torch.float16):
            raw = model.upsampler(feature, normalise(tensor), coord, cell)
    assert not bool(torch.isfinite(raw).all())

    fp32, fp32_report = TiledUpscaler(model, tile=16, precision="fp32")(lr, size)
    fp16, report = TiledUpscaler(model, tile=16, precision="fp16")(lr, size)
    assert fp32_report.fp32_fallbacks == 0
    assert report.tiles == 9 and report.fp32_fallbacks == report.tiles
    assert np.array_equal(fp16, fp32)  # the encoder runs in fp32 anyway: the redone tile is the fp32 tile
    assert (fp16[..., 0] == 255).all() and fp16[..., 1:].std() > 1  # red saturates, green and blue are an image


@pytest.mark.cuda
def test_fp16_tiles_without_overflow_need_no_fallback():
    torch.manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr", **TINY).cuda().eval()
    lr = lr_photo(40, 36)
    fp32, _ = TiledUpscaler(model, tile=16, precision="fp32")(lr, (80, 72))
    fp16, report = TiledUpscaler(model, tile=16, precision="fp16")(lr, (80, 72))
    assert report.fp32_fallbacks == 0
    assert np.abs(fp16.astype(int) - fp32.astype(int)).mean() < 1.0  # within a grey level on average


def gan_options(tmp_path, precision: str, perceptual: bool):
    from tests.test_train_loop import options_file

    losses = {"perceptual_weight": 0.0}
    if perceptual:
        from tests.test_train_losses import fake_vgg19_file

        losses = {"vgg_weights": str(fake_vgg19_file(tmp_path / "vgg19.pth"))}
    return options_file(tmp_path, train={"stage": "gan", "iterations": 4, "mixed_precision": precision,
                                         "log_every": 1},
                        data={"lr_patch": 16, "batch_size": 2, "scale_min": 2.0, "scale_max": 2.0},
                        discriminator={"channels": 8}, losses=losses, checkpoint={"every": 4, "keep_last": 1})


@pytest.mark.parametrize("device,precision", [("cpu", "fp32"), pytest.param("cuda", "fp16", marks=pytest.mark.cuda)])
def test_gan_stage_keeps_one_gradient_scaler_per_optimiser(tmp_path, device, precision):
    from realciao.train.config import load_config
    from realciao.train.trainer import Trainer

    if device == "cpu" and torch.cuda.is_available():
        pytest.skip("the CPU twin: Accelerate picks the GPU here")
    trainer = Trainer(load_config(gan_options(tmp_path, precision, perceptual=device == "cuda")))
    assert trainer.device.type == device
    unwrap = trainer.accelerator.unwrap_model
    generator_before = {k: v.clone() for k, v in unwrap(trainer.generator).state_dict().items()}
    disc_before = {k: v.clone() for k, v in unwrap(trainer.discriminator).state_dict().items()}
    trainer.run()

    g_scaler, d_scaler = trainer.scalers
    assert g_scaler is not d_scaler
    assert g_scaler.is_enabled() == d_scaler.is_enabled() == (precision == "fp16")
    if precision == "fp16":
        assert g_scaler._scale is not None and d_scaler._scale is not None  # both used (set on first scale())

    def stepped(before: dict, model, scaler) -> bool:
        """The optimiser stepped, or its scaler skipped the step for inf/NaN gradients and backed off."""
        after = unwrap(model).state_dict()
        backed_off = scaler.is_enabled() and scaler.get_scale() < 2.0**16
        return backed_off or any(not torch.equal(before[k], v) for k, v in after.items())

    assert stepped(generator_before, trainer.generator, g_scaler), "the generator was never stepped"
    assert stepped(disc_before, trainer.discriminator, d_scaler), "the discriminator was never stepped"
    # both scalers' states are checkpointed with the run
    from realciao.train.state import load_tree

    [state] = list((trainer.dir / "states").glob("iter_*"))
    extras = load_tree(state / "rank_0.safetensors")
    assert len(extras["scalers"]) == 2
    if precision == "fp16":
        assert [s["scale"] for s in extras["scalers"]] == [g_scaler.get_scale(), d_scaler.get_scale()]


@pytest.mark.cuda
def test_auto_precision_measures_the_gpus_candidates(tmp_path):
    """On a CUDA device auto times fp32, bf16 (where supported) and fp16 with the real timer
    (GPU work synchronised) and records each figure."""
    from realciao.autoprecision import choose_precision
    from realciao.inference import inference_probe

    torch.manual_seed(0)
    model = realciao.build_generator("edsr-baseline-ciaosr", channels=16, num_blocks=2, mlp_hidden=[32, 32])
    model = model.eval().to("cuda")
    decision = choose_precision(torch.device("cuda"), inference_probe(model, 2.0), path=tmp_path / "p.json")
    assert {"fp32", "fp16"} <= set(decision.seconds) and all(s > 0 for s in decision.seconds.values())
    assert decision.precision in decision.seconds
