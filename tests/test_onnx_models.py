"""realciao.onnx_models: exported .onnx files in realciao-upscale and realciao-eval."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from realciao.archs import build_generator
from realciao.checkpoint import save_generator
from realciao.cli import evaluate, upscale
from realciao.export import ExportOptions, export_onnx
from realciao.onnx_models import ANY_SIZE, FIXED, aligned_tiles, load_onnx

onnx = pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(40, 52), (33, 61), (70, 45)]  # mixed sizes, each larger than the tiles used below


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny generator as .safetensors, as an x2 graph and as an any-size graph."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=2, mlp_hidden=[16, 16],
                            non_local=False).eval()
    files = {"pytorch": save_generator(model, folder / "tiny.safetensors")}
    for name, scale in (("x2", 2.0), ("any", None)):
        files[name] = folder / f"{name}.onnx"
        export_onnx(model, files[name], ExportOptions(scale=scale, check=False))
    return files


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index, (h, w) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{index}.png")
    Image.fromarray(rng.integers(0, 256, (30, 41), dtype=np.uint8)).save(folder / "grey.png")
    return folder


def psnr_8bit(a, b) -> float:
    mse = ((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).mean() / 255**2
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def run_upscale(model, photos, out, scale: str, tile: str = "24") -> int:
    return upscale.main(["-i", str(photos), "-o", str(out), "--model", str(model), "-s", scale, "-t", tile,
                         "--precision", "fp32", "--no-progress"])


def test_kinds_and_labels_are_read_back(models):
    fixed, any_size = load_onnx(models["x2"], "cpu"), load_onnx(models["any"], "cpu")
    assert (fixed.kind, fixed.scale, any_size.kind) == (FIXED, 2.0, ANY_SIZE)
    # tiles exact for this encoder: 6 convs of radius 1, then the upsampler reads 2 LR px further
    assert fixed.generator == "edsr-baseline-ciaosr" and fixed.margin == 8
    assert fixed.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("graph", "scale"), [("x2", "2"), ("any", "2"), ("any", "2.5")])
def test_upscale_writes_the_same_images_as_the_pytorch_checkpoint_with_tiles(tmp_path, models, photos, graph, scale):
    assert run_upscale(models["pytorch"], photos, tmp_path / "pt", scale) == 0
    assert run_upscale(models[graph], photos, tmp_path / "onnx", scale) == 0
    names = sorted(p.name for p in (tmp_path / "pt").iterdir())
    assert names == ["grey.png", "p0.png", "p1.png", "p2.png"]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == names
    for name in names:
        expected, got = Image.open(tmp_path / "pt" / name), Image.open(tmp_path / "onnx" / name)
        assert (got.mode, got.size) == (expected.mode, expected.size)
        assert psnr_8bit(got, expected) >= 50, name


def test_a_fixed_scale_graph_follows_the_peer_convention_for_other_scales(tmp_path, models, photos):
    assert run_upscale(models["x2"], photos, tmp_path / "out", "3") == 0  # x2 twice, then bicubic down
    with Image.open(tmp_path / "out" / "p0.png") as image:
        assert image.size == (156, 120)


def test_tiles_of_an_any_size_graph_start_where_pixel_grids_meet():
    tiles = aligned_tiles(40, 100, tile=16, margin=4, minimum=1)  # x2.5: the grids meet every 2 LR pixels
    assert len(tiles) > 1
    assert all(a % 2 == 0 and start % 2 == 0 for (a, _), (start, _) in tiles)
    assert tiles[0][0][0] == 0 and tiles[-1][0][1] == 40
    assert aligned_tiles(41, 100, tile=16, margin=4, minimum=1) == [((0, 41), (0, 41))]  # grids never meet


def test_eval_runs_both_kinds_beside_the_checkpoint(tmp_path, models, photos):
    hr = tmp_path / "HR"
    hr.mkdir()
    for name in ("p0.png", "p2.png"):
        (hr / name).write_bytes((photos / name).read_bytes())
    out = tmp_path / "eval"
    code = evaluate.main(["--paired", str(hr), "--model", f"pt={models['pytorch']}", "--model", f"x2={models['x2']}",
                          "--model", f"any={models['any']}", "--scale", "2", "--no-lpips", "--tile", "16",
                          "-o", str(out), "--quiet"])
    assert code == 0
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    psnr = {(r["method"], r["image"]): float(r["psnr"]) for r in rows}
    for image in ("p0", "p2"):
        assert abs(psnr[("x2", image)] - psnr[("pt", image)]) < 0.01
        assert abs(psnr[("any", image)] - psnr[("pt", image)]) < 0.01


def not_an_image_model(path):
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["features"], ["out"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_onnx_file_that_is_not_an_image_model_is_one_line_naming_it_and_its_inputs(tmp_path, photos, capsys):
    path = not_an_image_model(tmp_path / "classifier.onnx")
    assert run_upscale(path, photos, tmp_path / "out", "2") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and str(path) in err[0] and "features tensor(float) [1, 16]" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_broken_onnx_file_and_a_reduced_precision_request_are_one_line(tmp_path, models, photos, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    assert run_upscale(broken, photos, tmp_path / "out", "2") == 2
    assert "broken.onnx: not an ONNX model onnxruntime can run" in capsys.readouterr().err
    assert upscale.main(["-i", str(photos), "-o", str(tmp_path / "o"), "--model", str(models["x2"]),
                         "--precision", "bf16"]) == 2
    assert "runs in the precision it was exported in" in capsys.readouterr().err


def test_a_fixed_graph_of_a_fractional_scale_is_refused_at_load(tmp_path, photos, capsys):
    torch.manual_seed(0)
    model = build_generator("edsr-baseline-ciaosr", channels=4, num_blocks=1, mlp_hidden=[8], non_local=False).eval()
    path = tmp_path / "x2_5.onnx"
    export_onnx(model, path, ExportOptions(scale=2.5, check=False))
    assert run_upscale(path, photos, tmp_path / "out", "2.5") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "scale 2.5" in err[0] and "--arbitrary" in err[0]
    assert not (tmp_path / "out").exists()
