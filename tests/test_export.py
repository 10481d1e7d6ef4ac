"""realciao.export and realciao-export: ONNX graphs that compute what realciao's PyTorch inference does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import realciao.export
from realciao.archs import ENCODERS, build_generator, generator_name
from realciao.checkpoint import load_generator, save_generator
from realciao.cli.export import main
from realciao.export import ExportError, ExportOptions, export_onnx
from realciao.inference import upscale
from tests.conftest import shared_path

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = "fixtures/ciaosr_official"


def tiny(encoder: str, non_local: bool = True):
    torch.manual_seed(0)
    return build_generator(generator_name(encoder), **ENCODERS[encoder].tiny_options, mlp_hidden=[16, 16],
                           non_local=non_local).eval()


def psnr(got: np.ndarray, expected: np.ndarray) -> float:
    mse = float(((got.astype(np.float64) - expected) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def run_onnx(path, image: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"image": image.numpy()}
    if size is not None:
        feed["size"] = np.array(size, dtype=np.int64)
    return session.run(None, feed)[0]


def lr_image(height: int, width: int, seed: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# --- the graphs ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_fixed_scale_export_of_each_encoder_matches_pytorch_at_several_sizes(tmp_path, encoder):
    model = tiny(encoder)
    path = tmp_path / f"{encoder}.onnx"
    report = export_onnx(model, path, ExportOptions(scale=3.0))
    assert report.dynamic and report.opset >= 17 and len(report.checks) == 2
    # odd, even, non-square, a batch of two: none of them the example size (20x24)
    for index, (h, w, batch) in enumerate([(9, 13, 1), (16, 16, 2), (31, 10, 1)]):
        lr = lr_image(h, w, index, batch)
        got = run_onnx(path, lr)
        assert got.shape == (batch, 3, 3 * h, 3 * w)
        assert psnr(got, upscale(model, lr, (3 * h, 3 * w)).numpy()) >= 50


def test_a_fractional_scale_rounds_like_realciao_upscale(tmp_path):
    model = tiny("edsr-baseline", non_local=False)
    path = tmp_path / "x2_5.onnx"
    export_onnx(model, path, ExportOptions(scale=2.5, check=False))
    lr = lr_image(11, 14, 0)
    got = run_onnx(path, lr)
    assert got.shape == (1, 3, 28, 35)  # floor(11 * 2.5 + 0.5) = 28, as OutputSize.pixels gives
    assert psnr(got, upscale(model, lr, (28, 35)).numpy()) >= 50


def test_the_arbitrary_model_gives_the_exact_size_asked_for(tmp_path):
    model = tiny("edsr-baseline")
    path = tmp_path / "any.onnx"
    export_onnx(model, path, ExportOptions(scale=None))
    lr = lr_image(18, 22, 3)
    for scale_h, scale_w in [(1.7, 1.7), (2.5, 3.1), (4.0, 4.0)]:
        size = (math.floor(18 * scale_h + 0.5), math.floor(22 * scale_w + 0.5))
        got = run_onnx(path, lr, size)
        assert got.shape == (1, 3, *size)
        assert psnr(got, upscale(model, lr, size).numpy()) >= 50


def test_a_static_export_has_fixed_input_dimensions(tmp_path):
    import onnx

    path = tmp_path / "static.onnx"
    report = export_onnx(tiny("swinir"), path, ExportOptions(scale=2.0, static=(12, 16)))
    assert not report.dynamic and report.checks[0].lr_size == (12, 16)
    dims = [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 12, 16]


def test_fp16_runs_on_the_cpu_provider_and_bf16_is_refused_without_a_file(tmp_path):
    model = tiny("edsr-baseline")
    report = export_onnx(model, tmp_path / "half.onnx", ExportOptions(scale=2.0, precision="fp16"))
    assert min(r.psnr for r in report.checks) >= 30
    with pytest.raises(ExportError, match="CPU provider cannot run the bf16 graph"):
        export_onnx(model, tmp_path / "bf16.onnx", ExportOptions(scale=2.0, precision="bf16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.onnx"]


@pytest.mark.parametrize(("weights", "scale"), [
    ("weights.safetensors", 2.0),
    ("weights.safetensors", 4.0),
    ("rdn_small_weights.safetensors", 4.0),
    ("swinir_small_weights.safetensors", 2.0),
])
def test_official_weights_export_at_50_db_at_three_sizes(tmp_path, weights, scale):
    model = load_generator(shared_path(FIXTURES, weights))
    path = tmp_path / "official.onnx"
    export_onnx(model, path, ExportOptions(scale=scale, check=False))
    for index, (h, w) in enumerate([(17, 29), (32, 21), (40, 52)]):
        lr = lr_image(h, w, index)
        size = (int(h * scale), int(w * scale))
        assert psnr(run_onnx(path, lr), upscale(model, lr, size).numpy()) >= 50


# --- the command -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_generator(tiny("edsr-baseline", non_local=False), path)


def test_the_command_writes_a_checked_file(tmp_path, model_file, capsys):
    out = tmp_path / "x2.onnx"
    assert main(["--model", str(model_file), "--scale", "2", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and f"wrote {out}" in printed and "opset 17" in printed
    assert run_onnx(out, lr_image(10, 12, 0)).shape == (1, 3, 20, 24)


def one_error_line(capsys, *words: str) -> None:
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err_lines) == 1, err_lines
    for word in words:
        assert word in err_lines[0]


@pytest.mark.parametrize(("arguments", "words"), [
    (["--scale", "0"], ["--scale", "positive"]),
    (["--scale", "-2"], ["--scale", "positive"]),
    (["--scale", "2", "--arbitrary"], ["not allowed"]),
    ([], ["one of the arguments --scale --arbitrary is required"]),
    (["--scale", "2", "--opset", "12"], ["--opset"]),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, model_file, capsys, arguments, words):
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(model_file), "-o", str(tmp_path / "m.onnx"), *arguments])
    assert exited.value.code == 2
    one_error_line(capsys, *words)
    assert list(tmp_path.iterdir()) == []


def test_an_output_in_a_missing_folder_is_refused(tmp_path, model_file, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--model", str(model_file), "--scale", "2", "-o", str(tmp_path / "missing" / "m.onnx")])
    assert exited.value.code == 2
    one_error_line(capsys, "missing", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_is_not_a_generator_is_one_line(tmp_path, capsys):
    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(4, 3, 3, 3)}, str(path))
    assert main(["--model", str(path), "--scale", "2", "-o", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.safetensors"]


def test_an_unknown_encoder_is_one_line(tmp_path, capsys):
    model = tiny("edsr-baseline", non_local=False)
    model.config = {**model.config, "encoder": "no-such-encoder", "name": "no-such-encoder-ciaosr"}
    path = save_generator(model, tmp_path / "unknown.safetensors")
    assert main(["--model", str(path), "--scale", "2", "-o", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, str(path), "no-such-encoder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unknown.safetensors"]


def test_a_failed_check_leaves_no_file(tmp_path, model_file, capsys, monkeypatch):
    monkeypatch.setitem(realciao.export.MIN_PSNR, "fp32", 1000.0)
    out = tmp_path / "m.onnx"
    assert main(["--model", str(model_file), "--scale", "2", "-o", str(out)]) == 2
    one_error_line(capsys, str(out), "differs from PyTorch", "no file written")
    assert list(tmp_path.iterdir()) == []
