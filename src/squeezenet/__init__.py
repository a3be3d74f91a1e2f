"""squeezenet: SqueezeNet (Iandola et al. 2016) as usable software: define, load, train, compress, deploy.

The public API is imported lazily (PEP 562), so ``import squeezenet`` and the command line start
without loading PyTorch until a model is actually needed.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

try:
    __version__ = _version("squeezenet-toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_EXPORTS = {
    "Fire": "squeezenet.models",
    "SqueezeNet": "squeezenet.models",
    "SqueezeNetConfig": "squeezenet.models",
    "create_model": "squeezenet.weights",
    "list_models": "squeezenet.models",
    "model_from_config": "squeezenet.models",
    "ModelMeta": "squeezenet.models",
    "Preprocessing": "squeezenet.models",
    "SqueezeNetError": "squeezenet.errors",
    "architecture_report": "squeezenet.report",
    "load_weights": "squeezenet.weights",
    "load_backbone": "squeezenet.weights",
    "save_weights": "squeezenet.weights",
    "Classifier": "squeezenet.deploy",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .deploy import Classifier  # noqa: F401
    from .errors import SqueezeNetError  # noqa: F401
    from .models import Fire, ModelMeta, Preprocessing, SqueezeNet, SqueezeNetConfig, list_models, model_from_config  # noqa: F401
    from .report import architecture_report  # noqa: F401
    from .weights import create_model, load_backbone, load_weights, save_weights  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'squeezenet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
