"""Deployment: ONNX export (fp32, int8), the runtime Classifier, and the format benchmark.
Builds on models, weights, inference and compress."""

from .onnx import ExportCheck, export_onnx
from .runtime import RUNTIMES, Classifier, ObjectDetector, OnnxModel, load_model

__all__ = ["RUNTIMES", "Classifier", "ExportCheck", "ObjectDetector", "OnnxModel", "export_onnx", "load_model"]
