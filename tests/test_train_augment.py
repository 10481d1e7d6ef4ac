"""``data.augment``: albumentations pipelines in their own serialised form, checked at load
(unknown names and size-changing transforms named by key), seeded per sample and per transform."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import yaml

from realciao.train.augment import AugmentError, apply_pipeline, build_pipeline
from realciao.train.config import ConfigError, load_config


def pipeline_dict(*transforms) -> dict:
    return A.to_dict(A.Compose(list(transforms)))


def options_with(tmp_path, augment) -> str:
    path = tmp_path / "opt.yml"
    path.write_text(yaml.safe_dump({"data": {"builtin_samples": True, "augment": augment}}))
    return path


def crop(shape=(24, 24, 3), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_inline_and_saved_pipelines_load(tmp_path):
    spec = pipeline_dict(A.RandomBrightnessContrast(p=0.5), A.OneOf([A.Blur(), A.GaussNoise()], p=0.5))
    loaded = load_config(options_with(tmp_path, spec)).data.augment
    assert [t["__class_fullname__"] for t in loaded["transform"]["transforms"]] == ["RandomBrightnessContrast", "OneOf"]
    for fmt in ("yaml", "json"):
        saved = tmp_path / f"aug.{fmt}"
        A.save(A.Compose([A.HueSaturationValue(p=0.3), A.HorizontalFlip()]), str(saved), data_format=fmt)
        config = load_config(options_with(tmp_path, str(saved)))
        pipeline = build_pipeline(config.data.augment)
        assert [type(t).__name__ for t in pipeline.transforms] == ["HueSaturationValue", "HorizontalFlip"]
    # the transform alone (without A.save's {__version__, transform} wrapper) is the same pipeline
    bare = {"__class_fullname__": "Compose", "transforms": [{"__class_fullname__": "ToGray", "p": 1.0}]}
    assert type(build_pipeline(bare).transforms[0]).__name__ == "ToGray"


@pytest.mark.parametrize("transforms,key,message", [
    ([{"__class_fullname__": "HorizontalFlip"}, {"__class_fullname__": "RandomRotat90"}],
     r"transform\.transforms\[1\]\.__class_fullname__", r"unknown albumentations transform 'RandomRotat90'; did you "
                                                        r"mean RandomRotate90"),
    ([{"__class_fullname__": "Resize", "height": 8, "width": 8, "p": 1}], r"transform\.transforms\[0\]",
     r"Resize changes the crop size \(40x56 -> 8x8\)"),
    ([{"__class_fullname__": "OneOf", "transforms": [{"__class_fullname__": "Blur"},
                                                     {"__class_fullname__": "RandomCrop", "height": 8, "width": 8}]}],
     r"transform\.transforms\[0\]\.transforms\[1\]", r"RandomCrop changes the crop size"),
    ([{"__class_fullname__": "RandomRotate90", "p": 0.5}], r"transform\.transforms\[0\]",
     r"RandomRotate90 changes the crop size \(40x56 -> 56x40\).*data\.rotate"),
    ([{"__class_fullname__": "Affine", "rotate": 30, "fit_output": True}], r"transform\.transforms\[0\]",
     r"Affine changes the crop size"),
    ([{"__class_fullname__": "Blur", "blur_limt": 3}], r"transform\.transforms\[0\]",
     r"Blur: Argument\(s\) 'blur_limt' are not valid"),
    ([{"__class_fullname__": "Blur", "blur_limit": "x"}], r"transform\.transforms\[0\]", r"Blur: blur_limit: .*got 'x'"),
])
def test_mistakes_are_refused_at_load_naming_the_key(tmp_path, transforms, key, message):
    spec = {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "transforms": transforms}}
    with pytest.raises(ConfigError, match=rf"opt.yml: data\.augment\.{key}: {message}") as error:
        load_config(options_with(tmp_path, spec))
    assert "\n" not in str(error.value)


def test_a_mistake_in_a_pipeline_file_names_the_file(tmp_path):
    saved = tmp_path / "aug.yml"
    A.save(A.Compose([A.HorizontalFlip(), A.CenterCrop(height=8, width=8)]), str(saved), data_format="yaml")
    with pytest.raises(ConfigError, match=rf"opt.yml: data\.augment: {saved}: transform\.transforms\[1\]: CenterCrop "
                                          r"changes the crop size"):
        load_config(options_with(tmp_path, str(saved)))
    with pytest.raises(ConfigError, match=r"opt.yml: data\.augment: .*nope.yml: no such albumentations pipeline file"):
        load_config(options_with(tmp_path, str(tmp_path / "nope.yml")))


def test_draws_follow_the_seed_alone():
    pipeline = build_pipeline(pipeline_dict(A.RandomBrightnessContrast(p=0.5), A.GaussNoise(p=0.5),
                                            A.OneOf([A.Blur(), A.MedianBlur(blur_limit=3)], p=0.5)))
    image = crop()
    first = [apply_pipeline(pipeline, [image], seed)[0] for seed in range(6)]
    # another order of calls, and a fresh pipeline (a DataLoader worker's copy), draw the same
    again = [apply_pipeline(pipeline, [image], seed)[0] for seed in reversed(range(6))][::-1]
    fresh = build_pipeline(pipeline_dict(A.RandomBrightnessContrast(p=0.5), A.GaussNoise(p=0.5),
                                         A.OneOf([A.Blur(), A.MedianBlur(blur_limit=3)], p=0.5)))
    assert all(np.array_equal(a, b) and np.array_equal(a, fresh_out)
               for a, b, fresh_out in zip(first, again, (apply_pipeline(fresh, [image], s)[0] for s in range(6))))
    assert len({a.tobytes() for a in first}) > 1
    assert all(a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 for a in first)


def test_each_transform_draws_on_its_own():
    """albumentations' Compose(seed=...) gives every transform the same seed, so two with the same
    p would always fire together; here they are independent."""
    pipeline = build_pipeline(pipeline_dict(A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)))
    image = crop((6, 6, 3))
    outcomes = set()
    for seed in range(40):
        out = apply_pipeline(pipeline, [image], seed)[0]
        outcomes.add((np.array_equal(out, image[:, ::-1]), np.array_equal(out, image[::-1]),
                      np.array_equal(out, image[::-1, ::-1]), np.array_equal(out, image)))
    assert len(outcomes) == 4  # identity, either flip alone, both


def test_both_images_of_a_pair_get_the_same_draw():
    pipeline = build_pipeline(pipeline_dict(A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5),
                                            A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.7),
                                            A.InvertImg(p=0.3)))
    hr = np.repeat(np.repeat(crop((8, 8, 3), 1) * 0.6 + 0.2, 2, axis=0), 2, axis=1)  # LR upsampled by 2 x 2 blocks
    lr = hr[::2, ::2].copy()
    changed = 0
    for seed in range(20):
        lr_out, hr_out = apply_pipeline(pipeline, [lr, hr], seed)
        assert np.allclose(hr_out[::2, ::2], lr_out, atol=1e-5), seed  # still the same scene, same colours
        changed += not np.allclose(lr_out, lr)
    assert changed > 10


def test_a_pipeline_that_changes_size_at_run_time_stops_with_the_sizes():
    pipeline = build_pipeline(pipeline_dict(A.HorizontalFlip()))
    pipeline.transforms.append(A.Resize(4, 4, p=1))  # slipped past the load check
    with pytest.raises(AugmentError, match=r"changed a 24x24 crop to 4x4"):
        apply_pipeline(pipeline, [crop()], 0)
