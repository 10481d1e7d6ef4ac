"""The public names outside checks call."""

from __future__ import annotations

import importlib
import subprocess
import sys


def test_public_api_names():
    import realciao

    for name in ("build_generator", "load_generator", "save_generator", "upscale", "upscale_image"):
        assert callable(getattr(realciao, name)), name


def test_upscale_is_the_function_and_no_module_shadows_it():
    code = ("import importlib.util, realciao; import realciao.cli.upscale;"
            "assert realciao.upscale.__module__ == 'realciao.inference';"
            "assert importlib.util.find_spec('realciao.upscale') is None")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert importlib.import_module("realciao").upscale.__name__ == "upscale"


def test_degradation_api_names():
    from realciao.degradations import load_recipe, synthesize

    assert callable(load_recipe) and callable(synthesize)
