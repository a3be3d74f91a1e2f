"""Training detectors: SSD's matching and loss over our anchors, and the LightningModule that reports COCO mAP.

The loss is torchvision's SSD loss (``SSD.compute_loss``) on the one-tensor outputs of
:class:`squeezenet.models.Detector`: anchors matched to boxes by IoU >= 0.5 (every box also takes its best anchor:
``SSDMatcher``), smooth-L1 on the box deltas of matched anchors, cross-entropy over background + classes with hard
negatives at 3 per positive; both summed over images and divided by the number of matched anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import box_iou

from ..data.boxes import resolve_boxes
from ..data.detection import DetectionDataset
from ..errors import SqueezeNetError
from ..models import Network, create_model, model_from_config
from ..models.detector import box_coder, decode_detections, fit_anchor_shapes
from ..weights import load_backbone
from .module import RecipeModule
from .recipe import Recipe


def _mean_over_processes(count: int, device: torch.device) -> float:
    """``count`` averaged over the processes of a distributed run (itself when alone). Dividing each process's loss
    sum by the mean count of matched anchors (DETR's ``num_boxes``) makes DDP's gradient average equal one process's
    gradient of the whole batch: each process dividing by its own count would weight its images by how many anchors
    they happened to match."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return float(count)
    total = torch.tensor(float(count), device=device)
    torch.distributed.all_reduce(total)
    return float(total) / torch.distributed.get_world_size()


class DetectionLoss(nn.Module):
    """``{"boxes": smooth-L1, "classes": cross-entropy}`` of ``N x A x (4 + 1 + C)`` outputs against targets
    (``boxes`` in input pixels, ``labels`` 1-based), both divided by the number of matched anchors (averaged over the
    processes of a distributed run: :func:`_mean_over_processes`)."""

    def __init__(self, anchors: torch.Tensor, iou_threshold: float = 0.5, negatives_per_positive: float = 3.0):
        super().__init__()
        self.anchors: torch.Tensor
        self.register_buffer("anchors", anchors, persistent=False)
        self.matcher = det_utils.SSDMatcher(iou_threshold)
        self.coder = box_coder()
        self.negatives_per_positive = negatives_per_positive

    def forward(self, outputs: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        deltas, logits = outputs[..., :4].float(), outputs[..., 4:].float()
        anchors = self.anchors.to(outputs.device)
        box_losses, class_targets, positives = [], [], 0
        for n, target in enumerate(targets):
            if target["boxes"].numel() == 0:
                matched = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=outputs.device)
            else:
                matched = self.matcher(box_iou(target["boxes"], anchors))
            fg = torch.where(matched >= 0)[0]
            positives += fg.numel()
            wanted = self.coder.encode_single(target["boxes"][matched[fg]], anchors[fg])
            box_losses.append(F.smooth_l1_loss(deltas[n, fg], wanted, reduction="sum"))
            classes = torch.zeros(anchors.shape[0], dtype=torch.int64, device=outputs.device)
            classes[fg] = target["labels"][matched[fg]]
            class_targets.append(classes)
        labels = torch.stack(class_targets)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").view_as(labels)
        foreground = labels > 0
        negatives = self.negatives_per_positive * foreground.sum(1, keepdim=True)
        ranked = ce.clone()
        ranked[foreground] = -float("inf")
        order = ranked.sort(1, descending=True)[1]
        hard = order.sort(1)[1] < negatives  # the hardest background anchors, 3 per positive
        scale = max(1.0, _mean_over_processes(positives, outputs.device))
        return {"boxes": torch.stack(box_losses).sum() / scale, "classes": (ce[foreground].sum() + ce[hard].sum()) / scale}


class DetectorModule(RecipeModule):
    """Trains a :class:`squeezenet.models.Detector`; validation decodes and scores with COCO mAP (torchmetrics with
    pycocotools), logged as ``val/map`` and ``val/map50``; the best epoch is the best mAP@0.5."""

    monitor = "val/map50"
    summary = (("val mAP@.5", "val/map50"), ("mAP", "val/map"))
    results = {"map50": "val/map50", "map": "val/map"}

    def __init__(self, model: nn.Module, recipe: Recipe, channels_last: bool = True):
        super().__init__(model, recipe, channels_last)
        self.criterion = DetectionLoss(model.anchors)  # type: ignore[arg-type]
        self.size = int(model.config.image_size)  # type: ignore[union-attr, arg-type]
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, targets, index, skipped = batch
        self.skipped_images += len(skipped)
        x = self.normalise(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, targets

    def training_step(self, batch, batch_idx: int):
        x, targets = batch
        if x.shape[0] == 0:
            return None  # every image of this batch was unreadable
        losses = self.criterion(self.model(x), targets)
        loss = losses["boxes"] + losses["classes"]
        rate = self.count_images(x.shape[0])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train/box_loss", losses["boxes"], on_step=False, on_epoch=True, batch_size=x.shape[0])
        self.log("train/class_loss", losses["classes"], on_step=False, on_epoch=True, batch_size=x.shape[0])
        self.log("img/s", rate, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, targets = batch
        if x.shape[0] == 0:
            return
        outputs = self.model(x)
        losses = self.criterion(outputs, targets)
        self.log("val/loss", losses["boxes"] + losses["classes"], on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        found = decode_detections(outputs.detach(), self.model.anchors, self.size)  # type: ignore[arg-type]
        self.val_map.update([{**f, "labels": f["labels"] + 1} for f in found], targets)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_map.compute()
        self.val_map.reset()
        self.log("val/map50", float(scores["map_50"]), prog_bar=True, sync_dist=True)
        self.log("val/map", float(scores["map"]), sync_dist=True)


@dataclass
class DetectionSetup:
    """What ``train()`` needs to train a detector: the model (anchors fitted, body loaded), the recipe with the
    body's input statistics, both datasets and the class names."""

    model: Network
    recipe: Recipe
    train: DetectionDataset
    val: DetectionDataset
    classes: list[str]
    name: str


class _Samples(Protocol):
    name: str

    def __len__(self) -> int: ...
    def subset(self, indices: Sequence[int], name: str) -> Any: ...


S = TypeVar("S", bound=_Samples)


def limit_samples(samples: S, n: int | None, seed: int) -> S:
    """A seeded random ``n`` of a box or mask set (``data.limit_train``/``limit_val``), kept in their order."""
    if n is None or n >= len(samples):
        return samples
    keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    return samples.subset(keep, samples.name)


def detection_setup(recipe: Recipe, data: str, model: Network | None) -> DetectionSetup:
    """Boxes from ``data`` (see :func:`squeezenet.data.boxes.resolve_boxes`), and the detector to train on them: the
    recipe's model with the data's classes, ConvDet anchors fitted to the training boxes (k-means, seeded: the
    same on a resumed run), the body from ``recipe.backbone_weights``; or ``model`` (fine-tuning), whose classes
    must be the data's. The recipe's input statistics become the model's (the body's weights decide them)."""
    train_boxes, val_boxes = resolve_boxes(data)
    d = recipe.data
    if d.augment not in ("detect", "flip", "none"):
        raise SqueezeNetError(f"recipe {recipe.name}: data.augment {d.augment} is for classifiers; detectors take "
                              "detect, flip or none")
    train_boxes = limit_samples(train_boxes, d.limit_train, recipe.seed)
    val_boxes = limit_samples(val_boxes, d.limit_val, recipe.seed)
    classes = train_boxes.classes
    if model is None:
        options = {**recipe.model_options, "num_classes": len(classes), "image_size": d.image_size}
        built = create_model(recipe.model, **options)
        config = built.config
        if config.head == "convdet":
            shapes = fit_anchor_shapes(train_boxes.box_sizes(), k=len(config.anchors), seed=recipe.seed)
            built = model_from_config(replace(config, anchors=shapes))
        if recipe.backbone_weights:
            load_backbone(built, recipe.backbone_weights)
        built.meta = built.meta.replace(classes=tuple(classes),
                                        source=f"squeezenet train {recipe.name} on {train_boxes.name}"
                                               + (f" ({built.meta.source})" if built.meta.source else ""))
        model = built
    elif list(model.meta.classes) != classes:
        raise SqueezeNetError(f"{data}: its {len(classes)} classes are not the model's ({model.meta.num_classes})")
    p = model.meta.preprocessing
    if not recipe.backbone_weights:  # a random body learns at the head's rate
        recipe = replace(recipe, optimizer=replace(recipe.optimizer, backbone_lr=1.0))
    recipe = replace(recipe, data=replace(d, image_size=p.crop, resize=p.crop, resize_mode="square", mean=p.mean,
                                          std=p.std, channel_order=p.channel_order, value_range=p.value_range))
    size = p.crop
    augment = d.augment if d.augment in ("detect", "flip") else "none"
    return DetectionSetup(model, recipe, DetectionDataset(train_boxes, size, augment, recipe.seed),
                          DetectionDataset(val_boxes, size, "none"), classes, train_boxes.name.removesuffix("-train"))
