"""Training segmenters: per-pixel cross-entropy (ignored pixels left out), and the LightningModule that reports mIoU.

Validation scores the masks at the network's input side (the image warped to S x S, the mask with it, nearest):
what training can afford every epoch. ``squeezenet eval`` scores at each image's own size (logits resized back), the
figure to report.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from ..common.confusion import segmentation_scores
from ..data.masks import IGNORE_INDEX, resolve_masks
from ..data.segmentation import SegmentationDataset
from ..models import Network
from .dense import DenseSetup, check_augment, model_for_data, recipe_for_model, select_data
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


def segmentation_setup(recipe: Recipe, data: str, model: Network | None) -> DenseSetup:
    """Masks from ``data`` (see :func:`squeezenet.data.masks.resolve_masks`) and the segmenter to train on them: the
    recipe's model with the data's classes and the body from ``recipe.backbone_weights``; or ``model`` (fine-tuning),
    whose classes must be the data's. The body's input statistics become the recipe's."""
    train_masks, val_masks = resolve_masks(data)
    check_augment(recipe, "segment")
    own = list(model.meta.classes) if model is not None else None
    train_masks, val_masks = select_data(recipe, train_masks, val_masks,
                                         own[1:] if own and own != train_masks.classes else None)
    model = model_for_data(recipe, data, train_masks.classes, train_masks.name, "segment", model)
    augment = recipe.data.augment if recipe.data.augment in ("segment", "flip") else "none"
    recipe = recipe_for_model(recipe, model)
    size = recipe.data.image_size
    return DenseSetup(model, recipe, SegmentationDataset(train_masks, size, augment, recipe.seed),
                      SegmentationDataset(val_masks, size, "none"), train_masks.classes,
                      train_masks.name.removesuffix("-train"))
