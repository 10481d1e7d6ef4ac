"""Recipe files: the shipped ones load, and every kind of mistake is refused with file and key."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from realciao.degradations import RecipeError, available_recipes, load_recipe
from realciao.degradations.recipe import recipe_search_dirs
from realciao.degradations.sampling import (
    Constant,
    IntegerUniform,
    InverseUniform,
    Mixture,
    OddRange,
    Uniform,
)
from realciao.degradations.specs import BlurOp, JpegOp, NoiseOp, OneOf, ResizeOp, Shuffle

VALID = """
stages:
  - blur:
      kernels:
        - {family: gaussian, p: 1, sigma: [0.5, 2]}
  - resize: {relative_to: target, modes: [area]}
  - noise:
      types:
        - {type: gaussian, p: 1, sigma: [1, 30]}
  - jpeg: {quality: [30, 95]}
"""


def _write(tmp_path: Path, text: str, name: str = "x.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(path: Path) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    return str(caught.value)


def test_shipped_recipes_are_found_by_name():
    assert {"realesrgan", "bsrgan", "phone_camera"} <= set(available_recipes())
    for name in ("realesrgan", "realesrgan.yml"):
        path = load_recipe(name).path
        assert path.name == "realesrgan.yml" and path.parent == recipe_search_dirs()[0]


def test_realesrgan_recipe_has_the_documented_defaults():
    recipe = load_recipe("realesrgan")
    blur1, resize1, noise1, jpeg1, blur2, resize2, noise2, final = recipe.stages
    assert recipe.gt_sharpening.weight == Constant(0.5) and recipe.gt_sharpening.radius == 51
    assert recipe.degrade_sharpened_gt
    assert isinstance(blur1, BlurOp) and blur1.size == OddRange(7, 21) and blur1.canvas == 21
    assert sum(k.p for k in blur1.kernels if k.family == "sinc") == pytest.approx(0.1)
    assert blur1.kernels[0].sigma == Uniform(0.2, 3)
    assert blur1.kernels[2].beta == Mixture((Uniform(0.5, 1), Uniform(1, 4)), (0.5, 0.5))
    assert blur1.kernels[6].cutoff == Uniform(math.pi / 3, math.pi)
    assert blur1.kernels[7].cutoff == Uniform(math.pi / 5, math.pi)
    assert isinstance(resize1, ResizeOp) and resize1.scale.probs == (0.2, 0.7, 0.1)
    assert resize1.scale.components == (Uniform(1, 1.5), Uniform(0.15, 1), Constant(1))
    assert isinstance(noise1, NoiseOp) and noise1.types[0].sigma == Uniform(1, 30) and noise1.types[1].gray_p == 0.4
    assert isinstance(jpeg1, JpegOp) and jpeg1.quality == Uniform(30, 95) and jpeg1.table_layout == "diffjpeg"
    assert blur2.p == 0.8 and blur2.kernels[0].sigma == Uniform(0.2, 1.5)
    assert resize2.relative_to == "target" and resize2.scale.probs == (0.3, 0.4, 0.3)
    assert noise2.types[0].sigma == Uniform(1, 25) and noise2.types[1].scale == Uniform(0.05, 2.5)
    assert isinstance(final, OneOf) and [b.p for b in final.choices] == [0.5, 0.5]
    order_a, order_b = ([type(s).__name__ for s in b.stages] for b in final.choices)
    assert order_a == ["ResizeOp", "BlurOp", "JpegOp"] and order_b == ["JpegOp", "ResizeOp", "BlurOp"]
    assert final.choices[0].stages[1].p == 0.8


def test_bsrgan_recipe_shuffles_with_downsample2_before_downsample3():
    (pre, final_jpeg) = load_recipe("bsrgan").stages
    assert isinstance(pre, OneOf) and [b.p for b in pre.choices] == [0.25, 0.75]
    shuffle = pre.choices[1].stages[0]
    assert isinstance(shuffle, Shuffle) and shuffle.keep_order == (("downsample2", "downsample3"),)
    assert len(shuffle.stages) == 6
    assert final_jpeg.quality == IntegerUniform(30, 95)
    downsample2 = shuffle.stages[2]
    assert downsample2.choices[0].stages[0].scale == InverseUniform(1, 8)


def test_a_valid_custom_recipe_loads(tmp_path):
    recipe = load_recipe(_write(tmp_path, VALID))
    assert recipe.name == "x" and [s.name for s in recipe.stages] == ["blur1", "resize1", "noise1", "jpeg1"]


def test_unknown_op_names_file_and_key(tmp_path):
    message = _error(_write(tmp_path, VALID + "  - sparkle: {amount: 3}\n"))
    assert "x.yml" in message and "stages[4].sparkle" in message and "unknown op" in message


def test_unknown_key_names_file_and_key(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("quality: [30, 95]", "quality: [30, 95], qualty: 3")))
    assert "x.yml: stages[3].jpeg.qualty: unknown key" in message


def test_unknown_top_level_key(tmp_path):
    message = _error(_write(tmp_path, "stagez: []\n" + VALID))
    assert "x.yml: stagez: unknown key" in message


def test_probability_outside_unit_interval(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("- blur:\n", "- blur:\n      p: 1.5\n")))
    assert "x.yml: stages[0].blur.p: expected a value <= 1, got 1.5" in message


def test_probabilities_must_sum_to_one(tmp_path):
    text = VALID.replace("{type: gaussian, p: 1,", "{type: gaussian, p: 0.6,")
    message = _error(_write(tmp_path, text))
    assert "x.yml: stages[2].noise.types: probabilities sum to 0.6, expected 1" in message


def test_empty_range(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("sigma: [1, 30]", "sigma: [30, 1]")))
    assert "x.yml: stages[2].noise.types[0].sigma: empty range [30, 1]" in message


def test_missing_file():
    with pytest.raises(RecipeError) as caught:
        load_recipe("no_such_recipe")
    assert "no_such_recipe" in str(caught.value) and "not found" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_required_key(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("  - jpeg: {quality: [30, 95]}", "  - jpeg: {p: 0.5}")))
    assert "x.yml: stages[3].jpeg.quality: missing" in message


def test_values_outside_their_domain(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("quality: [30, 95]", "quality: [30, 120]")))
    assert "stages[3].jpeg.quality: expected values in [1, 100], got [30, 120]" in message
    message = _error(_write(tmp_path, VALID.replace("modes: [area]", "modes: [lanczos]")))
    assert "stages[1].resize.modes[0]: expected 'area', 'bilinear', 'bicubic' or 'nearest', got 'lanczos'" in message


def test_even_kernel_size(tmp_path):
    message = _error(_write(tmp_path, VALID.replace("- blur:\n", "- blur:\n      size: [8, 21]\n")))
    assert "stages[0].blur.size: expected odd positive kernel sizes, got 8" in message


def test_keep_order_must_name_stages_of_the_shuffle(tmp_path):
    text = """
    stages:
      - shuffle:
          keep_order: [[a, c]]
          stages:
            - jpeg: {name: a, quality: 50}
            - jpeg: {name: b, quality: 50}
    """
    message = _error(_write(tmp_path, text))
    assert "x.yml: stages[0].shuffle.keep_order[0][1]: expected a stage name of this shuffle (a, b), got 'c'" in message


def test_nested_key_paths(tmp_path):
    text = """
    stages:
      - one_of:
          choices:
            - p: 1
              stages:
                - blur:
                    kernels:
                      - {family: sinc, p: 1, cutoff: [2, 1]}
    """
    message = _error(_write(tmp_path, text))
    assert "x.yml: stages[0].one_of.choices[0].stages[0].blur.kernels[0].cutoff: empty range [2, 1]" in message


def test_family_specific_keys(tmp_path):
    text = VALID.replace("{family: gaussian, p: 1, sigma: [0.5, 2]}", "{family: gaussian, p: 1, sigma: 1, beta: 2}")
    assert "stages[0].blur.kernels[0].beta: only generalized_gaussian and plateau kernels take a beta" in _error(_write(tmp_path, text))


def test_invalid_yaml(tmp_path):
    assert "x.yml: not valid YAML" in _error(_write(tmp_path, "stages: [\n"))


def test_pi_expressions_and_distributions(tmp_path):
    text = """
    stages:
      - blur:
          kernels:
            - {family: sinc, p: 0.5, cutoff: [pi/5, 0.9*pi]}
            - {family: plateau, p: 0.5, isotropic: false, sigma: {integer: [1, 3]}, rotation: [-pi, 2*pi],
               beta: {mixture: [1, [1, 2]], probs: [0.25, 0.75]}}
    """
    blur = load_recipe(_write(tmp_path, text)).stages[0]
    assert blur.kernels[0].cutoff == Uniform(math.pi / 5, 0.9 * math.pi)
    assert blur.kernels[1].rotation == Uniform(-math.pi, 2 * math.pi)
    assert blur.kernels[1].sigma == IntegerUniform(1, 3)
    assert blur.kernels[1].beta == Mixture((Constant(1.0), Uniform(1, 2)), (0.25, 0.75))
