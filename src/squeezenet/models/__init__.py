"""Network definitions and the model contract. This package imports nothing of ``squeezenet`` but the bottom
floor (:mod:`squeezenet.errors`, :mod:`squeezenet.common`): everything else builds on it."""

from . import zoo as _zoo  # noqa: F401  (registers the models)
from .alexnet import AlexNet, AlexNetConfig
from .archs import config_from_dict
from .config import FireSpec, SqueezeNetConfig, StemSpec, design_space_config, design_space_fires
from .detector import Detector, DetectorConfig, decode_detections, fit_anchor_shapes
from .features import FeatureExtractor, FeatureInfo
from .fire import Fire
from .layers import paper_layer_names, prunable_layers
from .meta import InferenceModel, ModelMeta, Network, default_classes, default_preprocessing, input_device
from .preprocessing import CAFFE, CIFAR, TORCHVISION, Preprocessing, preset
from .registry import (
    ModelEntry,
    create_model,
    get_model_entry,
    list_models,
    model_from_config,
    model_task,
    register_model,
)
from .squeezenet import SqueezeNet
from .state import effective_state_dict

__all__ = [
    "CAFFE", "CIFAR", "TORCHVISION", "AlexNet", "AlexNetConfig", "Detector", "DetectorConfig", "FeatureExtractor",
    "FeatureInfo", "Fire", "FireSpec", "InferenceModel", "ModelEntry", "ModelMeta", "Network", "Preprocessing",
    "SqueezeNet", "SqueezeNetConfig", "StemSpec", "config_from_dict", "create_model", "decode_detections",
    "default_classes", "default_preprocessing", "design_space_config", "design_space_fires", "effective_state_dict",
    "fit_anchor_shapes", "get_model_entry", "input_device", "list_models", "model_from_config", "model_task", "paper_layer_names",
    "preset", "prunable_layers", "register_model",
]
