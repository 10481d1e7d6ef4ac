"""Fitting a degradation recipe to a user's photos (``realciao-fit-recipe``): ``measure`` holds the measurements."""
