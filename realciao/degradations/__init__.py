"""Degradation synthesis: Real-ESRGAN, BSRGAN and custom models as YAML recipes.

The engine is pure batched tensor functions (``kernels``, ``filters``, ``resize``,
``noise``, ``jpeg``, ``sharpen``, ``quantize``) driven by an explicit ``torch.Generator``
on the input's device; ``recipe`` reads and validates recipe files, ``pipeline`` runs them.
"""

from realciao.degradations.pipeline import DegradationResult, degrade, degrade_image, sharpen_gt, synthesize
from realciao.degradations.recipe import (
    RecipeError,
    available_recipes,
    dump_recipe,
    load_recipe,
    parse_recipe,
    replace_ops,
)
from realciao.degradations.specs import Recipe

__all__ = [
    "DegradationResult",
    "Recipe",
    "RecipeError",
    "available_recipes",
    "dump_recipe",
    "degrade",
    "degrade_image",
    "load_recipe",
    "parse_recipe",
    "replace_ops",
    "sharpen_gt",
    "synthesize",
]
