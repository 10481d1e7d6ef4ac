"""realciao-prepare: each subcommand on small generated images, the same crops and LMDB as
BasicSR's tools, resumption after a kill, the bad inputs, and the GT check's verdicts."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from realciao.cli.prepare import main
from realciao.compat import import_basicsr
from realciao.train.config import DataOptions
from realciao.train.data import builtin_image, gather_sources
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]


def photo_like(rng: np.random.Generator, height: int, width: int, dtype=np.uint8) -> np.ndarray:
    """Smooth random colour fields (PNG-compressible, unlike white noise)."""
    image = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 3)
    image = (image - image.min()) / (image.max() - image.min())
    top = np.iinfo(dtype).max
    return np.round(image * top).astype(dtype)


def write_folder(folder: Path, sizes, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index, (height, width) in enumerate(sizes):
        path = folder / f"img{index}.png"
        cv2.imwrite(str(path), photo_like(rng, height, width))
        paths.append(path)
    return paths


def prepare(*args: str) -> int:
    return main([*args, "--no-progress", "--workers", "1"])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def files_below(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


# --- sub-images ----------------------------------------------------------------------------------------
def basicsr_subimages(path: Path, crop: int, step: int, thresh: int) -> dict[str, np.ndarray]:
    """BasicSR's extract_subimages.py worker as documented: crops along each axis at 0, step, ...
    plus one flush with the far edge when the leftover exceeds thresh_size; named NAME_sNNN
    row-major; pixels as cv2.imread(IMREAD_UNCHANGED) reads them."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    height, width = image.shape[:2]
    rows = list(np.arange(0, height - crop + 1, step))
    if height - (rows[-1] + crop) > thresh:
        rows.append(height - crop)
    columns = list(np.arange(0, width - crop + 1, step))
    if width - (columns[-1] + crop) > thresh:
        columns.append(width - crop)
    crops, index = {}, 0
    for top in rows:
        for left in columns:
            index += 1
            crops[f"{path.stem}_s{index:03d}.png"] = image[top : top + crop, left : left + crop]
    return crops


@pytest.mark.parametrize("crop, step, thresh", [(64, 32, 0), (50, 40, 7), (64, 64, 30)])
def test_subimages_are_basicsrs_crops(tmp_path, crop, step, thresh):
    sources = write_folder(tmp_path / "hr", [(150, 173), (64, 97), (131, 131)])
    assert prepare("subimages", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / "sub"), "--crop", str(crop),
                   "--step", str(step), "--thresh-size", str(thresh)) == 0
    expected = {name: pixels for path in sources for name, pixels in basicsr_subimages(path, crop, step, thresh).items()}
    written = files_below(tmp_path / "sub")
    assert sorted(written) == sorted(expected)
    for name, pixels in expected.items():
        assert np.array_equal(cv2.imread(str(written[name]), cv2.IMREAD_UNCHANGED), pixels), name


def test_subimages_keep_16_bits_and_grey_and_use_the_png_level(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(1)
    deep = photo_like(rng, 80, 90, np.uint16)
    grey = photo_like(rng, 80, 90)[..., 0]
    cv2.imwrite(str(folder / "deep.png"), deep)
    cv2.imwrite(str(folder / "grey.png"), grey)
    for level in ("0", "9"):
        assert prepare("subimages", "-i", str(folder), "-o", str(tmp_path / level), "--crop", "48", "--step", "40",
                       "--png-level", level) == 0
    crop = cv2.imread(str(tmp_path / "9" / "deep_s001.png"), cv2.IMREAD_UNCHANGED)
    assert crop.dtype == np.uint16 and np.array_equal(crop, deep[:48, :48])
    assert np.array_equal(cv2.imread(str(tmp_path / "9" / "grey_s006.png"), cv2.IMREAD_UNCHANGED), grey[32:80, 42:90])
    size = {level: sum(p.stat().st_size for p in (tmp_path / level).iterdir()) for level in ("0", "9")}
    assert size["9"] < size["0"]


def png_row_filters(path: Path) -> set[int]:
    """The filter type byte of every row of an 8-bit RGB, non-interlaced PNG."""
    data = path.read_bytes()
    position, idat, width = 8, b"", 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width = int.from_bytes(body[:4], "big")
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    return {raw[row] for row in range(0, len(raw), stride)}


@pytest.mark.skipif(not hasattr(cv2, "IMWRITE_PNG_FILTER"), reason="OpenCV before 4.12 cannot choose PNG filters")
def test_png_filters_fast_leaves_out_average_and_paeth_and_keeps_the_pixels(tmp_path):
    sources = write_folder(tmp_path / "hr", [(96, 96)], seed=3)
    for filters in ("fast", "all"):
        assert prepare("subimages", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / filters), "--crop", "96",
                       "--png-filters", filters) == 0
    fast, every = tmp_path / "fast" / "img0_s001.png", tmp_path / "all" / "img0_s001.png"
    assert png_row_filters(fast) <= {0, 1, 2}  # None, Sub, Up
    assert png_row_filters(every) & {3, 4}  # Average or Paeth: the control, libpng picks them on this image
    original = cv2.imread(str(sources[0]))
    assert np.array_equal(cv2.imread(str(fast)), original) and np.array_equal(cv2.imread(str(every)), original)
    # "all" is what BasicSR's script writes, byte for byte
    assert every.read_bytes() == cv2.imencode(".png", original, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1].tobytes()


