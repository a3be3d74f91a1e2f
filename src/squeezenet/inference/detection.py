"""Running detectors: boxes for images, COCO mAP on a labelled folder, and the paired mAP of two detectors.

Any :class:`~squeezenet.models.InferenceModel` whose ``meta.task`` is ``detect`` works: our networks and the
ONNX/ExecuTorch files, which compute the same raw ``N x A x (4 + 1 + C)`` tensor; decoding (softmax, boxes, NMS)
is :func:`squeezenet.models.decode_detections`, the same for all. mAP is torchmetrics' ``MeanAveragePrecision``
on pycocotools (COCO's own evaluation), measured in each image's own pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import v2

from ..data.boxes import BoxSet, read_box_folder, resolve_boxes
from ..data.images import load_rgb_image
from ..errors import SqueezeNetError
from ..models import InferenceModel, ModelMeta, input_device
from ..models.detector import anchors_for, decode_detections
from .coco_resample import ImageMatches

#: what ``predict`` shows by default; mAP is measured from 0.01 up, as COCO's evaluations of SSD are
DEFAULT_THRESHOLD = 0.3
BOOTSTRAP_RESAMPLES = 1000  # each re-scored from one matching (coco_resample): ~10 ms, not a COCOeval, per resample


def anchors_of(model: InferenceModel) -> torch.Tensor:
    """The anchors a detector's outputs refer to: its own, or rebuilt from its config (files: ONNX, .pte)."""
    anchors = getattr(model, "anchors", None)
    if isinstance(anchors, torch.Tensor):
        return anchors
    return anchors_for(model.meta.config)  # type: ignore[arg-type]


def _check_detector(model: InferenceModel) -> ModelMeta:
    if model.meta.task != "detect":
        raise SqueezeNetError("this is a classifier; boxes need a detector (squeezedet, ssdlite_squeezenet)")
    return model.meta


def pixel_transform(meta: ModelMeta) -> v2.Compose:
    """uint8 RGB (any size) -> the detector's input: warped to its square side, scaled, reordered, normalised."""
    return meta.preprocessing.transforms()


@dataclass
class Detections:
    """One image's boxes (``x1, y1, x2, y2`` in its own pixels), scores and class names."""

    path: str
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    size: tuple[int, int] = (0, 0)  # height, width
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "height": self.size[0], "width": self.size[1],
                "objects": [{"label": name, "class": int(c), "score": round(float(s), 4),
                             "box": [round(float(v), 1) for v in b]}
                            for b, s, c, name in zip(self.boxes, self.scores, self.labels, self.names)]}


def detect_images(model: InferenceModel, images: Sequence[torch.Tensor], *, threshold: float = 0.01,
                  nms_iou: float = 0.45, max_detections: int = 100) -> list[dict[str, torch.Tensor]]:
    """Boxes (in each image's pixels), scores and 0-based labels for uint8 RGB images of any size."""
    meta = _check_detector(model)
    if not images:
        return []
    transform = pixel_transform(meta)
    x = torch.stack([transform(img) for img in images]).to(input_device(model))
    with torch.inference_mode():
        outputs = model(x)
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    found = decode_detections(outputs.cpu(), anchors_of(model), meta.preprocessing.crop, score_threshold=threshold,
                              nms_iou=nms_iou, max_detections=max_detections, image_sizes=sizes)
    return found


def detect(model: InferenceModel, paths: Sequence[str | Path], *, threshold: float = DEFAULT_THRESHOLD,
           batch_size: int = 16, progress: Callable[[int], None] | None = None) -> list[Detections]:
    """Boxes above ``threshold`` for each image file; an unreadable one gives a :class:`Detections` with ``error``."""
    meta = _check_detector(model)
    results: list[Detections] = []
    for start in range(0, len(paths), batch_size):
        batch: list[tuple[str, torch.Tensor]] = []
        for p in paths[start:start + batch_size]:
            try:
                batch.append((str(p), load_rgb_image(p)))
            except ValueError as exc:
                results.append(Detections(str(p), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                                          [], error=str(exc)))
        for (path, image), found in zip(batch, detect_images(model, [img for _, img in batch], threshold=threshold)):
            names = [meta.classes[int(c)] for c in found["labels"]]
            results.append(Detections(path, found["boxes"], found["scores"], found["labels"], names,
                                      (int(image.shape[-2]), int(image.shape[-1]))))
        if progress is not None:
            progress(len(paths[start:start + batch_size]))
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(results, key=lambda r: order.get(r.path, 0))


