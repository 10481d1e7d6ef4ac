"""realciao.peers: spandrel-loaded SR models at any output size, tiled, and safe to load.

The models are tiny random-weight instances of spandrel's own architecture classes, saved
with the state-dict keys spandrel's detection reads (Real-ESRGAN x4plus, x2plus with pixel
unshuffle, compact SRVGG, real-world SwinIR with nearest+conv upsampling)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.SwinIR import SwinIR

from realciao.bicubic import matlab_resize
from realciao.errors import RealciaoError
from realciao.peers import FIXED_MARGIN, PeerError, PeerModel, load_peer
from realciao.tiling import plan_axis

LR_SIZE = (13, 17)
SIZES = {"x2.5": (33, 43), "x4": (52, 68), "x8": (104, 136)}
CONVOLUTIONAL = ["rrdb_x4.pth", "rrdb_x2.safetensors", "compact_x4.pth"]
ALL = CONVOLUTIONAL + ["swinir_x4.pth"]
EXPECTED = {  # file -> (spandrel architecture name, native scale)
    "rrdb_x4.pth": ("ESRGAN", 4),
    "rrdb_x2.safetensors": ("ESRGAN", 2),
    "compact_x4.pth": ("RealESRGAN Compact", 4),
    "swinir_x4.pth": ("SwinIR", 4),
}


def write_tiny_peers(folder):
    """Tiny random-weight peers in ``folder``, named as ``ALL`` (+ compact_x1.pth, a x1 model)."""
    torch.manual_seed(0)
    rrdb = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    torch.save({"params_ema": rrdb.state_dict()}, folder / "rrdb_x4.pth")  # as Real-ESRGAN ships them
    # x2plus: pixel unshuffle by 2 in front of an x4 trunk
    rrdb_x2 = ESRGAN(in_nc=12, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2)
    save_file({k: v.contiguous() for k, v in rrdb_x2.state_dict().items()}, folder / "rrdb_x2.safetensors")
    torch.save(Compact(num_feat=8, num_conv=2, upscale=4).state_dict(), folder / "compact_x4.pth")
    torch.save(Compact(num_feat=8, num_conv=2, upscale=1).state_dict(), folder / "compact_x1.pth")
    swinir = SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[2],
        num_heads=[2],
        window_size=4,
        mlp_ratio=2.0,
        upscale=4,
        upsampler="nearest+conv",
    )
    torch.save(swinir.state_dict(), folder / "swinir_x4.pth")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_peers(tmp_path_factory.mktemp("peers"))


@pytest.fixture(scope="module")
def peers(model_dir) -> dict[str, PeerModel]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: load_peer(model_dir / name) for name in ALL}
    finally:
        torch.set_num_threads(threads)


def lr_image(size=LR_SIZE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((*size, 3), dtype=np.float32)


def one_line_error(call) -> str:
    with pytest.raises(PeerError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    assert isinstance(caught.value, RealciaoError)
    return message


# ---------------------------------------------------------------------------------------
# Loading and metadata
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_loads_with_architecture_scale_and_requirements(peers, name):
    peer = peers[name]
    assert (peer.name, peer.scale) == EXPECTED[name]
    assert peer.device == torch.device("cpu")
    assert peer.supports_bfloat16
    assert peer.label == name.split(".")[0]
    if name == "rrdb_x2.safetensors":  # pixel unshuffle needs multiples of 4
        assert peer.size_requirements.multiple_of == 4
    if name == "swinir_x4.pth":
        assert peer.size_requirements.minimum == 16
        assert not peer.supports_half


def test_receptive_radius_of_convolutional_peers(peers):
    # compact: 4 convs at LR; RRDB: 17 convs at LR, 4 at 2x and 4x (a quarter or half a pixel each);
    # x2plus: the 17 convs at half resolution (2 LR px each), 4 at 1x and 2x; all confirmed by the probe
    assert peers["compact_x4.pth"].receptive_radius == 4
    assert peers["rrdb_x4.pth"].receptive_radius == 19
    assert peers["rrdb_x2.safetensors"].receptive_radius == 37
    for name in CONVOLUTIONAL:
        assert peers[name].default_margin == peers[name].receptive_radius
    assert peers["swinir_x4.pth"].receptive_radius is None  # attention: unbounded
    assert peers["swinir_x4.pth"].default_margin == FIXED_MARGIN
    for peer in peers.values():  # an image that fits runs whole; a huge one gets tiles that fit
        assert peer.default_tile(size=(64, 64)) == 0
        side = peer.default_tile(size=(100_000, 100_000))
        assert side >= 32 and peer.bytes_per_pixel * (side + 2 * peer.default_margin) ** 2 <= 4 << 30


# ---------------------------------------------------------------------------------------
# Upscaling to exact sizes by the paper's convention
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("scale", SIZES)
def test_upscale_to_exact_size(peers, name, scale, one_thread):
    peer = peers[name]
    size = SIZES[scale]
    out = peer.upscale(lr_image(), size, tile=0)
    assert out.image.shape == (*size, 3) and out.image.dtype == np.float32
    assert 0 <= out.image.min() and out.image.max() <= 1
    expected_passes = {("x2.5", 4): 1, ("x4", 4): 1, ("x8", 4): 2, ("x2.5", 2): 2, ("x4", 2): 2, ("x8", 2): 3}
    assert out.passes == expected_passes[scale, peer.scale]
    assert out.tiles == out.passes
    assert "\n" not in out.description and out.description.startswith(f"{peer.label} ({peer.name} arch")


def test_descriptions(peers, one_thread):
    rrdb, rrdb_x2 = peers["rrdb_x4.pth"], peers["rrdb_x2.safetensors"]
    lr = lr_image()
    assert rrdb.upscale(lr, (104, 136), tile=0).description == (
        "rrdb_x4 (ESRGAN arch, x4) applied twice (x16), then MATLAB bicubic to 136x104"
    )
    assert (
        rrdb.upscale(lr, (52, 68), tile=0).description
        == "rrdb_x4 (ESRGAN arch, x4) applied once (x4), 68x52 as is"
    )
    assert rrdb_x2.upscale(lr, (104, 136), tile=0).description == (
        "rrdb_x2 (ESRGAN arch, x2) applied 3 times (x8), 136x104 as is"
    )


def test_apply_twice_then_matlab_bicubic(peers, one_thread):
    peer = peers["compact_x4.pth"]
    lr = lr_image()
    twice = peer.run_native(peer.run_native(lr, 0, 0), 0, 0)
    assert twice.shape == (208, 272, 3)
    expected = (
        matlab_resize(torch.from_numpy(twice).permute(2, 0, 1), SIZES["x8"]).clamp(0, 1).permute(1, 2, 0)
    )
    np.testing.assert_allclose(peer.upscale(lr, SIZES["x8"], tile=0).image, expected.numpy(), atol=1e-6)
    # exactly the native size: the model's output untouched
    np.testing.assert_array_equal(peer.upscale(lr, SIZES["x4"], tile=0).image, peer.run_native(lr, 0, 0))


def test_one_axis_beyond_native_output_applies_again(peers, one_thread):
    peer = peers["compact_x4.pth"]
    out = peer.upscale(lr_image(), (40, 70), tile=0)  # rows fit x4 (52), columns do not (68)
    assert out.passes == 2 and out.image.shape == (40, 70, 3)


# ---------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------


def test_plan_axis_covers_once_and_aligns_windows():
    tiles = plan_axis(96, 24, 37, align=4)
    assert [t.core for t in tiles] == [(0, 24), (24, 48), (48, 72), (72, 96)]
    assert [t.window for t in tiles] == [(0, 61), (0, 85), (8, 96), (32, 96)]
    assert plan_axis(17, 0, 5) == plan_axis(17, None, 5) == plan_axis(17, 40, 5)
    assert [t.window for t in plan_axis(17, 40, 5)] == [(0, 17)]


@pytest.mark.parametrize(
    ("name", "lr_size", "tile"),
    [("compact_x4.pth", (23, 29), 6), ("rrdb_x4.pth", (12, 64), 16), ("rrdb_x2.safetensors", (12, 96), 24)],
)
def test_tiled_equals_whole_image_when_margin_covers_receptive_field(peers, name, lr_size, tile, one_thread):
    peer = peers[name]
    lr = lr_image(lr_size, seed=1)
    whole = peer.run_native(lr, 0, 0)
    report = peer.upscale(lr, (lr_size[0] * peer.scale, lr_size[1] * peer.scale), tile=tile)
    assert report.tiles > 2
    np.testing.assert_allclose(report.image, whole, atol=1e-4, rtol=0)
    # the test can fail: without context the tile borders differ
    assert np.abs(peer.run_native(lr, tile, 0) - whole).max() > 1e-3


@pytest.mark.parametrize("name", CONVOLUTIONAL)
@pytest.mark.parametrize("scale", ["x2.5", "x8"])
def test_tiled_equals_untiled_at_any_output_size(peers, name, scale, one_thread):
    """Through every pass and the final resize: the tiled result is the whole-image one (fp32)."""
    peer = peers[name]
    lr = lr_image((12, 30), seed=2)
    size = {"x2.5": (30, 75), "x8": (96, 240)}[scale]
    whole = peer.upscale(lr, size, tile=0)
    tiled = peer.upscale(lr, size, tile=24)
    assert tiled.tiles > tiled.passes and tiled.image.shape == (*size, 3)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-4, rtol=0)


def test_how_lines_leave_out_the_image_size(peers, one_thread):
    rrdb, rrdb_x2 = peers["rrdb_x4.pth"], peers["rrdb_x2.safetensors"]
    lr = lr_image()
    assert rrdb.how(rrdb.upscale(lr, SIZES["x8"], tile=0)) == (
        "x4 model applied twice (x16), then MATLAB bicubic to the size asked for"
    )
    assert rrdb.how(rrdb.upscale(lr, SIZES["x4"], tile=0)) == "x4 model applied once (x4), output as is"
    assert rrdb_x2.how(rrdb_x2.upscale(lr, SIZES["x2.5"], tile=0)) == (
        "x2 model applied twice (x4), then MATLAB bicubic to the size asked for"
    )


def test_swinir_tiles_run_with_fixed_margin(peers, one_thread):
    peer = peers["swinir_x4.pth"]
    out = peer.upscale(lr_image((20, 24)), (80, 96), tile=10)  # tiles below spandrel's minimum 16 get padded
    assert out.tiles == 6 and out.image.shape == (80, 96, 3)
    assert np.isfinite(out.image).all()


def test_bf16_close_to_fp32_and_fp16_refused_on_cpu(peers, one_thread):
    peer = peers["compact_x4.pth"]
    lr = lr_image()
    fp32 = peer.upscale(lr, SIZES["x2.5"], tile=8).image
    bf16 = peer.upscale(lr, SIZES["x2.5"], tile=8, precision="bf16")
    assert bf16.fp32_fallbacks == 0
    assert np.abs(bf16.image - fp32).max() < 0.05
    with pytest.raises(ValueError, match="fp16 runs only on CUDA"):
        peer.upscale(lr, SIZES["x4"], precision="fp16")


def test_bad_arguments(peers):
    peer = peers["compact_x4.pth"]
    with pytest.raises(ValueError, match=r"\(h, w, 3\) float RGB"):
        peer.upscale((lr_image() * 255).astype(np.uint8), (26, 34))
    with pytest.raises(ValueError, match="positive"):
        peer.upscale(lr_image(), (0, 34))
    with pytest.raises(ValueError, match="margin"):
        peer.upscale(lr_image(), (26, 34), margin=-1)


# ---------------------------------------------------------------------------------------
# Files that are not SR models, and files that would run code
# ---------------------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path):
    assert (
        one_line_error(lambda: load_peer(tmp_path / "nope.pth")) == f"{tmp_path / 'nope.pth'}: no such file"
    )
    message = one_line_error(lambda: load_peer(tmp_path))
    assert message.startswith(f"{tmp_path}: not a supported super-resolution model (")


def test_unsupported_files(tmp_path, model_dir):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    text_pth = tmp_path / "notes.pth"
    text_pth.write_text("hello\n")
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    image_safetensors = tmp_path / "photo.safetensors"
    image_safetensors.write_bytes(image.read_bytes())
    ciaosr = tmp_path / "ciaosr.safetensors"  # keys of a CiaoSR generator: no peer architecture
    save_file(
        {
            "encoder.head.0.weight": torch.zeros(64, 3, 3, 3),
            "encoder.body.0.body.0.weight": torch.zeros(64, 64, 3, 3),
            "upsampler.imnet_q.layers.0.weight": torch.zeros(256, 580),
            "upsampler.imnet_k.linears.0.weight": torch.zeros(256, 580),
        },
        ciaosr,
    )
    tensor_pth = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_pth)
    cases = {
        text: "extension '.txt'",
        image: "extension '.png'",
        text_pth: "not a PyTorch checkpoint",
        image_safetensors: "not a safetensors file",
        ciaosr: "spandrel recognises no architecture",
        tensor_pth: "holds a Tensor, not a state dict",
        model_dir / "compact_x1.pth": "x1 restoration model",
    }
    for path, reason in cases.items():
        with pytest.raises(PeerError) as caught:
            load_peer(path)
        message = one_line_error(lambda path=path: load_peer(path))
        assert message.startswith(f"{path}: not a supported super-resolution model (")
        assert reason in message and message.endswith(")")
        assert message == f"{path}: not a supported super-resolution model ({caught.value.reason})"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "kind", ["torch.save .pth", "torch.save .pt", "plain pickle .pth", "plain pickle .ckpt"]
)
def test_crafted_pickle_refused_without_running(tmp_path, kind):
    marker = tmp_path / "marker"
    payload = _RunsCode(marker)
    assert (
        pickle.loads(pickle.dumps(_RunsCode(tmp_path / "probe"))) == 0
    )  # the payload does run when unpickled
    assert (tmp_path / "probe").exists()
    path = tmp_path / ("evil" + kind.split()[-1])
    if kind.startswith("torch.save"):
        torch.save({"params_ema": {"conv.weight": torch.zeros(1), "hook": payload}}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"params": payload}, f, protocol=2)
    message = one_line_error(lambda: load_peer(path))
    assert message.startswith(f"{path}: not a supported super-resolution model (")
    assert "system" in message
    assert not marker.exists()


def test_torchscript_archive_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(path))
    assert "TorchScript" in one_line_error(lambda: load_peer(path))
    renamed = tmp_path / "scripted.pth"  # torch.load would hand it to torch.jit.load
    renamed.write_bytes(path.read_bytes())
    assert "TorchScript" in one_line_error(lambda: load_peer(renamed))
