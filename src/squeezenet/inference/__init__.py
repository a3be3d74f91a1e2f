"""Prediction and evaluation with a loaded model. Builds on ``squeezenet.weights`` and ``squeezenet.data``."""

from .evaluate import EvalResult, evaluate
from .paired import PairedResult, compare, paired_difference
from .predict import Prediction, predict

__all__ = ["EvalResult", "PairedResult", "Prediction", "compare", "evaluate", "paired_difference", "predict"]
