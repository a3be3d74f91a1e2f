"""Prediction and evaluation with a loaded model. Builds on ``squeezenet.weights`` and ``squeezenet.data``."""

from .evaluate import EvalResult, evaluate
from .predict import Prediction, predict

__all__ = ["EvalResult", "Prediction", "evaluate", "predict"]
