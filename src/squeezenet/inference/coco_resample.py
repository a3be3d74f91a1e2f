"""COCO mAP of any resample of the images, from one matching: what makes bootstrap intervals of mAP affordable.

pycocotools scores in two steps: ``COCOeval.evaluate`` matches detections to objects image by image (per class, per
area range, at every IoU threshold: the slow part), and ``COCOeval.accumulate`` turns those per-image matches into
precision/recall curves (numpy over the matches). A bootstrap resample is a multiset of the same images, so its
matches are the ones already made: :class:`ImageMatches` runs ``evaluate`` once and, per resample, lays the images'
entries out in the resample's order (an image drawn twice counts twice, as two copies of it would) and runs
``accumulate`` alone, for the one area range and detection limit mAP reads. A paired comparison of two SqueezeDets
on 76 coco128 images (``eval --reference``, 2-core Xeon) took 3 min 24 s for 200 resamples through torchmetrics (a
full COCOeval each) and takes 49 s for 1,000 this way (11 s of it the two models' inference, the rest pycocotools'
Python precision envelope in ``accumulate``); ``tests/tasks/test_detection.py`` checks a resample's figures against
torchmetrics on the resampled list of images.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
import torch


def _coco(truth: Sequence[dict[str, torch.Tensor]], preds: Sequence[dict[str, torch.Tensor]]) -> tuple:
    """Ground truth and detections as pycocotools objects (images 0..n-1, boxes x, y, w, h, area = w * h as
    torchmetrics gives them)."""
    from pycocotools.coco import COCO  # type: ignore[import-untyped]

    def annotations(items: Sequence[dict[str, torch.Tensor]], scored: bool) -> list[dict]:
        out: list[dict] = []
        for image, item in enumerate(items):
            boxes = item["boxes"].double().tolist()
            labels = item["labels"].tolist()
            scores = item["scores"].tolist() if scored else [None] * len(labels)
            for (x1, y1, x2, y2), label, score in zip(boxes, labels, scores):
                w, h = x2 - x1, y2 - y1
                ann = {"id": len(out) + 1, "image_id": image, "bbox": [x1, y1, w, h], "area": w * h,
                       "category_id": int(label), "iscrowd": 0}
                if scored:
                    ann["score"] = float(score)
                out.append(ann)
        return out

    categories = sorted({int(c) for t in (*truth, *preds) for c in t["labels"].tolist()})
    images = [{"id": i} for i in range(len(truth))]
    gt, dt = COCO(), COCO()
    gt.dataset = {"images": images, "annotations": annotations(truth, False),
                  "categories": [{"id": c} for c in categories]}
    dt.dataset = {"images": images, "annotations": annotations(preds, True),
                  "categories": [{"id": c} for c in categories]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt.createIndex()
    return gt, dt


class ImageMatches:
    """pycocotools' per-image matching of ``preds`` to ``truth`` (both per image, boxes x1 y1 x2 y2, same labels),
    made once; :meth:`scores` gives COCO's mAP, mAP@.5 and per-class AP@.5 of any multiset of those images."""

    def __init__(self, preds: Sequence[dict[str, torch.Tensor]], truth: Sequence[dict[str, torch.Tensor]]) -> None:
        from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]

        if len(preds) != len(truth):
            raise ValueError(f"{len(preds)} predictions for {len(truth)} images")
        gt, dt = _coco(truth, preds)
        self._eval = COCOeval(gt, dt, "bbox")
        # torchmetrics' thresholds (float32 linspaces), so that the full sample gives the mAP torchmetrics reports
        # (pycocotools' float64 ones move a recall threshold across a step of the curve now and then)
        self._eval.params.iouThrs = np.array(torch.linspace(0.5, 0.95, 10).tolist())
        self._eval.params.recThrs = np.array(torch.linspace(0.0, 1.0, 101).tolist())
        with contextlib.redirect_stdout(io.StringIO()):
            self._eval.evaluate()
        self._matches = self._eval.evalImgs
        self._images = len(truth)
        self.categories: list[int] = list(self._eval.params.catIds)

    def scores(self, pick: Sequence[int] | None = None) -> dict[str, float | dict[int, float]]:
        """``map``, ``map50`` and ``ap50`` (category -> AP@.5, for the categories with an object among the images)
        of the images ``pick`` (indices, repeats allowed; all images by default). Undefined figures are NaN."""
        e = self._eval
        pick = list(range(self._images)) if pick is None else list(pick)
        areas = len(e.params.areaRng)
        n = self._images
        # only what mAP and AP@.5 read: every area (pycocotools' first range) and 100 detections an image (its last);
        # the small/medium/large and 1/10-detection curves would cost 11 accumulations more
        e.evalImgs = [self._matches[k * areas * n + i] for k in range(len(self.categories)) for i in pick]
        params = copy.copy(e.params)
        params.imgIds = list(range(len(pick)))
        params.areaRng, params.areaRngLbl, params.maxDets = params.areaRng[:1], params.areaRngLbl[:1], params.maxDets[-1:]
        e._paramsEval = params
        with contextlib.redirect_stdout(io.StringIO()):
            e.accumulate(params)
        # precision: iou thresholds x recall points x categories x area ranges x max detections; -1 where undefined
        everything = e.eval["precision"][:, :, :, 0, -1]
        at50 = everything[int(np.argmin(np.abs(e.params.iouThrs - 0.5)))]
        per_class = {}
        for k, category in enumerate(self.categories):
            curve = at50[:, k]
            if (curve > -1).any():
                per_class[category] = float(curve[curve > -1].mean())
        return {"map": _mean_defined(everything), "map50": _mean_defined(at50), "ap50": per_class}


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else float("nan")
