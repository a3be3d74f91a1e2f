"""Network definitions. This package imports nothing else of ``squeezenet``: everything builds on it."""

from . import zoo as _zoo  # noqa: F401  (registers the models)
from .alexnet import AlexNet, AlexNetConfig
from .config import FireSpec, SqueezeNetConfig, StemSpec, design_space_config, design_space_fires
from .features import FeatureExtractor, FeatureInfo
from .fire import Fire
from .registry import ModelEntry, create_model, get_model_entry, list_models, model_from_config, register_model
from .squeezenet import SqueezeNet
from .state import effective_state_dict

__all__ = [
    "AlexNet", "AlexNetConfig", "FeatureExtractor", "FeatureInfo", "Fire", "FireSpec", "ModelEntry",
    "SqueezeNet", "SqueezeNetConfig", "StemSpec", "create_model", "design_space_config",
    "design_space_fires", "effective_state_dict", "get_model_entry", "list_models", "model_from_config", "register_model",
]