def read_boxes(data: str | Path, split: str = "all") -> BoxSet:
    """The labelled images of ``data`` (a YOLO or COCO folder, or train/ and val/ ones): ``all``, or the ``train`` or
    ``val`` part as ``squeezenet train`` splits it."""
    if split == "all":
        root = Path(data)
        if (root / "val").is_dir() and not (root / "images").is_dir():
            raise SqueezeNetError(f"{root}: has train/ and val/; choose one with --split train or --split val")
        return read_box_folder(root)
    if split not in ("train", "val"):
        raise SqueezeNetError(f"split must be all, train or val, got {split!r}")
    train, val = resolve_boxes(data)
    return train if split == "train" else val


@dataclass
class DetectionScores:
    """COCO mAP@[.5:.95] and mAP@.5 overall and per class, on ``images`` images with ``objects`` objects."""

    map: float
    map50: float
    per_class: dict[str, dict[str, float]]
    images: int
    objects: int
    skipped: list[str] = field(default_factory=list)
    #: 95% bootstrap intervals over images (``resamples`` > 0): "map", "map50" and "ap50 CLASS" for each class
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "map50": self.map50, "images": self.images, "objects": self.objects,
                "skipped": len(self.skipped), "per_class": self.per_class,
                **({"ci95": {k: list(v) for k, v in self.intervals.items()}} if self.intervals else {})}


def _percentiles(values: list[float]) -> tuple[float, float]:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return math.nan, math.nan
    return values[int(0.025 * (len(values) - 1))], values[math.ceil(0.975 * (len(values) - 1))]


def _resamples(truth: Sequence[dict[str, torch.Tensor]], resamples: int, seed: int
               ) -> Iterator[tuple[list[int], list[dict[str, torch.Tensor]]]]:
    """Image indices drawn with replacement and their ground truth, ``resamples`` times (seeded); draws without a
    single object are left out (no AP is defined on them)."""
    g = torch.Generator().manual_seed(seed)
    n = len(truth)
    for _ in range(resamples):
        pick = torch.randint(0, n, (n,), generator=g).tolist()
        sample = [truth[i] for i in pick]
        if any(len(t["labels"]) for t in sample):
            yield pick, sample


def bootstrap_intervals(preds: Sequence[dict[str, torch.Tensor]], truth: Sequence[dict[str, torch.Tensor]],
                        classes: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
                        ) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of mAP, mAP@.5 and each class's AP@.5 over images resampled with replacement (how
    much the figures owe to which images happened to be measured: on 20 images, a lot)."""
    draws: dict[str, list[float]] = {}
    matches = ImageMatches(preds, truth)  # matched once; each resample is re-scored from the same matches
    for pick, _ in _resamples(truth, resamples, seed):
        scores = matches.scores(pick)
        draws.setdefault("map", []).append(scores["map"])  # type: ignore[arg-type]
        draws.setdefault("map50", []).append(scores["map50"])  # type: ignore[arg-type]
        for c, ap in scores["ap50"].items():  # type: ignore[union-attr]
            draws.setdefault(f"ap50 {classes[c]}", []).append(ap)
    return {k: _percentiles(v) for k, v in draws.items()}


def _targets(boxes: BoxSet, i: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    h, w = size
    s = boxes.samples[i]
    return {"boxes": s.boxes * torch.tensor([w, h, w, h], dtype=torch.float32), "labels": s.labels}


def predictions_on(model: InferenceModel, boxes: BoxSet, *, batch_size: int = 16,
                   progress: Callable[[int], None] | None = None
                   ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]], list[str]]:
    """Predictions (score >= 0.01) and ground truth, in each image's pixels, for every readable image."""
    preds: list[dict[str, torch.Tensor]] = []
    truth: list[dict[str, torch.Tensor]] = []
    skipped: list[str] = []
    for start in range(0, len(boxes), batch_size):
        images, indices = [], []
        for i in range(start, min(start + batch_size, len(boxes))):
            try:
                images.append(load_rgb_image(boxes.samples[i].image))
                indices.append(i)
            except ValueError as exc:
                skipped.append(str(exc))
        preds += detect_images(model, images)
        truth += [_targets(boxes, i, (int(img.shape[-2]), int(img.shape[-1]))) for i, img in zip(indices, images)]
        if progress is not None:
            progress(min(batch_size, len(boxes) - start))
    return preds, truth, skipped


