"""The contract every model the toolkit hands out keeps: one typed :class:`ModelMeta`.

A model's ``meta`` says what it is (the architecture ``config``), how to feed it (``preprocessing``), what its
outputs mean (``classes``) and where it came from (``source``): timm's ``pretrained_cfg`` and torchvision's
``Weights.meta`` in one object. Files we write store ``meta.to_dict()``; loading one gives the same meta back;
an exported ONNX file carries it too (:class:`squeezenet.deploy.OnnxModel` reads it back). Code that runs
models (``predict``, ``evaluate``, ``Classifier``) needs nothing else than :class:`InferenceModel`: a
``meta`` and a call from a preprocessed batch to logits. Code that changes them (``export``, ``compress``,
``train``) takes a :class:`Network`, the ``nn.Module`` base of our networks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..common.imagenet import imagenet_names
from ..errors import SqueezeNetError, brief
from .archs import config_from_dict
from .config import SqueezeNetConfig
from .preprocessing import CAFFE, CIFAR, TORCHVISION, Preprocessing

META_VERSION = 1
MAX_ACTIVATION_BYTES = 1 << 29  # one image's largest feature map (v1.0 at 227: 4.7 MB); 512 MB is 2 GB at batch 4
MAX_NAME_CHARS = 1000  # a class name or a source; ImageNet's longest name has 96 characters


class ArchConfig(Protocol):
    """What every architecture config (``SqueezeNetConfig``, ``AlexNetConfig``) offers."""

    @property
    def arch(self) -> str: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def in_chans(self) -> int: ...
    @property
    def task(self) -> str: ...
    def output_shape(self) -> tuple[int, ...]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def num_parameters(self) -> int: ...
    def largest_activation(self, size: int) -> int: ...


def default_preprocessing(config: ArchConfig) -> Preprocessing:
    """For weights that do not say: Caffe's for Caffe-compatible v1.0 (conv10 pad=1), 32x32 CIFAR's for
    small-stem models (a 3x3/1 stem without max-pool: fed 224 crops they would run, and answer wrongly),
    torchvision's otherwise."""
    own = getattr(config, "preprocessing", None)
    if callable(own):  # an architecture whose statistics are its own (torchvision's SSDLite on MobileNetV3)
        return own()
    if config.task in ("detect", "segment"):  # the body's statistics, the whole image warped to the square input
        body = default_preprocessing(config.backbone)  # type: ignore[attr-defined]
        size = config.image_size  # type: ignore[attr-defined]
        return replace(body, name=f"{body.name}-{config.task}", resize=size, crop=size, resize_mode="square")
    if isinstance(config, SqueezeNetConfig):
        if config.classifier_padding == 1:
            return CAFFE
        if config.stem.stride == 1 and not config.stem.pool:
            return CIFAR
    return TORCHVISION


def default_classes(num_classes: int) -> tuple[str, ...]:
    """ImageNet's class names for 1000-class models (every published SqueezeNet), ``class i`` otherwise."""
    return imagenet_names() if num_classes == 1000 else tuple(f"class {i}" for i in range(num_classes))


