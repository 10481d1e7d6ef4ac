"""realciao.fitting.space: a base recipe's ranges and probabilities as search parameters."""

from __future__ import annotations

import random
from typing import ClassVar, Literal

import pytest
from pydantic import Field

from realciao.degradations import dump_recipe, load_recipe, parse_recipe
from realciao.degradations.ops import OP_KINDS
from realciao.degradations.recipe import recipe_to_data
from realciao.degradations.sampling import Constant, Mixture, Uniform
from realciao.degradations.specs import (
    Drawn,
    JpegOp,
    NoiseOp,
    OneOf,
    OpSpec,
    Recipe,
    ResizeOp,
    Search,
    SearchRange,
)
from realciao.fitting.space import SearchSpace, normalised, quantities, remap

SIMPLE = {
    "name": "simple",
    "stages": [
        {"resize": {"name": "down", "scale": {"mixture": [[0.5, 1], 1], "probs": [0.7, 0.3]}}},
        {
            "noise": {
                "name": "noise",
                "types": [
                    {"type": "gaussian", "p": 0.6, "sigma": [1, 20]},
                    {"type": "poisson", "p": 0.4, "scale": [0.1, 2]},
                ],
            }
        },
        {"jpeg": {"name": "jpeg", "p": 0.9, "quality": [30, 95]}},
    ],
}


def stage(recipe, name):
    def walk(stages):
        for s in stages:
            if s.name == name:
                yield s
            if isinstance(s, OneOf):
                for branch in s.choices:
                    yield from walk(branch.stages)

    return next(walk(recipe.stages))


@pytest.mark.parametrize("name", ["realesrgan", "bsrgan", "phone_camera"])
def test_the_base_values_give_the_base_recipe_back(name):
    base = load_recipe(name)
    space = SearchSpace(base)
    assert space.parameters
    assert recipe_to_data(space.recipe(space.base_values())) == recipe_to_data(base)


@pytest.mark.parametrize("name", ["realesrgan", "bsrgan", "phone_camera"])
def test_any_values_in_the_bounds_give_a_valid_recipe_that_round_trips(name, tmp_path):
    space = SearchSpace(load_recipe(name))
    rng = random.Random(0)
    for index in range(20):
        values = {p.name: rng.uniform(p.low, p.high) for p in space.parameters}
        recipe = space.recipe(values)
        path = tmp_path / f"r{index}.yml"
        path.write_text(dump_recipe(recipe))
        assert recipe_to_data(load_recipe(path)) == recipe_to_data(recipe)


def test_ranges_and_probabilities_move_and_the_structure_stays():
    space = SearchSpace(parse_recipe(SIMPLE))
    names = {p.name for p in space.parameters}
    # noise runs always in the base (p 1), so it stays always on; the JPEG's p 0.9 is fitted
    assert names == {
        "down.scale.probs",
        "down.scale.min",
        "noise.types",
        "noise.gaussian.sigma.centre",
        "noise.gaussian.sigma.width",
        "noise.poisson.scale.centre",
        "noise.poisson.scale.width",
        "noise.gray_p",
        "jpeg.p",
        "jpeg.quality.centre",
        "jpeg.quality.width",
    }
    recipe = space.recipe(
        {
            "noise.gaussian.sigma.centre": 6.5,
            "noise.gaussian.sigma.width": 3.0,
            "jpeg.quality.centre": 65.0,
            "jpeg.quality.width": 10.0,
            "jpeg.p": 1.0,
            "noise.types": 0.25,
            "down.scale.min": 0.25,
            "down.scale.probs": 0.5,
        }
    )
    noise, jpeg, down = stage(recipe, "noise"), stage(recipe, "jpeg"), stage(recipe, "down")
    assert isinstance(noise, NoiseOp) and isinstance(jpeg, JpegOp) and isinstance(down, ResizeOp)
    assert noise.types[0].sigma == Uniform(5.0, 8.0)
    assert [t.p for t in noise.types] == [0.25, 0.75]
    assert noise.types[1].scale == Uniform(0.1, 2.0)  # not given: the base's
    assert jpeg.quality == Uniform(60.0, 70.0) and jpeg.p == 1.0
    # the down range stretches to 0.25; "keep the size" (1) stays 1
    assert down.scale == Mixture((Uniform(0.25, 1.0), Constant(1.0)), (0.5, 0.5))