def test_images_smaller_than_the_crop_are_kept_whole_or_skipped_by_thresh_size(tmp_path, capsys):
    write_folder(tmp_path / "hr", [(40, 100), (100, 100)])
    assert prepare("subimages", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / "kept"), "--crop", "64",
                   "--step", "64", "--thresh-size", "0") == 0
    kept = cv2.imread(str(tmp_path / "kept" / "img0_s001.png"))
    assert kept.shape == (40, 64, 3) and (tmp_path / "kept" / "img0_s002.png").is_file()
    capsys.readouterr()
    assert prepare("subimages", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / "skipped"), "--crop", "64",
                   "--step", "64", "--thresh-size", "40") == 0
    assert not any((tmp_path / "skipped").glob("img0_*"))
    assert "img0.png: 100x40 is smaller than the 64 px crop" in capsys.readouterr().err


def test_workers_give_the_same_files(tmp_path):
    write_folder(tmp_path / "hr", [(120, 100)] * 4)
    for workers in ("1", "2"):
        assert main(["subimages", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / workers), "--crop", "48",
                     "--step", "24", "--workers", workers, "--no-progress"]) == 0
    one, two = files_below(tmp_path / "1"), files_below(tmp_path / "2")
    assert sorted(one) == sorted(two) and all(one[n].read_bytes() == two[n].read_bytes() for n in one)