def mean_average_precision(preds: Sequence[dict[str, torch.Tensor]], truth: Sequence[dict[str, torch.Tensor]],
                           class_metrics: bool = False) -> dict[str, Any]:
    """torchmetrics' COCO mAP (pycocotools backend) of 0-based predictions against 0-based ground truth."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", class_metrics=class_metrics)
    metric.update(list(preds), list(truth))
    return metric.compute()


def boxes_for(meta: ModelMeta, boxes: BoxSet) -> BoxSet:
    """``boxes`` with the model's classes: the same list, or (a model trained on a selection, ``--classes person``)
    the data's objects of those classes alone. Classes the data lacks are one line."""
    if boxes.classes == list(meta.classes):
        return boxes
    if set(meta.classes) <= set(boxes.classes):
        return boxes.only(meta.classes)
    raise SqueezeNetError(f"{boxes.name}: its {len(boxes.classes)} classes are not the model's {meta.num_classes} "
                          f"({', '.join(boxes.classes[:3])}... vs {', '.join(meta.classes[:3])}...)")


def evaluate_detector(model: InferenceModel, data: str | Path, *, split: str = "all", batch_size: int = 16,
                      resamples: int = 0, progress: Callable[[int], None] | None = None) -> DetectionScores:
    """COCO mAP of ``model`` on the labelled images of ``data`` (see :func:`read_boxes`); with ``resamples``, 95%
    bootstrap intervals too (:func:`bootstrap_intervals`)."""
    meta = _check_detector(model)
    boxes = boxes_for(meta, read_boxes(data, split))
    preds, truth, skipped = predictions_on(model, boxes, batch_size=batch_size, progress=progress)
    if not truth:
        raise SqueezeNetError(f"{data}: no readable image to evaluate")
    scores = mean_average_precision(preds, truth, class_metrics=True)
    per_class: dict[str, dict[str, float]] = {}
    classes = scores["classes"].flatten().tolist()
    for c, ap, ap50 in zip(classes, scores["map_per_class"].flatten().tolist(), _per_class_ap50(preds, truth, classes)):
        if ap >= 0:  # -1: the class has no object here
            per_class[meta.classes[int(c)]] = {"ap": ap, "ap50": ap50}
    intervals = bootstrap_intervals(preds, truth, meta.classes, resamples) if resamples else {}
    return DetectionScores(float(scores["map"]), float(scores["map_50"]), per_class, len(truth),
                           sum(len(t["labels"]) for t in truth), skipped, intervals)


def _per_class_ap50(preds: Sequence[dict[str, torch.Tensor]], truth: Sequence[dict[str, torch.Tensor]],
                    classes: list[int]) -> list[float]:
    """AP@.5 of each class (torchmetrics gives per-class AP over all thresholds only)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", iou_thresholds=[0.5],
                                  class_metrics=True)
    metric.update(list(preds), list(truth))
    scores = metric.compute()
    ap = dict(zip(scores["classes"].flatten().tolist(), scores["map_per_class"].flatten().tolist()))
    return [float(ap.get(c, -1.0)) for c in classes]


@dataclass
class PairedDetection:
    """Two detectors on the same images: both mAP@.5 and mAP, and the 95% bootstrap interval (over images) of the
    mAP@.5 difference candidate - reference."""

    candidate_map50: float
    reference_map50: float
    candidate_map: float
    reference_map: float
    diff_low: float
    diff_high: float
    images: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {"map50": self.candidate_map50, "reference_map50": self.reference_map50, "map": self.candidate_map,
                "reference_map": self.reference_map, "map50_diff": self.candidate_map50 - self.reference_map50,
                "map50_diff_ci95": [self.diff_low, self.diff_high], "images": self.images, "resamples": self.resamples}


def compare_detectors(candidate: InferenceModel, reference: InferenceModel, data: str | Path, *, split: str = "all",
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> PairedDetection:
    """mAP of both detectors on the same images, and the bootstrap interval of the mAP@.5 difference: images are
    resampled with replacement and both models scored on each resample, so what the images share cancels."""
    metas = [_check_detector(m) for m in (candidate, reference)]
    if metas[0].classes != metas[1].classes:
        raise SqueezeNetError(f"the two detectors have different classes ({metas[0].num_classes} and "
                              f"{metas[1].num_classes}): a paired comparison needs the same")
    boxes = boxes_for(metas[0], read_boxes(data, split))
    ours, truth, _ = predictions_on(candidate, boxes)
    theirs, _, _ = predictions_on(reference, boxes)
    a, b = mean_average_precision(ours, truth), mean_average_precision(theirs, truth)
    n = len(truth)
    diffs = []
    mine, other = ImageMatches(ours, truth), ImageMatches(theirs, truth)
    for pick, _ in _resamples(truth, resamples, seed):
        diffs.append(float(mine.scores(pick)["map50"]) - float(other.scores(pick)["map50"]))  # type: ignore[arg-type]
    low, high = _percentiles(diffs)
    return PairedDetection(float(a["map_50"]), float(b["map_50"]), float(a["map"]), float(b["map"]), low, high, n,
                           len(diffs))