def test_gray_noise_probability_is_one_for_the_types_that_share_it_and_leaves_room_for_correlated():
    shared = SearchSpace(parse_recipe(SIMPLE))  # both types at the default 0
    assert {t.gray_p for t in stage(shared.recipe({"noise.gray_p": 0.7}), "noise").types} == {0.7}
    different = {**SIMPLE, "stages": [{"noise": {"name": "noise", "types": [
        {"type": "gaussian", "p": 0.6, "sigma": [1, 20], "gray_p": 0.2, "correlated_p": 0.5},
        {"type": "poisson", "p": 0.4, "scale": [0.1, 2], "gray_p": 0.9}]}}]}
    space = SearchSpace(parse_recipe(different))
    bounds = {p.name: (p.low, p.high) for p in space.parameters if p.name.endswith("gray_p")}
    assert bounds == {"noise.gaussian.gray_p": (0.0, 0.5), "noise.poisson.gray_p": (0.0, 1.0)}
    types = stage(space.recipe({"noise.gaussian.gray_p": 0.9, "noise.poisson.gray_p": 0.1}), "noise").types
    assert [(t.gray_p, t.correlated_p) for t in types] == [(0.5, 0.5), (0.1, 0.0)]  # capped: 0.5 + 0.5 = 1
    labels = {q.name: q.label for q in quantities(parse_recipe(different))}
    assert labels["noise.gaussian.gray_p"] == "noise: gaussian gray-noise probability"


def test_values_are_clipped_to_the_bounds_and_rounded():
    space = SearchSpace(parse_recipe(SIMPLE))
    recipe = space.recipe({"jpeg.quality.centre": 30.0, "jpeg.quality.width": 66.24691, "jpeg.p": 3.0})
    assert stage(recipe, "jpeg").quality == Uniform(10.0, 63.12)  # clipped at the bound 10, rounded
    assert stage(recipe, "jpeg").p == 1.0


def test_an_anchor_used_twice_is_one_parameter_and_different_stages_of_one_name_are_two():
    realesrgan = SearchSpace(load_recipe("realesrgan"))
    assert sum(p.name.startswith("jpeg2.quality") for p in realesrgan.parameters) == 2
    recipe = realesrgan.recipe({"jpeg2.quality.centre": 80.0, "jpeg2.quality.width": 20.0})
    branches = stage(recipe, "final").choices
    qualities = {s.quality for b in branches for s in b.stages if isinstance(s, JpegOp)}
    assert qualities == {Uniform(70.0, 90.0)}
    bsrgan = {p.name for p in SearchSpace(load_recipe("bsrgan")).parameters}
    assert {"blur1.sigma.width", "blur1~2.sigma.width"} <= bsrgan  # x2 and x4 branches differ


def test_fixed_factors_and_sinc_cutoffs_are_not_searched():
    names = {p.name for p in SearchSpace(load_recipe("bsrgan")).parameters}
    assert not any(n.startswith(("downsample1_cv2", "downsample1_matlab", "downsample3")) for n in names)
    realesrgan = {p.name for p in SearchSpace(load_recipe("realesrgan")).parameters}
    assert "final_sinc.p" in realesrgan and not any("cutoff" in n for n in realesrgan)
    assert SearchSpace(load_recipe("bicubic")).parameters == []


def test_widening_widens_ranges_within_the_bounds_and_keeps_probabilities():
    space = SearchSpace(parse_recipe(SIMPLE))
    values = {
        **space.base_values(),
        "noise.gaussian.sigma.centre": 6.5,
        "noise.gaussian.sigma.width": 3.0,
        "jpeg.quality.centre": 94.0,
        "jpeg.quality.width": 8.0,
        "jpeg.p": 0.8,
    }
    wide = space.recipe(space.widened(values, 0.05))  # 5 % of the bounds on each side
    assert stage(wide, "noise").types[0].sigma == Uniform(5.0 - 1.5, 8.0 + 1.5)  # bounds [0, 30]
    assert stage(wide, "jpeg").quality == Uniform(90.0 - 4.5, 100.0)  # bounds [10, 100]
    assert stage(wide, "jpeg").p == 0.8 and [t.p for t in stage(wide, "noise").types] == [0.6, 0.4]
    assert stage(wide, "down").scale.components[0] == Uniform(0.455, 1.0)  # bounds [0.1, 1]
    assert space.ranges() == ["down.scale", "noise.gaussian.sigma", "noise.poisson.scale", "jpeg.quality"]
    only = space.recipe(space.widened(values, 0.05, only="jpeg.quality"))
    assert stage(only, "jpeg").quality == Uniform(85.5, 100.0)
    assert stage(only, "noise").types[0].sigma == Uniform(5.0, 8.0)