def test_a_killed_run_resumes_without_redoing_finished_files(tmp_path):
    write_folder(tmp_path / "hr", [(200, 200)] * 10)
    output, total = tmp_path / "sub", 10 * 8 * 8  # crops at 0, 24, ... 168 on each axis
    cut = ["subimages", "-i", str(tmp_path / "hr"), "--crop", "32", "--step", "24", "--png-level", "9"]
    command = [sys.executable, "-m", "realciao.cli.prepare", *cut, "-o", str(output), "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(list(output.glob("*.png"))) < 100:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in files_below(output).items()}
    finished = [n for n in before if not n.startswith(".")]
    assert 0 < len(finished) < total, "the run was not interrupted mid-way"
    assert prepare(*cut, "-o", str(output)) == 2  # an existing output needs --resume or --overwrite
    assert prepare(*cut, "-o", str(output), "--resume") == 0
    after = files_below(output)
    assert len(after) == total and not any(n.startswith(".") for n in after)  # no temporary file left
    assert all((after[n].stat().st_ino, after[n].stat().st_mtime_ns) == before[n] for n in finished)
    assert prepare(*cut, "-o", str(tmp_path / "reference")) == 0
    reference = files_below(tmp_path / "reference")
    assert sorted(reference) == sorted(after)
    assert all(np.array_equal(cv2.imread(str(p)), cv2.imread(str(after[n]))) for n, p in reference.items())


def test_a_sub_image_cut_short_is_written_again_on_resume(tmp_path):
    """A sub-image that does not end with PNG's IEND chunk (cut short by a crash, or by a copy)
    is not trusted by --resume."""
    write_folder(tmp_path / "hr", [(96, 96)] * 2)
    cut = ["subimages", "-i", str(tmp_path / "hr"), "--crop", "48", "--step", "48"]
    assert prepare(*cut, "-o", str(tmp_path / "sub")) == 0
    files = files_below(tmp_path / "sub")
    whole = {name: path.read_bytes() for name, path in files.items()}
    short, untouched = sorted(files)[0], sorted(files)[1]
    files[short].write_bytes(whole[short][: len(whole[short]) // 2])
    mtime = files[untouched].stat().st_mtime_ns
    assert prepare(*cut, "-o", str(tmp_path / "sub"), "--resume") == 0
    assert files[short].read_bytes() == whole[short]
    assert files[untouched].stat().st_mtime_ns == mtime  # complete files are kept as they are


# --- multiscale ------------------------------------------------------------------------------------------
def test_multiscale_is_real_esrgans_lanczos_and_keeps_16_bits(tmp_path):
    (source,) = write_folder(tmp_path / "hr", [(90, 120)])
    cv2.imwrite(str(tmp_path / "hr" / "deep.png"), photo_like(np.random.default_rng(2), 90, 60, np.uint16))
    assert prepare("multiscale", "-i", str(tmp_path / "hr"), "-o", str(tmp_path / "ms"), "--scales", "0.75", "0.5",
                   "0.3333", "--shortest", "40") == 0
    original = Image.open(source)
    sizes = [(90, 67), (60, 45), (39, 29), (53, 40)]  # int(w * s), int(h * s); shortest edge 40
    for index, size in enumerate(sizes):
        written = np.asarray(Image.open(tmp_path / "ms" / f"img0T{index}.png"))
        assert np.array_equal(written, np.asarray(original.resize(size, resample=Image.LANCZOS))), index
    deep = cv2.imread(str(tmp_path / "ms" / "deepT3.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (60, 40, 3)


# --- LMDB ------------------------------------------------------------------------------------------------
def lmdb_items(path: Path) -> dict[bytes, bytes]:
    import lmdb

    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = {bytes(k): bytes(v) for k, v in txn.cursor()}
    env.close()
    return items


def test_lmdb_equals_basicsrs_make_lmdb_from_imgs_and_both_readers_read_it(tmp_path):
    folder = tmp_path / "hr"
    write_folder(folder, [(40, 50), (33, 61)])
    rng = np.random.default_rng(3)
    cv2.imwrite(str(folder / "deep.png"), photo_like(rng, 30, 20, np.uint16))
    cv2.imwrite(str(folder / "grey.png"), photo_like(rng, 30, 20)[..., 0])
    lmdb_util = import_basicsr("utils.lmdb_util")
    names = sorted(p.name for p in folder.glob("*.png"))
    lmdb_util.make_lmdb_from_imgs(str(folder), str(tmp_path / "basicsr.lmdb"), names, [n[:-4] for n in names],
                                  compress_level=1)
    assert prepare("lmdb", "-i", str(folder), "-o", str(tmp_path / "ours.lmdb")) == 0
    assert prepare("lmdb", "-i", str(folder), "-o", str(tmp_path / "exact.lmdb"), "--png-filters", "all") == 0
    ours, exact, theirs = tmp_path / "ours.lmdb", tmp_path / "exact.lmdb", tmp_path / "basicsr.lmdb"
    assert (ours / "meta_info.txt").read_text() == (theirs / "meta_info.txt").read_text()
    assert lmdb_items(exact) == lmdb_items(theirs)  # same keys, same PNG bytes
    assert lmdb_items(ours).keys() == lmdb_items(theirs).keys()  # the default's pixels are checked below

    utils = import_basicsr("utils")
    client = utils.FileClient("lmdb", db_paths=[str(ours)], client_keys=["gt"])
    for name in names:
        decoded = utils.imfrombytes(client.get(name[:-4], "gt"), flag="unchanged")
        assert np.array_equal(decoded, cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)), name
    for env in client.client._client.values():  # one process may open an LMDB once at a time
        env.close()
    sources = gather_sources(DataOptions(lmdb=str(ours)))
    assert len(sources) == 4
    assert np.allclose(sources[0].load(), cv2.imread(str(folder / "deep.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535)


def test_paired_lmdb_has_the_same_keys_in_both_and_names_unpaired_images(tmp_path, capsys):
    write_folder(tmp_path / "gt", [(64, 64)] * 3)
    write_folder(tmp_path / "lr", [(16, 16)] * 2, seed=1)
    assert prepare("lmdb", "-i", str(tmp_path / "gt"), "-o", str(tmp_path / "gt.lmdb"), "--paired-lr",
                   str(tmp_path / "lr")) == 0
    assert "img2.png: no LR image named 'img2'" in capsys.readouterr().err
    gt, lr = lmdb_items(tmp_path / "gt.lmdb"), lmdb_items(tmp_path / "lr.lmdb")
    assert sorted(gt) == sorted(lr) == [b"img0", b"img1"]
    assert (tmp_path / "lr.lmdb" / "meta_info.txt").read_text() == "img0.png (16,16,3) 1\nimg1.png (16,16,3) 1\n"


def test_a_full_lmdb_names_itself_leaves_no_meta_info_and_resumes(tmp_path, monkeypatch, capsys):
    from realciao.prepare import lmdb_store

    write_folder(tmp_path / "hr", [(160, 160)] * 6)
    output = tmp_path / "data.lmdb"
    monkeypatch.setattr(lmdb_store, "MAP_SIZE", 200_000)  # room for some images only
    assert prepare("lmdb", "-i", str(tmp_path / "hr"), "-o", str(output), "--png-level", "0", "--commit-every", "1") == 2
    line = one_error_line(capsys)
    assert f"{output}: cannot write key" in line and "rerun with --resume" in line
    assert not (output / "meta_info.txt").exists()
    partial = lmdb_items(output)
    assert 0 < len(partial) < 6
    monkeypatch.setattr(lmdb_store, "MAP_SIZE", 1 << 30)
    assert prepare("lmdb", "-i", str(tmp_path / "hr"), "-o", str(output), "--png-level", "0", "--resume") == 0
    complete = lmdb_items(output)
    assert len(complete) == 6 and all(complete[k] == v for k, v in partial.items())
    assert len((output / "meta_info.txt").read_text().splitlines()) == 6


def test_training_reads_the_lmdb(tmp_path):
    from tests.test_train_loop import options_file, run_in_process

    write_folder(tmp_path / "hr_src", [(72, 80)] * 3)
    assert prepare("lmdb", "-i", str(tmp_path / "hr_src"), "-o", str(tmp_path / "train.lmdb")) == 0
    trainer = run_in_process(options_file(tmp_path, data={"hr_folders": [], "lmdb": str(tmp_path / "train.lmdb")},
                                          train={"iterations": 2, "log_every": 1}))
    assert (trainer.dir / "net_g_ema.safetensors").is_file()


# --- meta-info -------------------------------------------------------------------------------------------
def test_meta_info_lists_readable_images_for_realciao_and_basicsr(tmp_path, capsys):
    folder = tmp_path / "hr"
    write_folder(folder / "a", [(40, 50)])
    write_folder(folder / "b", [(30, 20), (20, 30)])
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert prepare("meta-info", "-i", str(folder), "-o", str(tmp_path / "meta.txt")) == 0
    assert (tmp_path / "meta.txt").read_text() == "a/img0.png (40,50,3)\nb/img0.png (30,20,3)\nb/img1.png (20,30,3)\n"
    assert "skipped" in capsys.readouterr().err
    sources = gather_sources(DataOptions(hr_folders=[str(folder)], meta_info=str(tmp_path / "meta.txt")))
    assert [s.label for s in sources] == [str(folder / "a/img0.png"), str(folder / "b/img0.png"), str(folder / "b/img1.png")]
    write_folder(tmp_path / "lq", [(20, 25)], seed=2)
    write_folder(tmp_path / "gt", [(40, 50), (40, 50)])
    assert prepare("meta-info", "-i", str(tmp_path / "gt"), "-o", str(tmp_path / "pairs.txt"), "--paired-lr",
                   str(tmp_path / "lq")) == 0
    assert (tmp_path / "pairs.txt").read_text() == "gt/img0.png, lq/img0.png\n"


# --- check -----------------------------------------------------------------------------------------------
def write_photo(path: Path, pixels: np.ndarray, **options) -> Path:
    Image.fromarray(pixels).save(path, **options)
    return path


def test_check_rejects_jpeg_15_and_noise_25_and_keeps_the_clean_photos(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    clean = {}
    for name in ("astronaut", "chelsea", "coffee", "camera", "rocket"):
        pixels = np.round(builtin_image(name) * 255).astype(np.uint8)
        clean[name] = write_photo(folder / f"{name}.png", pixels)
    write_photo(folder / "clean_q95.jpg", np.asarray(Image.open(clean["coffee"])), quality=95)
    write_photo(folder / "q15.jpg", np.asarray(Image.open(clean["chelsea"])), quality=15)
    noise = np.random.default_rng(0).normal(0, 25, (512, 512, 3))
    noisy = np.clip(np.round(np.asarray(Image.open(clean["astronaut"]), dtype=np.float64) + noise), 0, 255).astype(np.uint8)
    write_photo(folder / "noise25.png", noisy)
    report = tmp_path / "report.csv"
    assert prepare("check", "-i", str(folder), "--report", str(report), "--html", str(tmp_path / "html")) == 1
    out = capsys.readouterr().out
    rejected = sorted(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("reject "))
    assert rejected == [str(folder / "noise25.png"), str(folder / "q15.jpg")]
    assert "JPEG quality 15 <" in out and "noise" in out
    rows = report.read_text().splitlines()
    assert rows[0].startswith("path,width,height,jpeg_quality") and len(rows) == 1 + 8
    page = (tmp_path / "html" / "index.html").read_text()
    assert "2 of 8 rejected" in page and "q15.jpg" in page and "astronaut.png" not in page
    assert prepare("check", "-i", str(folder), "--report", str(report), "--resume",
                   "--move-rejects", str(tmp_path / "rejects")) == 1
    assert sorted(p.name for p in (tmp_path / "rejects").iterdir()) == ["noise25.png", "q15.jpg"]
    assert not (folder / "q15.jpg").exists()
    assert prepare("check", "-i", str(folder), "--report", str(report), "--overwrite") == 0


def test_check_keeps_the_shipped_training_photos(tmp_path, capsys):
    folder = shared_path("data", "train_hr")
    assert main(["check", "-i", str(folder), "--report", str(tmp_path / "r.csv"), "--no-progress"]) in (0, 1)
    rejected = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reject ")]
    assert rejected == []


# --- bad input -------------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_each(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "note.txt").write_text("x")
    out = str(tmp_path / "out")
    for args, expected in [
        (["-i", str(tmp_path / "missing")], "missing: no such file or folder"),
        (["-i", str(tmp_path / "empty")], "empty: no images"),
        (["-i", str(tmp_path / "note.txt")], "note.txt: not an image file"),
    ]:
        assert prepare("subimages", *args, "-o", out) == 2
        assert expected in one_error_line(capsys)
    folder = tmp_path / "hr"
    write_folder(folder, [(64, 64)])
    (folder / "readme.txt").write_text("not an image")
    whole = cv2.imencode(".jpg", photo_like(np.random.default_rng(0), 64, 64))[1].tobytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    assert prepare("subimages", "-i", str(folder), "-o", out, "--crop", "32", "--step", "32") == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "readme.txt: not an image file" in err and "cut.jpg: truncated JPEG" in err
    assert sorted(files_below(Path(out))) == [f"img0_s00{i}.png" for i in range(1, 5)]
    assert prepare("subimages", "-i", str(folder), "-o", out) == 2
    assert "exists and is not empty; pass --resume" in one_error_line(capsys)
    assert prepare("lmdb", "-i", str(folder), "-o", str(tmp_path / "db")) == 2
    assert "must end in .lmdb" in one_error_line(capsys)
    write_folder(tmp_path / "other", [(64, 64)])
    assert prepare("subimages", "-i", str(folder), str(tmp_path / "other"), "-o", str(tmp_path / "both")) == 2
    assert "have the same name 'img0'; rename one" in one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        prepare("subimages", "-i", str(folder), "-o", out, "--overwrite", "--resume")
    assert exit_info.value.code == 2


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, capsys):
    folder = tmp_path / "hr"
    write_folder(folder, [(64, 64)])
    (tmp_path / "taken").write_text("a file")
    taken = str(tmp_path / "taken")
    for args, expected in [
        (["subimages", "-o", f"{taken}/sub"], "-o {taken}/sub: {taken} is a file, so no folder can be made"),
        (["multiscale", "-o", taken], "-o {taken}: is a file, not a folder"),
        (["lmdb", "-o", f"{taken}/x.lmdb"], "-o {taken}/x.lmdb: {taken} is a file"),
        (["meta-info", "-o", f"{taken}/meta_info.txt"], "-o {taken}/meta_info.txt: {taken} is a file"),
        (["meta-info", "-o", str(folder)], "is a folder, not a file"),
        (["check", "--report", f"{taken}/r.csv"], "--report {taken}/r.csv: {taken} is a file"),
        (["check", "--report", str(tmp_path / "r.csv"), "--html", taken], "--html {taken}: is a file, not a folder"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            prepare(args[0], "-i", str(folder), *args[1:])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected.format(taken=taken) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr", "taken"]  # nothing written


def test_a_full_disk_names_the_file_and_leaves_nothing_partial(tmp_path, monkeypatch, capsys):
    import os

    write_folder(tmp_path / "hr", [(64, 64)])
    syncs = []

    def fsync_on_a_full_disk(fd):  # delayed allocation: the disk fills when the data is flushed
        syncs.append(fd)
        if len(syncs) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync_on_a_full_disk)
    output = tmp_path / "sub"
    assert prepare("subimages", "-i", str(tmp_path / "hr"), "-o", str(output), "--crop", "32", "--step", "32") == 2
    assert f"{output / 'img0_s003.png'}: cannot write (No space left on device)" in one_error_line(capsys)
    written = sorted(files_below(output))
    assert written[:2] == ["img0_s001.png", "img0_s002.png"] and "img0_s003.png" not in written
    assert all(name.startswith("img0_s") for name in written)  # no temporary or partial file