@dataclass(frozen=True)
class ModelMeta:
    """Architecture, preprocessing, class names and origin of a model; immutable (derive with :meth:`replace`)."""

    config: ArchConfig
    preprocessing: Preprocessing
    classes: tuple[str, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        classes = tuple(self.classes)
        object.__setattr__(self, "classes", classes)
        if len(classes) != self.config.num_classes:
            raise SqueezeNetError(f"{len(classes)} class names for a {self.config.num_classes}-class model")
        if not all(isinstance(c, str) and len(c) <= MAX_NAME_CHARS for c in classes):
            raise SqueezeNetError(f"class names must be strings of at most {MAX_NAME_CHARS:,} characters")
        if self.source is not None and not (isinstance(self.source, str) and len(self.source) <= MAX_NAME_CHARS):
            raise SqueezeNetError(f"source must be a string of at most {MAX_NAME_CHARS:,} characters, got {brief(self.source)}")
        crop = self.preprocessing.crop
        largest = self.config.largest_activation(crop)
        if largest == 0:
            raise SqueezeNetError(f"a {crop}x{crop} input is too small for this architecture: a feature map vanishes")
        if 4 * largest > MAX_ACTIVATION_BYTES:
            raise SqueezeNetError(f"a {crop}x{crop} input makes a {4 * largest / 2**20:,.0f} MB "
                                  f"feature map in this architecture (at most {MAX_ACTIVATION_BYTES >> 20} MB per image)")

    @classmethod
    def default(cls, config: ArchConfig, source: str | None = None) -> ModelMeta:
        """What a freshly built model says about itself: default preprocessing and class names."""
        return cls(config, default_preprocessing(config), default_classes(config.num_classes), source)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def task(self) -> str:
        """``classify`` or ``detect``: what the outputs mean, and so which loss, metric and decoder apply."""
        return self.config.task

    def replace(self, **changes: Any) -> ModelMeta:
        """A copy with some fields changed (and checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, as files store it."""
        return {"version": META_VERSION, "config": self.config.to_dict(), "preprocessing": self.preprocessing.to_dict(),
                "classes": list(self.classes), "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "metadata") -> ModelMeta:
        """The inverse of :meth:`to_dict`; every field is checked (``SqueezeNetError`` naming ``where``)."""
        if not isinstance(data, Mapping):
            raise SqueezeNetError(f"{where}: metadata must be a JSON object")
        version = data.get("version", META_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= META_VERSION:
            raise SqueezeNetError(f"{where}: metadata version {brief(version)}; this squeezenet reads 1 to {META_VERSION}")
        config = config_from_dict(data.get("config"), where)
        pre = data.get("preprocessing")
        classes = data.get("classes")
        if classes is not None and not (isinstance(classes, Sequence) and not isinstance(classes, str)):
            raise SqueezeNetError(f"{where}: classes must be a list of strings")
        source = data.get("source")
        try:
            return cls(config, Preprocessing.from_dict(pre, f"{where}: preprocessing") if pre else default_preprocessing(config),
                       tuple(classes) if classes is not None else default_classes(config.num_classes),
                       source if isinstance(source, str) else None)
        except SqueezeNetError as exc:  # name the file once, whether or not the check did
            raise SqueezeNetError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


@runtime_checkable
class InferenceModel(Protocol):
    """What running a model needs: its :class:`ModelMeta`, and a call from a preprocessed float batch
    (N x C x crop x crop, on :func:`input_device`) to logits (N x num_classes). Our networks and
    :class:`squeezenet.deploy.OnnxModel` both satisfy it."""

    @property
    def meta(self) -> ModelMeta: ...
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...
    def eval(self) -> Any: ...


def input_device(model: InferenceModel) -> torch.device:
    """Where a model's inputs go: the device of its first parameter for PyTorch models, else the CPU."""
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.device
    return torch.device("cpu")


class Network(nn.Module):
    """The ``nn.Module`` base of the toolkit's networks (SqueezeNet, AlexNet): they carry ``meta``, whose
    ``config`` rebuilds them (:func:`squeezenet.models.model_from_config`), and ``layer_names``, the paper's
    layer names mapped to module paths."""

    meta: ModelMeta
    layer_names: dict[str, list[str]]

    @property
    def config(self) -> Any:
        """The architecture config (``meta.config``)."""
        return self.meta.config

    @property
    def num_classes(self) -> int:
        return self.meta.config.num_classes

    def get_classifier(self) -> nn.Conv2d | nn.Linear:
        """The last layer (conv10 for SqueezeNet, fc8 for AlexNet)."""
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh last layer with ``num_classes`` outputs; the class names go back to their defaults."""
        raise NotImplementedError
