"""Training segmenters: per-pixel cross-entropy (ignored pixels left out), and the LightningModule that reports mIoU.

Validation scores the masks at the network's input side (the image warped to S x S, the mask with it, nearest):
what training can afford every epoch. ``squeezenet eval`` scores at each image's own size (logits resized back), the
figure to report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from ..common.confusion import segmentation_scores
from ..data.masks import IGNORE_INDEX, resolve_masks
from ..data.segmentation import SegmentationDataset
from ..errors import SqueezeNetError
from ..models import Network, create_model
from ..weights import load_backbone
from .detection import limit_samples
from .module import RecipeModule
from .recipe import Recipe


class SegmenterModule(RecipeModule):
    """Trains a segmenter (``N x K x S x S`` logits) on masks; validation accumulates the confusion matrix
    (torchmetrics, synced across processes) and logs ``val/miou`` and ``val/pixel_acc``; the best epoch is the best
    mIoU."""

    monitor = "val/miou"
    summary = (("val mIoU", "val/miou"), ("pixel acc", "val/pixel_acc"))
    results = {"miou": "val/miou", "pixel_acc": "val/pixel_acc"}

    def __init__(self, model: nn.Module, recipe: Recipe, channels_last: bool = True):
        super().__init__(model, recipe, channels_last)
        classes = int(model.config.num_classes)  # type: ignore[union-attr, arg-type]
        self.val_confusion = MulticlassConfusionMatrix(classes, ignore_index=IGNORE_INDEX)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, masks, index, skipped = batch
        self.skipped_images += len(skipped)
        x = self.normalise(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, masks

    def training_step(self, batch, batch_idx: int):
        x, masks = batch
        if x.shape[0] == 0:
            return None  # every image of this batch was unreadable
        loss = F.cross_entropy(self.model(x).float(), masks, ignore_index=IGNORE_INDEX)
        rate = self.count_images(x.shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log("img/s", rate, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, masks = batch
        if x.shape[0] == 0:
            return
        logits = self.model(x).float()
        self.log("val/loss", F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX), on_epoch=True, sync_dist=True,
                 batch_size=x.shape[0])
        self.val_confusion.update(logits.argmax(1), masks)

    def on_validation_epoch_end(self) -> None:
        scores = segmentation_scores(self.val_confusion.compute())
        self.val_confusion.reset()
        self.log("val/miou", float(scores["miou"]), prog_bar=True, sync_dist=True)
        self.log("val/pixel_acc", float(scores["pixel_accuracy"]), sync_dist=True)


@dataclass
class SegmentationSetup:
    """What ``train()`` needs to train a segmenter: the model (body loaded), the recipe with the body's input
    statistics, both datasets and the class names."""

    model: Network
    recipe: Recipe
    train: SegmentationDataset
    val: SegmentationDataset
    classes: list[str]
    name: str


def segmentation_setup(recipe: Recipe, data: str, model: Network | None) -> SegmentationSetup:
    """Masks from ``data`` (see :func:`squeezenet.data.masks.resolve_masks`) and the segmenter to train on them: the
    recipe's model with the data's classes and the body from ``recipe.backbone_weights``; or ``model`` (fine-tuning),
    whose classes must be the data's. The body's input statistics become the recipe's."""
    train_masks, val_masks = resolve_masks(data)
    d = recipe.data
    if d.augment not in ("segment", "flip", "none"):
        raise SqueezeNetError(f"recipe {recipe.name}: data.augment {d.augment} is not for segmenters; they take "
                              "segment, flip or none")
    train_masks = limit_samples(train_masks, d.limit_train, recipe.seed)
    val_masks = limit_samples(val_masks, d.limit_val, recipe.seed)
    classes = train_masks.classes
    if model is None:
        built = create_model(recipe.model, **{**recipe.model_options, "num_classes": len(classes),
                                              "image_size": d.image_size})
        if built.meta.task != "segment":
            raise SqueezeNetError(f"recipe {recipe.name}: {recipe.model} is not a segmenter; masks train segmenters "
                                  "(lraspp_squeezenet, squeezeseg)")
        if recipe.backbone_weights:
            load_backbone(built, recipe.backbone_weights)
        built.meta = built.meta.replace(classes=tuple(classes),
                                        source=f"squeezenet train {recipe.name} on {train_masks.name}"
                                               + (f" ({built.meta.source})" if built.meta.source else ""))
        model = built
    elif list(model.meta.classes) != classes:
        raise SqueezeNetError(f"{data}: its {len(classes)} classes are not the model's {model.meta.num_classes}")
    p = model.meta.preprocessing
    if not recipe.backbone_weights:  # a random body learns at the head's rate
        recipe = replace(recipe, optimizer=replace(recipe.optimizer, backbone_lr=1.0))
    recipe = replace(recipe, data=replace(d, image_size=p.crop, resize=p.crop, resize_mode="square", mean=p.mean,
                                          std=p.std, channel_order=p.channel_order, value_range=p.value_range))
    augment = d.augment if d.augment in ("segment", "flip") else "none"
    return SegmentationSetup(model, recipe, SegmentationDataset(train_masks, p.crop, augment, recipe.seed),
                             SegmentationDataset(val_masks, p.crop, "none"), classes,
                             train_masks.name.removesuffix("-train"))

