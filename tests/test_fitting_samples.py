"""realciao.fitting.samples: measuring a folder of photos (and its bad inputs), synthesising
the LR patches a recipe makes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from realciao.degradations import parse_recipe
from realciao.fitting.samples import (
    FitError,
    final_jpeg_quality,
    hr_crops,
    load_hr,
    make_plan,
    measure_photos,
    measure_synthetic,
    patch_corners,
    synthesise,
)

skimage_data = pytest.importorskip("skimage.data")


def photo(size=(96, 128), seed=0) -> np.ndarray:
    """A crop of a bundled photo, uint8 RGB."""
    height, width = size
    return skimage_data.astronaut()[seed * 16 : seed * 16 + height, 100 : 100 + width]


def save(path, pixels, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def test_patch_corners_are_on_the_8_pixel_grid_inside_the_image():
    corners = patch_corners(200, 300, 64, 4)
    assert len(corners) == 4
    assert all(y % 8 == 0 and x % 8 == 0 and y + 64 <= 200 and x + 64 <= 300 for y, x in corners)
    assert patch_corners(64, 64, 64, 4) == [(0, 0)]
    assert patch_corners(40, 300, 64, 4) == []


def test_a_folder_of_jpegs_and_pngs_is_measured_with_exact_jpeg_qualities(tmp_path):
    save(tmp_path / "a.jpg", photo(seed=0), quality=77)
    save(tmp_path / "sub" / "b.jpeg", photo(seed=1), quality=64)
    save(tmp_path / "c.png", photo(seed=2))
    photos = measure_photos(tmp_path, patch=32, patches_per_photo=2)
    assert photos.photos == 3 and len(photos) == 6 and photos.patch == 32
    by_file = {}
    for source, quality in zip(photos.sources, photos.values["jpeg_quality"]):
        by_file.setdefault(source.rsplit("/", 1)[-1], set()).add(None if math.isnan(quality) else quality)
    assert by_file == {"a.jpg": {77.0}, "b.jpeg": {64.0}, "c.png": {None}}  # a PNG has no tables
    assert np.isfinite(photos.values["noise_sigma"]).all()
    assert photos.patches[0].shape == (32, 32, 3) and photos.patches[0].dtype == np.uint8
    assert photos.notes == []


def test_non_images_and_unreadable_files_are_named_and_skipped(tmp_path, capsys):
    save(tmp_path / "good.png", photo())
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    photos = measure_photos(tmp_path)
    echoed = capsys.readouterr().err.splitlines()  # logged as warnings, as they come
    assert photos.photos == 1
    assert any("notes.txt" in n and "not an image file" in n for n in photos.notes)
    assert any("broken.jpg" in n and n.startswith("skipped") for n in photos.notes)
    assert echoed == photos.notes


def test_photos_smaller_than_a_measurement_needs_are_skipped_for_it_with_a_note(tmp_path):
    save(tmp_path / "big.png", photo())
    save(tmp_path / "tiny.png", photo((20, 24)))  # below the 32 px of blur and MSCN, above noise's 16
    photos = measure_photos(tmp_path)
    tiny = [i for i, source in enumerate(photos.sources) if source.endswith("tiny.png")]
    assert len(tiny) == 1  # measured whole
    values = {name: column[tiny[0]] for name, column in photos.values.items()}
    assert math.isfinite(values["noise_sigma"]) and math.isnan(values["blur_sigma"])
    note = next(n for n in photos.notes if "tiny.png" in n)
    assert "24x20" in note and "blur_sigma" in note and "noise_sigma" not in note


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda folder: None, "holds no images"),
        (lambda folder: (folder / "a.txt").write_text("x"), "holds no images"),
        (lambda folder: (folder / "a.png").write_bytes(b"broken"), "no photo could be read"),
    ],
)
def test_a_folder_with_nothing_to_measure_is_a_clear_error(tmp_path, setup, message):
    folder = tmp_path / "photos"
    folder.mkdir()
    setup(folder)
    with pytest.raises(FitError, match=message):
        measure_photos(folder)
    with pytest.raises(FitError, match="no such photo file or folder"):
        measure_photos(tmp_path / "missing")


def test_hr_folders_skip_images_smaller_than_the_crop(tmp_path):
    save(tmp_path / "big.png", photo((300, 300)))
    save(tmp_path / "small.png", photo((100, 100)))
    pool = load_hr(tmp_path, min_side=256)
    assert len(pool.images) == 1 and any("small.png" in n for n in pool.notes)
    with pytest.raises(FitError, match="at least 512 px"):
        load_hr(tmp_path, min_side=512)
    with pytest.raises(FitError, match="does not exist"):
        load_hr(tmp_path / "missing")
    builtin = load_hr(None, min_side=256)
    assert builtin.label == "built-in photos" and len(builtin.images) >= 10


def test_crops_and_synthesis_are_deterministic():
    pool = load_hr(None, min_side=128)
    assert hr_crops(pool, 4, 128, seed=1).equal(hr_crops(pool, 4, 128, seed=1))
    assert not hr_crops(pool, 4, 128, seed=1).equal(hr_crops(pool, 4, 128, seed=2))
    recipe = parse_recipe(
        {
            "stages": [
                {"resize": {"relative_to": "target"}},
                {"noise": {"types": [{"type": "gaussian", "p": 1, "sigma": [2, 6]}]}},
            ]
        }
    )
    plan = make_plan(pool, scale=2, patch=32, samples=6, seed=3)
    assert plan.gt.shape == (6, 3, 64, 64)
    first, _ = synthesise(recipe, plan)
    second, _ = synthesise(recipe, plan)
    other, _ = synthesise(recipe, plan, seed_offset=1)
    assert (
        first.shape == (6, 32, 32, 3) and np.array_equal(first, second) and not np.array_equal(first, other)
    )


def test_synthesised_jpeg_quality_is_the_last_jpeg_when_nothing_changed_the_pixels_after_it():
    jpeg = {"op": "jpeg2", "kind": "jpeg", "quality": 71.5, "out_size": (32, 32)}
    keep = {"op": "final_resize", "kind": "resize", "scale": 1.0, "out_size": (32, 32)}
    grow = {"op": "final_resize", "kind": "resize", "scale": 1.0, "out_size": (40, 40)}
    sinc = {"op": "final_sinc", "kind": "blur", "out_size": (32, 32)}
    quantise = {"op": "q", "kind": "quantize", "out_size": (32, 32)}
    assert final_jpeg_quality([jpeg]) == 71.5
    assert final_jpeg_quality([jpeg, keep, quantise]) == 71.5
    assert math.isnan(final_jpeg_quality([jpeg, grow]))
    assert math.isnan(final_jpeg_quality([jpeg, sinc]))
    assert math.isnan(final_jpeg_quality([keep]))
    pool = load_hr(None, min_side=64)
    recipe = parse_recipe(
        {"stages": [{"resize": {"relative_to": "target"}}, {"jpeg": {"quality": [40, 60]}}]}
    )
    measured = measure_synthetic(recipe, make_plan(pool, scale=2, patch=32, samples=8, seed=0))
    assert ((measured.values["jpeg_quality"] >= 40) & (measured.values["jpeg_quality"] <= 60)).all()


def test_the_report_gets_whole_patches_from_every_photo_before_any_twice(tmp_path):
    # the report's photo row has 8 columns: two photos fill it (4 patches each), in turns
    first = save(tmp_path / "p" / "a.png", photo((256, 256), seed=0))
    save(tmp_path / "p" / "b.png", np.ascontiguousarray(photo((256, 256), seed=1)[::-1]))
    measured = measure_photos(tmp_path / "p", keep_patches=8)
    assert len(measured.patches) == 8
    assert all(p.shape == (64, 64, 3) and p.dtype == np.uint8 for p in measured.patches)
    whole = np.asarray(Image.open(first))

    def from_first(patch):
        return any(
            (whole[y : y + 64, x : x + 64] == patch).all() for y in range(0, 193, 8) for x in range(0, 193, 8)
        )

    assert [from_first(p) for p in measured.patches[:4]] == [True, False, True, False]
