"""Training detectors: SSD's matching and loss over our anchors, and the LightningModule that reports COCO mAP.

The loss is torchvision's SSD loss (``SSD.compute_loss``) on the one-tensor outputs of
:class:`squeezenet.models.Detector`: anchors matched to boxes by IoU >= 0.5 (every box also takes its best anchor:
``SSDMatcher``), smooth-L1 on the box deltas of matched anchors, cross-entropy over background + classes with hard
negatives at 3 per positive; both summed over images and divided by the number of matched anchors.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import box_iou

from ..data.boxes import resolve_boxes
from ..data.detection import DetectionDataset
from ..models import Network, model_from_config
from ..models.detector import box_coder, decode_detections, fit_anchor_shapes
from .dense import DenseSetup, check_augment, model_for_data, recipe_for_model, select_data
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


def detection_setup(recipe: Recipe, data: str, model: Network | None) -> DenseSetup:
    """Boxes from ``data`` (see :func:`squeezenet.data.boxes.resolve_boxes`), and the detector to train on them: the
    recipe's model with the data's classes, ConvDet anchors fitted to the training boxes (k-means, seeded: the
    same on a resumed run), the body from ``recipe.backbone_weights``; or ``model`` (fine-tuning), whose classes
    must be the data's. The recipe's input statistics become the model's (the body's weights decide them)."""
    train_boxes, val_boxes = resolve_boxes(data)
    check_augment(recipe, "detect")
    own = list(model.meta.classes) if model is not None else None
    train_boxes, val_boxes = select_data(recipe, train_boxes, val_boxes,
                                         own if own and own != train_boxes.classes else None)

    def fit_anchors(built: Network) -> Network:
        config = built.config
        if config.head != "convdet":
            return built
        shapes = fit_anchor_shapes(train_boxes.box_sizes(), k=len(config.anchors), seed=recipe.seed)
        return model_from_config(replace(config, anchors=shapes))

    model = model_for_data(recipe, data, train_boxes.classes, train_boxes.name, "detect", model, fit_anchors)
    augment = recipe.data.augment if recipe.data.augment in ("detect", "flip") else "none"
    recipe = recipe_for_model(recipe, model)
    size = recipe.data.image_size
    return DenseSetup(model, recipe, DetectionDataset(train_boxes, size, augment, recipe.seed),
                      DetectionDataset(val_boxes, size, "none"), train_boxes.classes,
                      train_boxes.name.removesuffix("-train"))
