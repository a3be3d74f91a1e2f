"""torch.hub entry points: ``torch.hub.load("<owner>/squeezenet", "squeezenet1_1", pretrained=True)``.

Every registered model is an entry point; ``pretrained=True`` loads its default published weights (see
``squeezenet weights``), ``weights=`` a named set or a file, other keywords are the builder's options.
"""

import sys
from pathlib import Path

dependencies = ["torch", "torchvision", "safetensors", "constriction"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from squeezenet.models import get_model_entry, list_models  # noqa: E402
from squeezenet.weights import create_model  # noqa: E402


def _entry(name: str):
    def load(pretrained: bool = False, **kwargs):
        return create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = name
    load.__doc__ = get_model_entry(name).description
    return load


for _name in list_models():
    globals()[_name] = _entry(_name)
