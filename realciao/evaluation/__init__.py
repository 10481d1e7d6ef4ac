"""Evaluation of SR methods: real photos with no-reference metrics and paired benchmarks with
PSNR/SSIM, CiaoSR beside bicubic and peer models. ``run_evaluation`` is the library entry
point; ``realciao-eval`` (``realciao.cli.evaluate``) is its command."""

from realciao.evaluation.methods import RunSettings, load_methods
from realciao.evaluation.protocols import EvaluationError, EvaluationSettings, run_evaluation

__all__ = ["EvaluationError", "EvaluationSettings", "RunSettings", "load_methods", "run_evaluation"]
