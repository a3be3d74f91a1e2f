"""Load, save and convert weights: a model comes back with its preprocessing and class names attached."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import create_model, effective_state_dict, model_from_config
from .files import READ_FORMATS, WeightsFile, WeightsMeta, read_weights_file, write_weights_file
from .imagenet import imagenet_names
from .preprocessing import CAFFE, CIFAR, TORCHVISION, Preprocessing
from .pretrained import PRETRAINED, fetch_pretrained


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture of a plain torchvision-style state_dict (torchvision's SqueezeNets and AlexNet)."""
    stem = state_dict.get("features.0.weight")
    head = state_dict.get("classifier.1.weight")
    if stem is not None and head is not None and stem.dim() == 4:
        num_classes, in_chans = int(head.shape[0]), int(stem.shape[1])
        kernel = tuple(stem.shape[-2:])
        if "features.3.squeeze.weight" in state_dict and kernel in ((7, 7), (3, 3)):
            name = "squeezenet1_0" if kernel == (7, 7) else "squeezenet1_1"
            with torch.device("meta"):
                return create_model(name, num_classes=num_classes, in_chans=in_chans).config.to_dict()
        last = state_dict.get("classifier.6.weight")
        if kernel == (11, 11) and last is not None:
            with torch.device("meta"):
                return create_model("alexnet", num_classes=int(last.shape[0]), in_chans=in_chans).config.to_dict()
    raise ValueError("cannot tell the architecture of these weights: they carry no squeezenet metadata and are not "
                     "a torchvision SqueezeNet/AlexNet state_dict")


def default_preprocessing(config: Mapping[str, Any]) -> Preprocessing:
    """For a model that does not say: Caffe's for Caffe-compatible v1.0 (conv10 pad=1), 32x32 CIFAR's for
    small-stem models (a 3x3/1 stem without max-pool: fed 224 crops they would run, and answer wrongly),
    torchvision's otherwise."""
    if config.get("classifier_padding") == 1:
        return CAFFE
    stem = config.get("stem") or {}
    return CIFAR if stem.get("stride") == 1 and not stem.get("pool", True) else TORCHVISION


def build_model(weights: WeightsFile, where: str) -> nn.Module:
    """Model for a weights file: rebuilt from its config (or inferred), weights loaded strictly."""
    config = weights.meta.config or infer_config(weights.state_dict)
    model = model_from_config(config)
    try:
        model.load_state_dict(weights.state_dict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{where}: weights do not match the {config.get('arch')} architecture ({detail[:300]})") from None
    model.eval()
    model.preprocessing = weights.meta.preprocessing or default_preprocessing(config)
    classes = weights.meta.classes
    if classes is None and model.num_classes == 1000:
        classes = list(imagenet_names())
    if classes is not None and len(classes) != model.num_classes:
        raise ValueError(f"{where}: {len(classes)} class names for a {model.num_classes}-class model")
    model.class_names = classes or [f"class {i}" for i in range(model.num_classes)]
    return model


def resolve_weights(source: str | Path) -> tuple[Path, Preprocessing | None]:
    """A path for a weights name or path (named weights are fetched); their known preprocessing if named."""
    if isinstance(source, str) and source in PRETRAINED:
        return fetch_pretrained(source), PRETRAINED[source].preprocessing
    path = Path(source)
    if not path.exists() and path.suffix.lower() not in READ_FORMATS:
        raise ValueError(f"{str(source)!r} is neither a weights file ({', '.join(READ_FORMATS)}) nor one of the "
                         f"named weight sets: {', '.join(sorted(PRETRAINED))}")
    return path, None


def load_weights(source: str | Path) -> nn.Module:
    """A ready-to-use model (eval mode, on CPU) from a weights file or a named weight set.

    The model gets ``.preprocessing`` (a :class:`Preprocessing`; ``.transforms()`` builds the input
    pipeline) and ``.class_names``. Named weights: see :func:`squeezenet.weights.list_pretrained`.
    """
    path, named_pre = resolve_weights(source)
    weights = read_weights_file(path)
    if named_pre is not None and weights.meta.preprocessing is None:
        weights.meta.preprocessing = named_pre
    return build_model(weights, str(source))


def save_weights(model: nn.Module, path: str | Path, *, source: str | None = None) -> Path:
    """Write a model's weights with its architecture, preprocessing and class names (format by extension)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("save_weights needs a model built by this toolkit (it has no .config)")
    meta = WeightsMeta(
        config=config.to_dict(),
        preprocessing=getattr(model, "preprocessing", None) or default_preprocessing(config.to_dict()),
        classes=getattr(model, "class_names", None),
        source=source,
    )
    return write_weights_file(path, _canonical_order(effective_state_dict(model), config.to_dict()), meta)


def _canonical_order(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """The keys in the order a freshly built model has them: removing a parametrization re-registers the
    weight after the bias, and files of the same weights should not depend on such history."""
    with torch.device("meta"):
        rank = {key: i for i, key in enumerate(model_from_config(config).state_dict())}
    return dict(sorted(state.items(), key=lambda item: rank.get(item[0], len(rank))))


def convert_weights(src: str | Path, dst: str | Path) -> Path:
    """Re-encode weights in another format (by extension), keeping architecture and preprocessing.

    The tensors are copied as they are, so a round trip is bit-exact.
    """
    path, named_pre = resolve_weights(src)
    weights = read_weights_file(path)
    model = build_model(weights, str(src))  # validates tensors against the architecture
    if named_pre is not None and weights.meta.preprocessing is None:
        model.preprocessing = named_pre
    meta = WeightsMeta(config=model.config.to_dict(), preprocessing=model.preprocessing,
                       classes=weights.meta.classes, source=weights.meta.source or Path(path).name)
    return write_weights_file(dst, weights.state_dict, meta)
