"""realciao.files: atomic writes that leave nothing half-written, with the umask's mode."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

import realciao
from realciao.files import atomic_path, atomic_write, remove_stale
from realciao.imageio import write_image
from realciao.train.state import save_tree


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_mode_of_a_plain_open_under_umask_022(tmp_path, umask_022):
    with open(tmp_path / "plain", "w") as handle:
        handle.write("x")
    expected = mode(tmp_path / "plain")
    assert expected == 0o644
    atomic_write(tmp_path / "bytes.bin", b"data")
    write_image(tmp_path / "image.png", np.zeros((4, 5, 3), np.uint8))
    model = realciao.build_generator("edsr-baseline-ciaosr", channels=4, num_blocks=1, mlp_hidden=[8])
    realciao.save_generator(model, tmp_path / "model.safetensors")
    save_tree({"t": torch.zeros(2)}, tmp_path / "state.safetensors")
    for name in ("bytes.bin", "image.png", "model.safetensors", "state.safetensors"):
        assert mode(tmp_path / name) == expected, name


def test_a_private_umask_is_honoured(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private.bin", b"data")
    finally:
        os.umask(old)
    assert mode(tmp_path / "private.bin") == 0o600


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".net_g_ema.safetensors.abc123.tmp").write_bytes(b"partial")
    (tmp_path / "net_g_ema.safetensors").write_bytes(b"kept")
    (tmp_path / ".lock").write_text("1")
    assert [p.name for p in remove_stale(tmp_path)] == [".net_g_ema.safetensors.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "net_g_ema.safetensors"]
