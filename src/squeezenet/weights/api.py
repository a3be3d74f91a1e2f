"""Load, save and convert weights: a model comes back with its :class:`~squeezenet.models.ModelMeta`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import SqueezeNetError
from ..models import FeatureExtractor, Network, SqueezeNetConfig, effective_state_dict, get_model_entry, model_from_config
from ..models import create_model as build_fresh
from .files import READ_FORMATS, WeightsFile, check_tensors, encode_sqz_file, read_weights_file, sqz_bytes, write_weights_file
from .pretrained import PRETRAINED, default_pretrained, fetch_pretrained


def build_model(weights: WeightsFile, where: str) -> Network:
    """Model for a weights file: rebuilt from its meta's config, weights loaded strictly, eval mode. Names, shapes
    and values are checked before the model is built (a file's claims cost no memory until they hold)."""
    check_tensors(weights.meta, weights.state_dict, where)
    for key, tensor in weights.state_dict.items():
        if not tensor.is_floating_point() and key.endswith(("weight", "bias")):
            raise SqueezeNetError(f"{where}: {key} is {str(tensor.dtype).removeprefix('torch.')}, not floating point")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SqueezeNetError(f"{where}: {key} holds NaN or infinite values (a damaged file)")
    model: Network = model_from_config(weights.meta.config)
    try:
        model.load_state_dict(weights.state_dict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise SqueezeNetError(f"{where}: weights do not match the {weights.meta.config.arch} architecture "
                              f"({detail[:300]})") from None
    model.meta = weights.meta
    return model.eval()


def _read(source: str | Path) -> WeightsFile:
    """The weights file for a path or a named weight set (fetched into the torch hub cache); named weights'
    preprocessing applies where the file itself does not say."""
    if isinstance(source, str) and source in PRETRAINED:
        named = PRETRAINED[source]
        weights = read_weights_file(fetch_pretrained(source))
        if not weights.described:
            weights.meta = weights.meta.replace(preprocessing=named.preprocessing, source=source)
        return weights
    path = Path(source)
    if not path.exists() and path.suffix.lower() not in READ_FORMATS:
        raise SqueezeNetError(f"{str(source)!r} is neither a weights file ({', '.join(READ_FORMATS)}) nor one of the "
                              f"named weight sets: {', '.join(sorted(PRETRAINED))}")
    return read_weights_file(path)


def load_weights(source: str | Path) -> Network:
    """A ready-to-use model (eval mode, on CPU) from a weights file or a named weight set.

    The model's ``meta`` holds its preprocessing (``meta.preprocessing.transforms()`` builds the input
    pipeline) and class names. Named weights: see :func:`squeezenet.weights.list_pretrained`.
    """
    return build_model(_read(source), str(source))


def save_weights(model: Network, path: str | Path, *, source: str | None = None, max_bytes: int | None = None) -> Path:
    """Write a model's weights with its meta (architecture, preprocessing, class names); format by extension.
    Parametrized models (pruning masks, shared weights) are saved as the plain weights they compute with.
    ``max_bytes`` (``.sqz`` only): refuse, writing nothing, if the file would be larger."""
    meta = model.meta if source is None else model.meta.replace(source=source)
    state = _canonical_order(effective_state_dict(model), meta.config)
    if max_bytes is not None:
        size = len(sqz_bytes(state, meta))
        if size > max_bytes:
            raise SqueezeNetError(f"{path}: the file would be {size:,} bytes, more than max_bytes={max_bytes:,}; "
                                  "nothing written")
    return write_weights_file(path, state, meta)


def sqz_size(model: Network) -> int:
    """Bytes of the ``.sqz`` file :func:`save_weights` would write for this model."""
    return len(sqz_bytes(_canonical_order(effective_state_dict(model), model.meta.config), model.meta))


def sqz_tensor_bytes(model: Network) -> tuple[int, dict[str, float]]:
    """That size, and the bytes each tensor takes in the file (keyed by state_dict key)."""
    data, per_tensor = encode_sqz_file(_canonical_order(effective_state_dict(model), model.meta.config), model.meta)
    return len(data), per_tensor


def _canonical_order(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """The keys in the order a freshly built model has them: removing a parametrization re-registers the
    weight after the bias, and files of the same weights should not depend on such history."""
    with torch.device("meta"):
        rank = {key: i for i, key in enumerate(model_from_config(config).state_dict())}
    return dict(sorted(state.items(), key=lambda item: rank.get(item[0], len(rank))))


def convert_weights(src: str | Path, dst: str | Path) -> Path:
    """Re-encode weights in another format (by extension), keeping their meta.

    The tensors are copied as they are, so a round trip is bit-exact.
    """
    weights = _read(src)
    build_model(weights, str(src))  # validates the tensors against the architecture
    meta = weights.meta if weights.meta.source else weights.meta.replace(source=Path(str(src)).name)
    return write_weights_file(dst, weights.state_dict, meta)




def create_model(name: str, *, pretrained: bool = False, weights: str | Path | None = None,
                 features_only: bool = False, out_indices: Sequence[int] | None = None, **kwargs: Any) -> Any:
    """Build a registered model, optionally with weights, as timm's and torchvision's ``create_model`` do.

    ``pretrained=True`` loads the model's default published weights (``squeezenet1_1`` ->
    ``squeezenet1_1.tv_in1k``); ``weights=`` names a weight set or a file. With weights, ``num_classes`` other
    than the weights' replaces the classifier (for fine-tuning) and ``dropout`` is set; options that would
    change other layers are refused. ``features_only`` returns the backbone's feature maps, as without weights.
    Without weights this is :func:`squeezenet.models.create_model`.
    """
    if pretrained and weights is None:
        weights = default_pretrained(name)
    if weights is None:
        return build_fresh(name, features_only=features_only, out_indices=out_indices, **kwargs)
    with torch.device("meta"):
        expected = build_fresh(name, **kwargs).config  # the registry checks the option names
    defaults = get_model_entry(name).options()
    shaping = [k for k in kwargs if k not in ("num_classes", "dropout") and kwargs[k] != defaults[k]]
    if shaping:
        raise SqueezeNetError(f"{', '.join(shaping)} would change the layers of the pretrained {name}; build it "
                              "without weights, or load weights that have those layers")
    model = load_weights(weights)
    loaded = model.config
    if getattr(loaded, "arch", None) != expected.arch or _body(loaded) != _body(expected):
        raise SqueezeNetError(f"{weights} holds another network than {name} (see `squeezenet info {weights}`)")
    num_classes = kwargs.get("num_classes", model.num_classes)
    if num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    if "dropout" in kwargs:
        model.meta = model.meta.replace(config=replace(model.config, dropout=kwargs["dropout"]))
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = kwargs["dropout"]
    if features_only:
        return FeatureExtractor(model.features, model.feature_info, out_indices)  # type: ignore[arg-type]
    return model


def _body(config: Any) -> Any:
    """A config without the fields that do not decide which weights fit (classifier size, dropout, conv10 pad)."""
    changes: dict[str, Any] = {"num_classes": 1000, "dropout": 0.5}
    if hasattr(config, "classifier_padding"):
        changes["classifier_padding"] = 0
    return replace(config, **changes)


def load_backbone(detector: Network, source: str | Path) -> Network:
    """Put an ImageNet-trained body under a detector (SqueezeDet, SSDLite) or a segmenter (LR-ASPP, SqueezeSeg): any
    classification weights this toolkit reads (a named weight set, the Deep Compression ``.net``, torchvision's
    ``.pth``, our files).

    The body's layers must be the model's (same SqueezeNet version and batch-norm setting); its preprocessing
    statistics (channel order, value range, mean, std) become the model's, at the model's input size."""
    task = detector.meta.task
    if task not in ("detect", "segment"):
        raise SqueezeNetError("backbone weights are for detectors and segmenters; a classifier loads whole weights "
                              "(weights=)")
    body = getattr(detector.config, "backbone", None)
    if not isinstance(body, SqueezeNetConfig):
        raise SqueezeNetError(f"{detector.meta.config.arch} has no SqueezeNet body to load ImageNet weights into")
    weights = _read(source)
    where = str(source)
    if weights.meta.task != "classify" or not isinstance(weights.meta.config, SqueezeNetConfig):
        raise SqueezeNetError(f"{where}: not SqueezeNet classification weights (a backbone comes from an ImageNet model)")
    if _body(weights.meta.config) != _body(body):
        raise SqueezeNetError(f"{where}: its layers are not this detector's body (SqueezeNet "
                              f"{'v1.0' if body.stem.kernel_size == 7 else 'v1.1'}, batch_norm={body.batch_norm}); "
                              "choose body= to match it")
    own = detector.state_dict()
    mapped = {"backbone." + k.removeprefix("features."): v for k, v in weights.state_dict.items()
              if k.startswith("features.") and "backbone." + k.removeprefix("features.") in own}
    missing = [k for k in own if k.startswith("backbone.") and k not in mapped]
    if missing:
        raise SqueezeNetError(f"{where}: no weights for {len(missing)} body tensors (first: {missing[0]})")
    detector.load_state_dict(mapped, strict=False)
    size = detector.meta.preprocessing.crop
    stats = weights.meta.preprocessing
    detector.meta = detector.meta.replace(
        preprocessing=replace(stats, name=f"{stats.name}-{task}", resize=size, crop=size, resize_mode="square"),
        source=f"body from {Path(where).name}")
    return detector
