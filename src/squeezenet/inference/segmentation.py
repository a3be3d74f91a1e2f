"""Masks for images and mIoU on labelled ones, for any runtime's segmenter (PyTorch, ONNX, ExecuTorch).

A segmenter sees the image warped to its square input; its logits are resized back to the image's own size
(bilinear) before the per-pixel ``argmax``, so masks and scores are at the resolution of the labels. Scores come
from one confusion matrix (torchmetrics' ``MulticlassConfusionMatrix``, ignored pixels left out) through
:func:`squeezenet.common.confusion.segmentation_scores`; per-image matrices are kept, so bootstrap intervals over
images and paired comparisons cost sums, not reruns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..common.confusion import segmentation_scores
from ..data.images import load_rgb_image
from ..data.masks import IGNORE_INDEX, MaskSet, draw_mask, read_mask_folder, resolve_masks
from ..errors import SqueezeNetError
from ..models import InferenceModel, ModelMeta, input_device
from .detection import BOOTSTRAP_RESAMPLES, _percentiles, pixel_transform


def _check_segmenter(model: InferenceModel) -> ModelMeta:
    if model.meta.task != "segment":
        raise SqueezeNetError(f"this is a {model.meta.task} model; masks need a segmenter (lraspp_squeezenet, "
                              "squeezeseg)")
    return model.meta


def segment_images(model: InferenceModel, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One ``H x W`` int64 mask of class indices per uint8 ``3 x H x W`` image, at the image's size."""
    meta = _check_segmenter(model)
    if not images:
        return []
    transform = pixel_transform(meta)
    x = torch.stack([transform(img) for img in images]).to(input_device(model))
    with torch.inference_mode():
        logits = model(x).float().cpu()
    return [F.interpolate(logits[i:i + 1], size=img.shape[-2:], mode="bilinear", align_corners=False)[0].argmax(0)
            for i, img in enumerate(images)]


def read_masks(data: str | Path, split: str = "all") -> MaskSet:
    """The labelled images of a segmentation folder: all of them, or the ``train``/``val`` part as ``squeezenet
    train`` splits it (:func:`squeezenet.data.masks.resolve_masks`)."""
    if split not in ("all", "train", "val"):
        raise SqueezeNetError(f"split must be all, train or val, got {split!r}")
    root = Path(data)
    if split == "all" and not ((root / "train").is_dir() and (root / "val").is_dir()):
        return read_mask_folder(root)
    train, val = resolve_masks(root)
    if split == "train":
        return train
    if split == "val":
        return val
    return MaskSet(train.samples + val.samples, train.classes, root.name)


def masks_for(meta: ModelMeta, masks: MaskSet) -> MaskSet:
    """``masks`` with the model's classes: the same list, or (a model trained on a selection, ``--classes person``)
    the data's pixels of those classes, the rest background. Classes the data lacks are one line."""
    if masks.classes == list(meta.classes):
        return masks
    if meta.classes and meta.classes[0] == masks.classes[0] and set(meta.classes[1:]) <= set(masks.classes[1:]):
        return masks.only(meta.classes[1:])
    raise SqueezeNetError(f"{masks.name}: its {len(masks.classes)} classes are not the model's {meta.num_classes} "
                          f"({', '.join(masks.classes[:3])}... vs {', '.join(meta.classes[:3])}...)")


