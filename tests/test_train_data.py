"""Training data: sources, corrupt-file skipping, the deterministic batch plan, crops."""

from __future__ import annotations

import re
import warnings

import cv2
import numpy as np
import pytest

from realciao.imageio import read_rgb
from realciao.train.config import DataOptions
from realciao.train.data import (
    CropDataset,
    DataError,
    batch_plan,
    collate,
    gather_sources,
)


def make_folder(tmp_path, count=3, size=(40, 50)):
    folder = tmp_path / "hr"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / ("sub" if i % 2 else "") / f"img{i}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


def test_folders_are_searched_recursively_and_empty_or_missing_ones_are_errors(tmp_path):
    folder = make_folder(tmp_path)
    assert len(gather_sources(DataOptions(hr_folders=[str(folder)]))) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no images"):
        gather_sources(DataOptions(hr_folders=[str(tmp_path / "empty")]))
    with pytest.raises(DataError, match="missing: folder does not exist"):
        gather_sources(DataOptions(hr_folders=[str(tmp_path / "missing")]))


def test_sixteen_bit_gray_and_alpha_images_read_as_float_rgb(tmp_path):
    cv2.imwrite(str(tmp_path / "a16.png"), np.full((4, 5, 3), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((4, 5), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((4, 5, 4), 255, np.uint8))
    for name, value in (("a16.png", 1.0), ("gray.png", 128 / 255), ("rgba.png", 1.0)):
        image = read_rgb(tmp_path / name)
        assert image.shape == (4, 5, 3) and image.dtype == np.float32
        assert np.allclose(image, value)


def test_corrupt_images_are_skipped_with_a_warning_naming_the_file(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for name, level in (("grey10.png", 10), ("grey200.png", 200)):  # the only readable images: flat levels
        cv2.imwrite(str(folder / name), np.full((40, 50, 3), level, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png at all")
    whole = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    (folder / "cut.jpg").write_bytes(whole[:200])  # cut inside the image data
    assert whole.endswith(b"\xff\xd9")
    (folder / "no_end.jpg").write_bytes(whole[:-2])  # every byte but the end-of-image marker
    options = DataOptions(hr_folders=[str(folder)], batch_size=8, lr_patch=8, scale_min=2, scale_max=2)
    sources = gather_sources(options)
    dataset = CropDataset(options, sources)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = collate([dataset[t] for t in batch_plan(options, 0, 0, 0, 1, len(sources))])
    assert batch["gt"].shape == (8, 3, 16, 16)
    # every crop comes from a readable image: flat at one of their two levels, never a corrupt one's zeros
    levels = (batch["gt"] * 255).round().flatten(1)
    assert all(len(set(row.tolist())) == 1 and row[0].item() in (10.0, 200.0) for row in levels)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.png" in messages and "cut.jpg" in messages
    assert "no_end.jpg: truncated JPEG (no end-of-image marker)" in messages


def test_plan_is_deterministic_sized_by_scale_and_ranks_get_different_images():
    options = DataOptions(builtin_samples=True, batch_size=4, lr_patch=10, scale_min=1.5, scale_max=3.5)
    first = batch_plan(options, 7, 5, 0, 2, 20)
    assert first == batch_plan(options, 7, 5, 0, 2, 20)
    other_rank = batch_plan(options, 7, 5, 1, 2, 20)
    assert {t.index for t in first}.isdisjoint({t.index for t in other_rank})
    sizes = {batch_plan(options, 7, s, 0, 1, 20)[0].gt_size for s in range(30)}
    assert all(15 <= h <= 35 and h == w for h, w in sizes) and len(sizes) > 5


def test_per_axis_scales_give_asymmetric_crops():
    options = DataOptions(builtin_samples=True, batch_size=2, lr_patch=10, per_axis_scale=True)
    sizes = [batch_plan(options, 0, s, 0, 1, 5)[0].gt_size for s in range(20)]
    assert any(h != w for h, w in sizes)


def test_an_epoch_visits_every_image_once():
    options = DataOptions(builtin_samples=True, batch_size=5)
    seen = [t.index for step in range(4) for t in batch_plan(options, 0, step, 0, 1, 20)]
    assert sorted(seen) == list(range(20))


def test_basicsr_lmdb_and_meta_info(tmp_path):
    import lmdb

    folder = make_folder(tmp_path, count=2)
    (tmp_path / "meta.txt").write_text("img0.png (40,50,3)\nsub/img1.png (40,50,3)\n")
    assert len(gather_sources(DataOptions(hr_folders=[str(folder)], meta_info=str(tmp_path / "meta.txt")))) == 2
    db = tmp_path / "train.lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"a", cv2.imencode(".png", np.full((20, 20, 3), 200, np.uint8))[1].tobytes())
    env.close()
    (db / "meta_info.txt").write_text("a (20,20,3) 1\n")
    sources = gather_sources(DataOptions(lmdb=str(db)))
    assert len(sources) == 1 and np.allclose(sources[0].load(), 200 / 255)
    with pytest.raises(DataError, match="not a BasicSR LMDB folder"):
        gather_sources(DataOptions(lmdb=str(folder)))


def test_paired_crops_line_up(tmp_path):
    rng = np.random.default_rng(1)
    hr = (rng.integers(0, 64, (64, 64, 3)) * 4).astype(np.uint8)  # 2x2 means stay exact in 8 bits
    (tmp_path / "lr").mkdir()
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "p.png"), hr)
    lr = hr.reshape(32, 2, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))  # a 2x2 block mean commutes with flips
    cv2.imwrite(str(tmp_path / "lr" / "p.png"), np.round(lr).astype(np.uint8))
    from realciao.train.data import pair_groups, paired_sources

    options = DataOptions(builtin_samples=True, paired_lr_folder=str(tmp_path / "lr"), paired_hr_folder=str(tmp_path / "hr"),
                          paired_probability=1.0, paired_scale=2.0, lr_patch=8, batch_size=2)
    pairs = paired_sources(options)
    dataset = CropDataset(options, gather_sources(options), pairs)
    tasks = batch_plan(options, 0, 0, 0, 1, 15, pair_groups(pairs, 8))
    assert all(t.paired for t in tasks)
    item = dataset[tasks[0]]
    assert item["lq"].shape == (3, 8, 8) and item["gt"].shape == (3, 16, 16)
    block_mean = item["gt"].numpy().reshape(3, 8, 2, 8, 2).mean(axis=(2, 4))
    assert np.abs(block_mean - item["lq"].numpy()).max() <= 0.5 / 255 + 1e-6


# --- real pairs at any ratio --------------------------------------------------------------------------

def smooth_image(shape, seed=0, sigma=3.0) -> np.ndarray:
    noise = np.random.default_rng(seed).random((shape[0], shape[1], 3)).astype(np.float32)
    image = cv2.GaussianBlur(noise, (0, 0), sigma)
    return (image - image.min()) / (image.max() - image.min())


def write_pair(tmp_path, name, hr, lr_size=None, shift=(0, 0), noise=0.0):
    """An HR image and its LR, area-downscaled to ``lr_size`` (its content moved by ``shift`` LR pixels)."""
    for folder in ("lr", "hr"):
        (tmp_path / folder).mkdir(exist_ok=True)
    h, w = lr_size
    lr = cv2.resize(hr, (w, h), interpolation=cv2.INTER_AREA)
    lr = np.roll(lr, shift, axis=(0, 1))
    lr = np.clip(lr + np.random.default_rng(5).normal(0, noise, lr.shape), 0, 1)
    cv2.imwrite(str(tmp_path / "hr" / f"{name}.png"), np.round(hr * 65535).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "lr" / f"{name}.png"), np.round(lr * 65535).astype(np.uint16))


def paired_options(tmp_path, **overrides) -> DataOptions:
    values = dict(builtin_samples=True, paired_lr_folder=str(tmp_path / "lr"), paired_hr_folder=str(tmp_path / "hr"),
                  paired_probability=1.0, lr_patch=8, batch_size=4)
    return DataOptions(**{**values, **overrides})


def test_each_pair_takes_its_ratio_per_axis_from_its_sizes_and_batches_share_one(tmp_path):
    from realciao.train.data import pair_groups, paired_sources

    write_pair(tmp_path, "x2", smooth_image((80, 96), 1), (40, 48))
    write_pair(tmp_path, "x2.5", smooth_image((100, 120), 2), (40, 48))
    write_pair(tmp_path, "x2_by_3", smooth_image((80, 144), 3), (40, 48))
    options = paired_options(tmp_path)
    pairs = {p.name: p for p in paired_sources(options)}
    assert {n: p.ratio for n, p in pairs.items()} == {"x2": (2.0, 2.0), "x2.5": (2.5, 2.5), "x2_by_3": (2.0, 3.0)}
    groups = pair_groups(list(pairs.values()), 8)
    assert [size for size, _ in groups] == [(16, 16), (16, 24), (20, 20)]
    dataset = CropDataset(options, gather_sources(options), list(pairs.values()))
    seen = set()
    for step in range(12):
        tasks = batch_plan(options, 0, step, 0, 1, 15, groups)
        batch = collate([dataset[t] for t in tasks])  # one GT size per batch: they stack
        seen.add(tuple(batch["gt"].shape[-2:]))
        assert batch["lq"].shape[-2:] == (8, 8)
        for gt, lq in zip(batch["gt"].numpy(), batch["lq"].numpy()):  # the GT covers the LR patch's area
            down = cv2.resize(gt.transpose(1, 2, 0), (8, 8), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
            assert np.abs(down - lq).mean() < 0.02
    assert seen == {(16, 16), (16, 24), (20, 20)}


def test_a_pair_off_the_given_scale_by_more_than_a_pixel_is_named_and_skipped(tmp_path):
    from realciao.train.data import paired_sources

    write_pair(tmp_path, "good", smooth_image((80, 96), 1), (40, 48))
    write_pair(tmp_path, "one_pixel_over", smooth_image((81, 96), 2), (40, 48))
    write_pair(tmp_path, "cropped", smooth_image((78, 96), 3), (40, 48))
    write_pair(tmp_path, "tiny_hr", smooth_image((30, 96), 3), (40, 48))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = paired_sources(paired_options(tmp_path, paired_scale=2.0))
    assert [p.name for p in pairs] == ["good", "one_pixel_over"]
    messages = " ".join(str(w.message) for w in caught)
    assert "skipping real pair cropped" in messages and "HR 78x96 is not LR 40x48 x 2 = 80x96 within one pixel" in messages
    assert "skipping real pair tiny_hr" in messages and "HR 30x96 is smaller than LR 40x48" in messages
    # without paired_scale any ratio goes; a smaller HR still does not
    with pytest.warns(UserWarning, match="skipping real pair tiny_hr"):
        names = [p.name for p in paired_sources(paired_options(tmp_path))]
    assert names == ["cropped", "good", "one_pixel_over"]


def test_content_shift_measures_the_registration_in_lr_pixels():
    from realciao.train.data import content_shift

    hr = smooth_image((120, 160), 4)
    lr = cv2.resize(hr, (64, 48), interpolation=cv2.INTER_AREA)  # 2.5 x 2.5
    assert max(map(abs, content_shift(lr, hr))) < 0.1
    noisy = np.clip(lr * 0.8 + 0.1 + np.random.default_rng(0).normal(0, 0.03, lr.shape), 0, 1).astype(np.float32)
    assert max(map(abs, content_shift(noisy, hr))) < 0.2  # noise and a colour change do not move it
    dy, dx = content_shift(np.roll(lr, (2, -1), axis=(0, 1)), hr)
    assert abs(dy - 2) < 0.3 and abs(dx + 1) < 0.3


def test_a_misaligned_pair_is_named_skipped_and_another_stands_in(tmp_path):
    from realciao.train.data import pair_groups, paired_sources

    write_pair(tmp_path, "aligned", smooth_image((80, 96), 1), (40, 48), noise=0.01)
    write_pair(tmp_path, "shifted", smooth_image((80, 96), 2), (40, 48), shift=(0, 2))
    options = paired_options(tmp_path, batch_size=2)
    pairs = paired_sources(options)
    assert len(pairs) == 2  # sizes fit: the content check comes when a pair is read
    dataset = CropDataset(options, gather_sources(options), pairs)
    groups = pair_groups(pairs, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[t] for step in range(4) for t in batch_plan(options, 0, step, 0, 1, 15, groups)]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipping real pair shifted" in messages[0], messages
    assert re.search(r"shifted by [+-]0\.\d\d, \+2\.\d\d LR pixels .* more than data\.paired_max_shift = 0\.5",
                     messages[0])
    assert len(items) == 8  # every task served, by the aligned pair
    for item in items:
        down = cv2.resize(item["gt"].numpy().transpose(1, 2, 0), (8, 8), interpolation=cv2.INTER_AREA)
        assert np.abs(down - item["lq"].numpy().transpose(1, 2, 0)).mean() < 0.03
    # with the check off, the shifted pair is used
    loose = CropDataset(paired_options(tmp_path, batch_size=2, paired_max_shift=None), gather_sources(options), pairs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [loose[t] for step in range(4) for t in batch_plan(options, 0, step, 0, 1, 15, groups)]
    assert not caught


def test_augment_pipeline_applies_to_hr_crops_deterministically(tmp_path):
    import albumentations as A

    spec = A.to_dict(A.Compose([A.RandomBrightnessContrast(p=0.8), A.GaussNoise(p=0.5)]))
    options = DataOptions(builtin_samples=True, batch_size=4, lr_patch=8, scale_min=2, scale_max=2, augment=spec)
    plain = DataOptions(builtin_samples=True, batch_size=4, lr_patch=8, scale_min=2, scale_max=2)
    sources = gather_sources(options)
    tasks = batch_plan(options, 0, 3, 0, 1, len(sources))
    first = collate([CropDataset(options, sources)[t] for t in tasks])["gt"]
    again = collate([CropDataset(options, sources)[t] for t in reversed(tasks)])["gt"].flip(0)
    without = collate([CropDataset(plain, sources)[t] for t in tasks])["gt"]
    assert first.equal(again) and not first.equal(without)
    assert first.shape == without.shape == (4, 3, 16, 16)
