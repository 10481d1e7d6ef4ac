"""Fitting a degradation recipe to a user's photos (``realciao-fit-recipe``).

``measure``: the measurements of one image (JPEG quality and blockiness, noise, blur, MSCN
statistics). ``samples``: the photos' patches and a recipe's synthesised LR patches, both
measured. ``distance``: how far two such sets are. ``space``: the base recipe's ranges and
probabilities as search parameters. ``fit``: the search (Optuna's TPE) and the written
recipe. ``report``: the HTML report.
"""

from realciao.fitting.fit import FitResult, FitSettings, fit_recipe, recipe_distance, write_recipe
from realciao.fitting.samples import FitError, measure_photos

__all__ = ["FitError", "FitResult", "FitSettings", "fit_recipe", "measure_photos", "recipe_distance", "write_recipe"]
