"""realciao.upscaling (``upscale_image`` on arrays and Pillow images) and the realciao-upscale command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realciao import imageio
from realciao.archs import build_generator
from realciao.checkpoint import save_generator
from realciao.cli.upscale import main
from realciao.inference import upscale
from realciao.upscaling import target_size, upscale_image
from tests.crafted import RunsCode

TINY = {"channels": 8, "num_blocks": 2, "mlp_hidden": [16, 16], "non_local": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_generator("edsr-baseline-ciaosr", **TINY).eval()


@pytest.fixture
def model_file(tmp_path, model):
    return str(save_generator(model, tmp_path / "tiny.safetensors"))


def photo(height: int = 14, width: int = 18, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- Python API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lr_size,kwargs,expected",
    [
        ((14, 18), {"scale": 2.5}, (35, 45)),
        ((14, 18), {"scale": 1.7}, (24, 31)),
        ((14, 18), {"size": (29, 61)}, (29, 61)),
        ((14, 18), {"width": 45}, (35, 45)),
        ((14, 18), {"height": 21}, (21, 27)),
        ((14, 18), {"width": 40, "height": 23}, (23, 40)),
    ],
)
def test_target_size_gives_exactly_the_requested_size(lr_size, kwargs, expected):
    assert target_size(lr_size, **kwargs) == expected


def test_target_size_wants_exactly_one_request():
    with pytest.raises(ValueError, match="exactly one"):
        target_size((4, 4), scale=2, size=(8, 8))
    with pytest.raises(ValueError, match="exactly one"):
        target_size((4, 4))


@pytest.mark.parametrize("size", [(35, 45), (23, 61), (17, 19)])
def test_numpy_rgb_matches_the_whole_image_function(model, size):
    lr = photo()
    out = upscale_image(model, lr, size=size, tile=6)
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    reference = upscale(model, torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255, size)
    expected = (reference[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(out.astype(np.float32) - expected).max() <= 1  # rounding of values ~1e-6 apart


def test_layouts_and_dtypes_are_kept(model):
    rng = np.random.default_rng(1)
    cases = [
        rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16),
        rng.random((10, 12, 3)).astype(np.float32),
        rng.random((10, 12)),  # float64 grey
        rng.integers(0, 256, (10, 12), dtype=np.uint8),
        rng.integers(0, 256, (10, 12, 2), dtype=np.uint8),
        rng.integers(0, 256, (10, 12, 4), dtype=np.uint8),
    ]
    for image in cases:
        out = upscale_image(model, image, scale=2)
        assert out.shape == (20, 24, *image.shape[2:]) and out.dtype == image.dtype


def test_sixteen_bit_output_uses_sixteen_bits(model):
    image = np.random.default_rng(2).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    out = upscale_image(model, image, scale=2)
    assert (out % 257 != 0).any()  # not 8-bit values scaled up


def test_alpha_is_resized_and_reattached(model):
    rgba = np.concatenate([photo(), np.zeros((14, 18, 1), np.uint8)], axis=2)
    rgba[:, 9:, 3] = 255  # right half opaque
    out = upscale_image(model, rgba, scale=2)
    assert (out[:, :16, 3] == 0).all() and (out[:, 20:, 3] == 255).all()
    assert np.array_equal(out[..., :3], upscale_image(model, rgba[..., :3], scale=2))


def test_grey_stays_grey(model):
    grey = photo()[..., 0]
    out = upscale_image(model, grey, scale=2)
    assert out.shape == (28, 36)
    rgb = upscale_image(model, np.repeat(grey[..., None], 3, axis=2), scale=2).astype(np.float32)
    assert np.abs(out - rgb @ np.array([0.299, 0.587, 0.114])).max() <= 1


def test_pil_in_pil_out(model):
    for mode in ["RGB", "L", "RGBA", "P"]:
        image = Image.fromarray(photo()).convert(mode)
        out = upscale_image(model, image, size=(21, 40))
        assert isinstance(out, Image.Image) and out.size == (40, 21)
        assert out.mode == {"P": "RGB"}.get(mode, mode)


def test_bad_inputs_are_clear_errors(model):
    with pytest.raises(ValueError, match="shape"):
        upscale_image(model, np.zeros((4, 4, 5), np.uint8), scale=2)
    with pytest.raises(ValueError, match="dtype"):
        upscale_image(model, np.zeros((4, 4, 3), np.int64), scale=2)
    with pytest.raises(ValueError, match="fp16 runs only on CUDA"):
        upscale_image(model, photo(), scale=2, precision="fp16")


# --- command line ------------------------------------------------------------------------------


def run(model_file, *args) -> int:
    return main(["--model", model_file, "--no-progress", *[str(a) for a in args]])


def test_folder_with_a_corrupt_file_writes_the_others_and_exits_1(tmp_path, model_file, capsys):
    source = tmp_path / "photos"
    source.mkdir()
    Image.fromarray(photo()).save(source / "a.png")
    Image.fromarray(photo(seed=1)).save(source / "b.jpg")
    (source / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (source / "notes.txt").write_text("not an image, not an input")
    assert run(model_file, "-i", source, "-o", tmp_path / "out", "-s", 2) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg"]
    assert Image.open(tmp_path / "out" / "a.png").size == (36, 28)
    captured = capsys.readouterr()
    assert "c.jpg" in captured.err and "2 written" in captured.out and "1 failed" in captured.out


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, model_file):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"previous result")
    assert run(model_file, "-i", tmp_path / "a.png", "-o", out) == 0
    assert (out / "a.png").read_bytes() == b"previous result"
    assert run(model_file, "-i", tmp_path / "a.png", "-o", out, "--overwrite") == 0
    assert Image.open(out / "a.png").size == (36, 28)


def test_missing_model_file_is_a_clear_error(tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    code = main(["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "none.safetensors")])
    assert code == 2
    assert "none.safetensors: no such checkpoint file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()




def test_plain_pth_loads_and_a_code_running_pickle_needs_allow_pickle(tmp_path, model, capsys):
    torch.save(model.state_dict(), tmp_path / "model.pth")  # tensors only: safe to read
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert run(str(tmp_path / "model.pth"), "-i", tmp_path / "a.png", "-o", tmp_path / "out") == 0
    marker = tmp_path / "ran"
    torch.save({"params": model.state_dict(), "meta": RunsCode(marker)}, tmp_path / "crafted.pth")
    assert run(str(tmp_path / "crafted.pth"), "-i", tmp_path / "a.png", "-o", tmp_path / "out2") == 2
    err = capsys.readouterr().err
    assert "--allow-pickle" in err and "Traceback" not in err and not marker.exists()


def test_phone_jpeg_comes_out_upright_with_metadata(tmp_path, model_file):
    exif = Image.Exif()
    exif[imageio.ORIENTATION_TAG] = 6
    exif[0x010F] = "PhoneMaker"
    icc = imageio.srgb_profile()
    Image.fromarray(photo(14, 18)).save(tmp_path / "IMG_1.jpg", exif=exif, icc_profile=icc)
    assert run(model_file, "-i", tmp_path / "IMG_1.jpg", "-o", tmp_path / "out", "-s", 2.5, "--suffix", "_x2.5") == 0
    result = Image.open(tmp_path / "out" / "IMG_1_x2.5.jpg")
    assert result.size == (35, 45)  # upright portrait: 18x14 rotated, times 2.5
    assert result.getexif()[imageio.ORIENTATION_TAG] == 1 and result.getexif()[0x010F] == "PhoneMaker"
    assert result.info["icc_profile"] == icc


def test_sizes_bit_depth_grey_and_glob(tmp_path, model_file):
    grey16 = np.random.default_rng(3).integers(0, 65536, (14, 18), dtype=np.uint16)
    imageio.write_image(tmp_path / "deep.png", grey16)
    Image.fromarray(photo()[..., 0]).save(tmp_path / "grey.png")
    assert run(model_file, "-i", str(tmp_path / "*.png"), "-o", tmp_path / "out", "--size", "31x23") == 0
    deep = imageio.read_image(tmp_path / "out" / "deep.png").pixels
    grey = imageio.read_image(tmp_path / "out" / "grey.png").pixels
    assert deep.shape == (23, 31) and deep.dtype == np.uint16
    assert grey.shape == (23, 31) and grey.dtype == np.uint8
    assert run(model_file, "-i", tmp_path / "grey.png", "-o", tmp_path / "w", "--width", 27) == 0
    assert Image.open(tmp_path / "w" / "grey.png").size == (27, 21)


def test_recursive_folders_keep_their_layout_and_ext_converts(tmp_path, model_file):
    (tmp_path / "in" / "trip").mkdir(parents=True)
    Image.fromarray(photo()).save(tmp_path / "in" / "trip" / "a.png")
    assert run(model_file, "-i", tmp_path / "in", "-o", tmp_path / "flat") == 2  # no images at the top level
    assert run(model_file, "-i", tmp_path / "in", "-o", tmp_path / "out", "--recursive", "--ext", "webp") == 0
    assert Image.open(tmp_path / "out" / "trip" / "a.webp").size == (36, 28)


def test_output_never_replaces_its_input(tmp_path, model_file):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    assert run(model_file, "-i", tmp_path / "a.png", "-o", tmp_path, "--overwrite") == 1
    assert (tmp_path / "a.png").read_bytes() == before


def test_fp16_on_the_cpu_is_refused_with_a_reason(tmp_path, model_file, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert run(model_file, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--precision", "fp16", "--device", "cpu") == 2
    assert "bf16" in capsys.readouterr().err


def test_conflicting_size_options_are_refused(tmp_path, model_file):
    with pytest.raises(SystemExit):
        run(model_file, "-i", tmp_path, "-o", tmp_path / "out", "-s", 2, "--width", 100)


@pytest.mark.parametrize("scale", ["0", "-2", "nan"])
def test_a_bad_scale_is_one_usage_error_before_any_image(tmp_path, model_file, capsys, scale):
    for i in range(3):
        Image.fromarray(photo(seed=i)).save(tmp_path / f"{i}.png")
    with pytest.raises(SystemExit) as exit_code:
        run(model_file, "-i", tmp_path, "-o", tmp_path / "out", "-s", scale)
    assert exit_code.value.code == 2
    err = capsys.readouterr().err
    assert err.count("expected a positive number") == 1 and not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_a_usage_error(tmp_path, model_file, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    assert run(model_file, "-i", tmp_path / "a.png", "-o", tmp_path / "taken") == 2
    assert "is a file" in capsys.readouterr().err


def test_an_output_under_a_file_is_a_usage_error_before_the_model_is_read(tmp_path, capsys, monkeypatch):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    assert run(str(tmp_path / "no_model.safetensors"), "-i", tmp_path / "a.png", "-o", tmp_path / "taken" / "sub") == 2
    err = capsys.readouterr().err
    assert "taken is a file, so no folder can be made under it" in err and "no_model" not in err
    monkeypatch.chdir(tmp_path)
    (tmp_path / "upscaled").write_text("where the default output folder would go")
    assert main(["--model", "no_model.safetensors", "-i", "a.png"]) == 2
    assert "-o upscaled: is a file, not a folder" in capsys.readouterr().err


def test_a_model_folder_is_named_as_a_folder(tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    (tmp_path / "experiment").mkdir()
    assert run(str(tmp_path / "experiment"), "-i", tmp_path / "a.png", "-o", tmp_path / "out") == 2
    assert f"{tmp_path / 'experiment'}: is a folder; give the checkpoint file in it" in capsys.readouterr().err


def test_a_peer_model_is_pointed_to_realciao_eval(tmp_path, capsys):
    from tests.test_peers import write_tiny_peers

    write_tiny_peers(tmp_path)
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert run(str(tmp_path / "rrdb_x2.safetensors"), "-i", tmp_path / "a.png", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{tmp_path / 'rrdb_x2.safetensors'}: not a CiaoSR generator (spandrel loads it as ESRGAN); "
                        "realciao-upscale runs CiaoSR generators, realciao-eval runs such models "
                        f"(realciao-eval --real PHOTOS --model {tmp_path / 'rrdb_x2.safetensors'} -o OUTDIR)")
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")  # neither: the loader's own message
    assert run(str(tmp_path / "junk.safetensors"), "-i", tmp_path / "a.png", "-o", tmp_path / "out") == 2
    assert "realciao-eval" not in capsys.readouterr().err


def test_same_names_in_two_folders_keep_their_folders(tmp_path, model_file, capsys):
    for folder, seed in (("colA", 1), ("colB", 2)):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo(seed=seed)).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    assert run(model_file, "-i", tmp_path / "colA", tmp_path / "colB", "-o", out) == 0
    a, b = (imageio.read_image(out / folder / "x.png").pixels for folder in ("colA", "colB"))
    assert not np.array_equal(a, b)  # both processed, neither replaced the other
    assert "2 written, 0 already there" in capsys.readouterr().out


def test_same_stem_different_extensions_are_both_kept(tmp_path, model_file, capsys):
    Image.fromarray(photo(seed=1)).save(tmp_path / "y.png")
    Image.fromarray(photo(seed=2)).save(tmp_path / "y.jpg", quality=95)
    out = tmp_path / "out"
    assert run(model_file, "-i", tmp_path, "-o", out, "--ext", "png", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["y_jpg.png", "y_png.png"]
    captured = capsys.readouterr()
    assert "would all be written to y.png" in captured.err and "2 written" in captured.out


def test_real_esrgan_flags_and_suffix(tmp_path, model_file):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert run(model_file, "-i", tmp_path / "a.png", "-o", out, "--outscale", 2, "-t", 8, "--tile_pad", 4, "--fp32",
               "--suffix", "out") == 0
    assert Image.open(out / "a_out.png").size == (36, 28)
    with pytest.raises(SystemExit):
        run(model_file, "-i", tmp_path / "a.png", "-o", out, "--fp32", "--precision", "bf16")


def test_device_choice_auto_prefers_cuda_then_mps(monkeypatch):
    from realciao import devices

    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert devices.choose_device("auto").type == "mps"
    assert devices.choose_device("mps").type == "mps"
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert devices.choose_device("auto").type == "cpu"
    with pytest.raises(devices.DeviceError, match="MPS backend is not available"):
        devices.choose_device("mps")
    with pytest.raises(devices.DeviceError, match="CUDA is not available"):
        devices.choose_device("cuda:1")
    with pytest.raises(devices.DeviceError, match="expected auto, cpu"):
        devices.choose_device("tpu")


def test_gpu_id_is_cuda_n(tmp_path, model_file, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert run(model_file, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "-g", 0) == 2  # no CUDA here
    assert "--device cuda:0: CUDA is not available" in capsys.readouterr().err


def test_a_huge_output_is_refused_with_an_estimate(tmp_path, model_file, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert run(model_file, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "-s", 1000) == 1
    err = capsys.readouterr().err
    assert "252 megapixels" in err and "--max-megapixels 0" in err and "about" in err
    assert not (tmp_path / "out").exists()


def test_the_default_threads_give_way_to_a_busy_core_and_say_so(model_file, tmp_path, monkeypatch, capsys):
    """Another process holding a core (mocked: the cores' busy time grows by one core's worth
    of wall time beyond this process's own CPU time) -> one thread, and one line saying why."""
    import time as clock

    from realciao import devices

    start = clock.perf_counter()
    monkeypatch.setattr(devices, "busy_cpu_seconds",
                        lambda cores=None: clock.process_time() + (clock.perf_counter() - start))
    counts = []
    monkeypatch.setattr(devices.torch, "set_num_threads", counts.append)
    monkeypatch.setattr(devices, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices.ThreadGovernor, "MIN_WINDOW", 0.0)  # tiny images finish within 50 ms
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(folder / f"p{i}.png")
    assert main(["-i", str(folder), "-o", str(tmp_path / "out"), "--model", model_file, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert counts[0] == 2 and 1 in counts  # chosen from the cores, then one while the core is busy
    assert err.count("other processes are using 1.0 of this process's 2 cores: running on 1 thread(s)") == 1