def test_quantities_read_a_recipe_in_its_space():
    texts = {q.label: q.text() for q in quantities(parse_recipe(SIMPLE))}
    assert texts["jpeg: quality"] == "[30, 95]"
    assert texts["noise: probabilities of gaussian, poisson"] == "0.60, 0.40"
    assert texts["down: scale range (x input size)"] == "[0.5, 1]"


def test_helpers():
    assert normalised([1.0, 1.0, 2.0]) == (0.25, 0.25, 0.5)
    assert sum(normalised([0.3, 0.3, 0.3])) == pytest.approx(1, abs=1e-9)
    assert normalised([0.0, 0.0]) == (0.5, 0.5)
    assert remap(Mixture((Uniform(1, 2), Constant(3)), (0.5, 0.5)), lambda v: 2 * v) == Mixture(
        (Uniform(2, 4), Constant(6)), (0.5, 0.5)
    )


def test_every_op_declares_what_a_fit_may_move():
    assert all(kind.spec.search is not None for kind in OP_KINDS)


def test_an_op_that_declares_nothing_is_refused_by_name():
    class Fade(OpSpec):  # a new op whose spec does not say what a fit may move in it
        op: Literal["fade"] = Field("fade", exclude=True)
        strength: Drawn(0.0) = Uniform(1.0, 2.0)

    recipe = Recipe.model_construct(name="new", stages=(Fade(name="dusk", p=0.5),))
    with pytest.raises(TypeError, match="the fade op 'dusk' declares no search"):
        SearchSpace(recipe)


def test_the_fit_moves_what_an_op_declares():
    class Fade(OpSpec):
        search: ClassVar[Search] = Search(ranges=(SearchRange("strength", (0.0, 5.0), "strength of {op}"),))
        op: Literal["fade"] = Field("fade", exclude=True)
        strength: Drawn(0.0) = Uniform(1.0, 2.0)

    recipe = Recipe.model_construct(name="new", stages=(Fade(name="dusk", p=0.5),))
    space = SearchSpace(recipe)
    assert [(p.name, p.low, p.high, p.base) for p in space.parameters] == [
        ("dusk.p", 0.0, 1.0, 0.5),
        ("dusk.strength.centre", 0.0, 5.0, 1.5),
        ("dusk.strength.width", 0.0, 5.0, 1.0),
    ]
    assert [q.label for q in quantities(recipe)] == ["dusk: probability", "dusk: strength of fade"]


def test_a_jpeg_always_applied_gets_a_probability_other_ops_do_not():
    """Photos mix JPEGs with files that show no grid, so a fit may search whether the image was
    saved as a JPEG at all even where the base always saves one; a noise op at p 1 stays at 1."""
    recipe = parse_recipe({"name": "always", "stages": [
        {"noise": {"name": "noise", "types": [{"type": "gaussian", "p": 1, "sigma": [1, 20]}]}},
        {"jpeg": {"name": "jpeg", "quality": [30, 95]}},
    ]})
    assert "jpeg.p" not in [p.name for p in SearchSpace(recipe).parameters]  # unless the fit asks for it
    space = SearchSpace(recipe, p_at_one=True)
    names = [p.name for p in space.parameters]
    assert "jpeg.p" in names and "noise.p" not in names
    assert space.base_values()["jpeg.p"] == 1
    assert stage(space.recipe(space.base_values()), "jpeg").p == 1
    assert stage(space.recipe({**space.base_values(), "jpeg.p": 0.4}), "jpeg").p == pytest.approx(0.4)
