"""realciao-eval with peer models (realciao.evaluation.methods on realciao.peers): spandrel models
scored beside a tiny CiaoSR and bicubic at exact sizes, tiles, labels, precision and threads,
and the files it refuses (unsupported, code-running pickles, TorchScript)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import realciao
from realciao.cli import evaluate
from realciao.evaluation.methods import (
    Bicubic,
    CiaoSRMethod,
    ModelFileError,
    PeerMethod,
    RunSettings,
    load_methods,
    load_model,
)
from realciao.peers import PeerError
from realciao.upscaling import target_size
from tests.test_peers import ALL, CONVOLUTIONAL, write_tiny_peers

SCALES = (2.5, 4.0, 8.0)
PHOTOS = {"p0": (13, 17), "p1": (16, 14)}  # LR (h, w): odd sizes, below SwinIR's minimum at the first pass


def _photo(path, size, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[0] // 3 + 1, size[1] // 3 + 1, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(base).resize((size[1], size[0]), Image.BICUBIC).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_tiny_peers(tmp_path_factory.mktemp("models"))
    torch.manual_seed(0)
    ciaosr = realciao.build_generator("edsr-baseline-ciaosr", channels=8, num_blocks=1, mlp_hidden=[16])
    realciao.save_generator(ciaosr.eval(), folder / "ciaosr_tiny.safetensors")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "phones"
    for seed, (name, size) in enumerate(PHOTOS.items()):
        _photo(folder / f"{name}.png", size, seed)
    return folder


@pytest.fixture(scope="module")
def scored(models, photos, tmp_path_factory):
    """One run: bicubic, the tiny CiaoSR and the four peers at x2.5, x4 and x8 (fp32, PIQE)."""
    out = tmp_path_factory.mktemp("eval") / "out"
    peers = [a for name in ALL if name != "swinir_x4.pth" for a in ("--model", str(models / name))]
    args = ["--real", str(photos), "--model", str(models / "ciaosr_tiny.safetensors"), *peers,
            "--label", f"SwinIR-tiny={models / 'swinir_x4.pth'}", *[a for s in SCALES for a in ("--scale", f"{s:g}")],
            "--metrics", "piqe", "--precision", "fp32", "--threads", "1", "--report-images", "1",
            "--crop", "48", "-o", str(out)]
    assert evaluate.main(args) == 0
    return out, json.loads((out / "results.json").read_text())


EXPECTED_METHODS = ["bicubic", "ciaosr_tiny", "rrdb_x4", "rrdb_x2", "compact_x4", "SwinIR-tiny"]


def test_every_peer_is_scored_beside_ciaosr_and_bicubic_at_the_size_asked_for(scored):
    out, document = scored
    rows = document["per_image"]
    assert list(dict.fromkeys(r["method"] for r in rows)) == EXPECTED_METHODS  # labels name the rows
    assert len(rows) == len(EXPECTED_METHODS) * len(SCALES) * len(PHOTOS)
    for row in rows:
        height, width = target_size(PHOTOS[row["image"]], scale=row["scale"])
        assert row["output"] == f"{width}x{height}", row
        assert 0 <= row["piqe"] <= 100
    scores = {(r["method"], r["scale"], r["image"]): r["piqe"] for r in rows}
    assert len({scores[m, 4.0, "p0"] for m in EXPECTED_METHODS}) > 3  # the methods' outputs differ


def test_the_report_says_how_each_peer_made_its_output(scored):
    out, document = scored
    made = document["config"]["made"]
    assert made["rrdb_x4"] == {
        "x2.5": ["x4 model applied once (x4), then MATLAB bicubic to the size asked for, fp32"],
        "x4": ["x4 model applied once (x4), output as is, fp32"],
        "x8": ["x4 model applied twice (x16), then MATLAB bicubic to the size asked for, fp32"],
    }
    assert made["rrdb_x2"]["x8"] == ["x2 model applied 3 times (x8), output as is, fp32"]
    assert made["rrdb_x2"]["x2.5"] == ["x2 model applied twice (x4), then MATLAB bicubic to the size asked for, fp32"]
    assert made["ciaosr_tiny"]["x8"] == ["one pass to the size asked for, fp32"]
    summary = (out / "results.md").read_text()
    assert "## How each output was made" in summary and "| method | x2.5 | x4 | x8 |" in summary
    assert "x4 model applied twice (x16)" in summary and "x4 model applied twice (x16)" in (out / "report.html").read_text()
    models = document["config"]["models"]
    assert models["rrdb_x2"].startswith("rrdb_x2.safetensors: ESRGAN arch, x2, loaded by spandrel")


def test_every_method_returns_exactly_the_size_asked_for(models):
    methods = load_methods([str(models / "ciaosr_tiny.safetensors"), *[str(models / n) for n in ALL]], False, "cpu")
    assert [type(m) for m in methods] == [Bicubic, CiaoSRMethod, *[PeerMethod] * len(ALL)]
    lr = np.random.default_rng(3).random((11, 9, 3), dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for scale in SCALES:
            size = target_size(lr.shape[:2], scale=scale)
            for method in methods:
                out = method.upscale(lr, size, RunSettings(tile=0, precision="fp32"))
                assert tuple(out.shape) == (1, 3, *size), (method.name, scale)
                assert torch.equal(out, torch.round(out * 255) / 255)  # 8-bit values, as a saved file
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", CONVOLUTIONAL)
def test_tiled_peer_outputs_agree_with_untiled(models, name, one_thread):
    (method,) = load_methods([str(models / name)], False, "cpu")[1:]
    lr = np.random.default_rng(4).random((10, 21, 3), dtype=np.float32)
    for scale in SCALES:
        size = target_size(lr.shape[:2], scale=scale)
        whole = method.peer.upscale(lr, size, tile=0).image
        tiled = method.peer.upscale(lr, size, tile=16)
        assert tiled.tiles > tiled.passes
        np.testing.assert_allclose(tiled.image, whole, atol=1e-4, rtol=0)
        # what is scored: the 8-bit outputs; a value within 1e-4 of a rounding edge may flip by one level
        eight_bit = [method.upscale(lr, size, RunSettings(tile=t, precision="fp32")) for t in (0, 16)]
        assert (eight_bit[0] - eight_bit[1]).abs().max() <= 1 / 255 + 1e-7


def test_an_automatic_precision_runs_a_peer_in_fp32_when_spandrel_says_it_cannot(models):
    (method,) = load_methods([str(models / "compact_x4.pth")], False, "cpu")[1:]
    method.peer.supports_bfloat16 = False  # as spandrel marks some architectures
    assert method.precision_for("bf16", fallback=True) == "fp32"
    with pytest.raises(PeerError, match="not running in bf16; use --precision fp32 or auto"):
        method.precision_for("bf16", fallback=False)
    assert method.precision_for("fp32", fallback=False) == "fp32"


def test_start_line_names_precision_and_threads(models, photos, tmp_path, capsys):
    args = ["--real", str(photos), "--model", str(models / "compact_x4.pth"), "--metrics", "piqe", "--max-images", "1",
            "--report-images", "0", "-o", str(tmp_path / "o")]
    assert evaluate.main([*args, "--threads", "1", "--precision", "fp32"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "realciao-eval: cpu, fp32 (asked for), 1 thread(s) (asked for with the threads option)"
    assert torch.get_num_threads() == 1
    assert evaluate.main([*args, "--quiet"]) == 0  # auto: the CPU's native precision
    document = json.loads((tmp_path / "o" / "results.json").read_text())
    assert document["config"]["precision_asked"] == "auto"
    assert document["config"]["precision"] in ("bf16", "fp32")
    assert evaluate.main([*args, "--precision", "fp16", "--quiet"]) == 2
    assert "fp16 runs only on CUDA or Apple MPS" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Files that are not SR models, and files that would run code
# ---------------------------------------------------------------------------------------


def _one_line_error(capsys, args) -> str:
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_an_unsupported_file_is_one_line(tmp_path, photos, models, capsys):
    from safetensors.torch import save_file

    notes = tmp_path / "notes.pth"
    notes.write_text("hello\n")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    unknown = tmp_path / "classifier.safetensors"  # a real safetensors file that is no SR model
    save_file({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, unknown)
    x1 = models / "compact_x1.pth"
    cases = {notes: "not a PyTorch checkpoint", onnx: "not an ONNX model onnxruntime can run",
             unknown: "spandrel recognises no architecture", x1: "x1 restoration model"}
    for path, reason in cases.items():
        err = _one_line_error(capsys, ["--real", str(photos), "--model", str(path), "--metrics", "piqe",
                                       "-o", str(tmp_path / "o")])
        assert err.startswith(f"realciao-eval: error: {path}: not a supported super-resolution model (")
        assert reason in err
    err = _one_line_error(capsys, ["--real", str(photos), "--model", str(tmp_path / "gone.pth"), "--metrics", "piqe",
                                   "-o", str(tmp_path / "o")])
    assert err == f"realciao-eval: error: {tmp_path / 'gone.pth'}: no such model file"
    assert not (tmp_path / "o" / "results.json").exists()  # refused before any work


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_peer_pth_needs_no_allow_pickle_and_a_code_running_pickle_is_refused_unrun(tmp_path, models):
    kind, peer = load_model(str(models / "rrdb_x4.pth"), allow_pickle=False, device="cpu")
    assert kind == "peer" and peer.name == "ESRGAN"
    marker = tmp_path / "ran"
    evil = tmp_path / "RealESRGAN_x4plus.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(64, 3, 3, 3), "hook": _RunsCode(marker)}}, evil)
    plain = tmp_path / "evil.ckpt"
    plain.write_bytes(pickle.dumps({"params": _RunsCode(marker)}, protocol=2))
    for path in (evil, plain):
        with pytest.raises(ModelFileError) as caught:
            load_model(str(path), allow_pickle=False, device="cpu")
        message = str(caught.value)
        assert message.startswith(f"{path}: not a supported super-resolution model without full unpickling")
        assert "--allow-pickle" in message and "\n" not in message
    assert not marker.exists()


def test_torchscript_is_refused_before_torch_load(tmp_path, monkeypatch):
    path = tmp_path / "scripted.pth"
    torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(path))

    def no_load(*args, **kwargs):
        raise AssertionError("torch.load was called on a TorchScript archive")

    monkeypatch.setattr(torch, "load", no_load)
    with pytest.raises(ModelFileError, match="TorchScript archive, which carries code"):
        load_model(str(path), allow_pickle=True, device="cpu")


def test_labels_name_rows_and_clashes_get_a_suffix(models):
    path = str(models / "compact_x4.pth")
    methods = load_methods([path, f"Real ESRGAN={path}", f"Real_ESRGAN={path}", "bicubic"], False, "cpu")
    assert [m.name for m in methods] == ["bicubic", "compact_x4", "Real ESRGAN", "Real_ESRGAN_2"]


def test_auto_precision_probes_the_first_realciao_model_else_the_first_peer(models):
    from realciao.evaluation.protocols import precision_probe

    methods = load_methods([str(models / "compact_x4.pth")], False, "cpu")
    probe = precision_probe(methods, 4.0)
    assert probe.what.startswith("peer ") and "x4" in probe.what
    probe.run("fp32")
    assert precision_probe(methods[:1], 4.0) is None  # bicubic alone: nothing to measure, fp32
