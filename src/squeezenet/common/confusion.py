"""Segmentation scores from a confusion matrix: the one definition training's validation and ``eval`` share.

``confusion[t, p]`` counts pixels of true class ``t`` predicted as ``p`` (ignored pixels never enter it; torchmetrics'
``MulticlassConfusionMatrix`` accumulates it, across processes too). A class's IoU is ``tp / (tp + fp + fn)``;
classes with no pixel in either the truth or the predictions of the images measured have no IoU (NaN) and stay
out of the mean (on 20 coco128 images most of COCO's 80 classes are absent; counting them as 0 would measure the
images chosen, not the model).
"""

from __future__ import annotations

import torch


def segmentation_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor | float]:
    """``iou`` (per class, NaN where undefined), ``miou`` (mean of the defined ones), ``pixel_accuracy`` and
    ``class_accuracy`` (per class recall, NaN for classes absent from the truth) of a K x K confusion matrix."""
    cm = confusion.double()
    tp = cm.diagonal()
    truth, predicted = cm.sum(1), cm.sum(0)
    union = truth + predicted - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    accuracy = torch.where(truth > 0, tp / truth.clamp(min=1), torch.full_like(tp, float("nan")))
    defined = iou[~iou.isnan()]
    total = float(cm.sum())
    return {"iou": iou, "miou": float(defined.mean()) if defined.numel() else float("nan"),
            "pixel_accuracy": float(tp.sum()) / total if total else float("nan"), "class_accuracy": accuracy}
