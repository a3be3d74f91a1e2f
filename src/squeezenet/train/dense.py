"""What training a detector and a segmenter share: the model built for the data's classes (ImageNet body loaded),
the recipe given that body's input statistics, subsets of the data, and the setup ``train()`` receives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import torch

from ..data.detection import DetectionDataset
from ..data.segmentation import SegmentationDataset
from ..errors import SqueezeNetError
from ..models import Network, create_model
from ..weights import load_backbone
from .recipe import Recipe


@dataclass
class DenseSetup:
    """What ``train()`` needs to train a detector or a segmenter: the model (body loaded), the recipe with the
    body's input statistics, both datasets and the class names."""

    model: Network
    recipe: Recipe
    train: DetectionDataset | SegmentationDataset
    val: DetectionDataset | SegmentationDataset
    classes: list[str]
    name: str


class _Samples(Protocol):
    name: str

    def __len__(self) -> int: ...
    def subset(self, indices: Sequence[int], name: str) -> Any: ...


S = TypeVar("S", bound=_Samples)


class _Selectable(_Samples, Protocol):
    def only(self, names: Sequence[str]) -> Any: ...


L = TypeVar("L", bound=_Selectable)


def select_data(recipe: Recipe, train: L, val: L, model_classes: Sequence[str] | None = None) -> tuple[L, L]:
    """The recipe's ``data.classes`` of both sets (all when null; a model being fine-tuned on data with more
    classes than its own, ``model_classes``, selects those), then its ``limit_train``/``limit_val``."""
    names = recipe.data.classes or model_classes
    if names:
        train, val = train.only(names), val.only(names)
    return (limit_samples(train, recipe.data.limit_train, recipe.seed),
            limit_samples(val, recipe.data.limit_val, recipe.seed))


def limit_samples(samples: S, n: int | None, seed: int) -> S:
    """A seeded random ``n`` of a box or mask set (``data.limit_train``/``limit_val``), kept in their order."""
    if n is None or n >= len(samples):
        return samples
    keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    return samples.subset(keep, samples.name)


def check_augment(recipe: Recipe, task: str) -> None:
    if recipe.data.augment not in (task, "flip", "none"):
        raise SqueezeNetError(f"recipe {recipe.name}: data.augment {recipe.data.augment} is not for this task; "
                              f"a {task} model takes {task}, flip or none")


def model_for_data(recipe: Recipe, data: str, classes: list[str], data_name: str, task: str, model: Network | None,
                   fit: Callable[[Network], Network] | None = None) -> Network:
    """The recipe's model built for ``classes`` at the recipe's input side (``fit`` may rebuild it for the data:
    SqueezeDet's anchors), with the body of ``recipe.backbone_weights``; or ``model`` (fine-tuning), whose classes
    must be the data's."""
    if model is not None:
        if list(model.meta.classes) != classes:
            raise SqueezeNetError(f"{data}: its {len(classes)} classes are not the model's ({model.meta.num_classes})")
        return model
    built = create_model(recipe.model, **{**recipe.model_options, "num_classes": len(classes),
                                          "image_size": recipe.data.image_size})
    if built.meta.task != task:
        raise SqueezeNetError(f"recipe {recipe.name}: {recipe.model} is a {built.meta.task} model; this data trains "
                              f"a {task} model")
    if fit is not None:
        built = fit(built)
    if recipe.backbone_weights:
        load_backbone(built, recipe.backbone_weights)
    built.meta = built.meta.replace(classes=tuple(classes), source=f"squeezenet train {recipe.name} on {data_name}"
                                    + (f" ({built.meta.source})" if built.meta.source else ""))
    return built


def recipe_for_model(recipe: Recipe, model: Network) -> Recipe:
    """The recipe with the model's input statistics (its body's weights decided them); a random body learns at the
    head's rate."""
    p = model.meta.preprocessing
    if not recipe.backbone_weights:
        recipe = replace(recipe, optimizer=replace(recipe.optimizer, backbone_lr=1.0))
    return replace(recipe, data=replace(recipe.data, image_size=p.crop, resize=p.crop, resize_mode="square",
                                        mean=p.mean, std=p.std, channel_order=p.channel_order,
                                        value_range=p.value_range))