def confusions_on(model: InferenceModel, masks: MaskSet, *, batch_size: int = 8,
                  progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, list[str]]:
    """One K x K confusion matrix per readable image (int64, ``[true, predicted]``) and the unreadable images."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    k = len(masks.classes)
    per_image, skipped = [], []
    for start in range(0, len(masks), batch_size):
        images, truths = [], []
        for sample in masks.samples[start:start + batch_size]:
            try:
                image = load_rgb_image(sample.image)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            truths.append(draw_mask(sample, (int(image.shape[-2]), int(image.shape[-1])), k).long())
            images.append(image)
        for predicted, truth in zip(segment_images(model, images), truths):
            # torchmetrics' matrix is [true, predicted], as segmentation_scores reads it
            per_image.append(multiclass_confusion_matrix(predicted.flatten(), truth.flatten(), k,
                                                         ignore_index=IGNORE_INDEX))
        if progress is not None:
            progress(min(batch_size, len(masks) - start))
    return (torch.stack(per_image) if per_image else torch.zeros(0, k, k, dtype=torch.long)), skipped


@dataclass
class SegmentationScores:
    """mIoU (classes present in the truth or the predictions), pixel accuracy, and per class IoU and accuracy."""

    miou: float
    pixel_accuracy: float
    per_class: dict[str, dict[str, float]]
    images: int
    skipped: list[str] = field(default_factory=list)
    #: 95% bootstrap intervals over images (``resamples`` > 0): "miou", "pixel_accuracy" and "iou CLASS"
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "images": self.images,
                "skipped": len(self.skipped), "per_class": self.per_class,
                **({"ci95": {k: list(v) for k, v in self.intervals.items()}} if self.intervals else {})}


def _resampled(per_image: torch.Tensor, resamples: int, seed: int) -> torch.Tensor:
    """``resamples`` sums of the per-image matrices over images drawn with replacement (seeded)."""
    g = torch.Generator().manual_seed(seed)
    n = per_image.shape[0]
    picks = torch.randint(0, n, (resamples, n), generator=g)
    counts = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, picks, torch.ones(resamples, n,
                                                                                              dtype=torch.float64))
    return torch.einsum("rn,nij->rij", counts, per_image.double())


def evaluate_segmenter(model: InferenceModel, data: str | Path, *, split: str = "all", batch_size: int = 8,
                       resamples: int = 0, progress: Callable[[int], None] | None = None) -> SegmentationScores:
    """mIoU and pixel accuracy of ``model`` on the labelled images of ``data`` (:func:`read_masks`), per class too;
    with ``resamples``, 95% percentile bootstrap intervals over images.

    On a few images the mIoU's interval can lie above the estimate itself: a resample that leaves out the only image
    of a class the model never finds also leaves that class's IoU of 0 out of the mean, so most resamples average
    fewer zeros than the full set. Per-class IoU intervals (a class that is present throughout) do not have this
    bias; read mIoU intervals on small sets as the spread, not as bounds around the estimate."""
    meta = _check_segmenter(model)
    masks = masks_for(meta, read_masks(data, split))
    per_image, skipped = confusions_on(model, masks, batch_size=batch_size, progress=progress)
    if not per_image.shape[0]:
        raise SqueezeNetError(f"{data}: no readable image to evaluate")
    scores = segmentation_scores(per_image.sum(0))
    per_class = {name: {"iou": float(iou), "accuracy": float(acc)}
                 for name, iou, acc in zip(meta.classes, scores["iou"], scores["class_accuracy"])  # type: ignore[arg-type]
                 if not math.isnan(float(iou))}
    intervals: dict[str, tuple[float, float]] = {}
    if resamples:
        draws: dict[str, list[float]] = {}
        for cm in _resampled(per_image, resamples, 0):
            s = segmentation_scores(cm)
            draws.setdefault("miou", []).append(float(s["miou"]))
            draws.setdefault("pixel_accuracy", []).append(float(s["pixel_accuracy"]))
            for name, iou in zip(meta.classes, s["iou"]):  # type: ignore[arg-type]
                if name in per_class:
                    draws.setdefault(f"iou {name}", []).append(float(iou))
        intervals = {k: _percentiles(v) for k, v in draws.items()}
    return SegmentationScores(float(scores["miou"]), float(scores["pixel_accuracy"]), per_class,
                              per_image.shape[0], skipped, intervals)


@dataclass
class PairedSegmentation:
    """Two segmenters on the same images: both mIoU and pixel accuracy, the share of pixels where they answer the
    same class, and the 95% bootstrap interval (over images) of the mIoU difference candidate - reference."""

    candidate_miou: float
    reference_miou: float
    candidate_pixel_accuracy: float
    reference_pixel_accuracy: float
    diff_low: float
    diff_high: float
    images: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.candidate_miou, "reference_miou": self.reference_miou,
                "pixel_accuracy": self.candidate_pixel_accuracy, "reference_pixel_accuracy": self.reference_pixel_accuracy,
                "miou_diff": self.candidate_miou - self.reference_miou,
                "miou_diff_ci95": [self.diff_low, self.diff_high], "images": self.images, "resamples": self.resamples}


def compare_segmenters(candidate: InferenceModel, reference: InferenceModel, data: str | Path, *, split: str = "all",
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> PairedSegmentation:
    """mIoU of both on the same images and the bootstrap interval of the difference: both are re-scored on each
    resample of the images, so what the images share cancels."""
    metas = [_check_segmenter(m) for m in (candidate, reference)]
    if metas[0].classes != metas[1].classes:
        raise SqueezeNetError(f"the two segmenters have different classes ({metas[0].num_classes} and "
                              f"{metas[1].num_classes}): a paired comparison needs the same")
    masks = masks_for(metas[0], read_masks(data, split))
    ours, _ = confusions_on(candidate, masks)
    theirs, _ = confusions_on(reference, masks)
    if not ours.shape[0] or ours.shape[0] != theirs.shape[0]:
        raise SqueezeNetError(f"{data}: no image both models could be scored on")
    a, b = segmentation_scores(ours.sum(0)), segmentation_scores(theirs.sum(0))
    diffs = [float(segmentation_scores(x)["miou"]) - float(segmentation_scores(y)["miou"])
             for x, y in zip(_resampled(ours, resamples, seed), _resampled(theirs, resamples, seed))]
    low, high = _percentiles(diffs)
    return PairedSegmentation(float(a["miou"]), float(b["miou"]), float(a["pixel_accuracy"]),
                              float(b["pixel_accuracy"]), low, high, ours.shape[0], len(diffs))
