"""Top-1/top-5 accuracy over a folder of labelled images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

from ..common.progress import image_bar
from ..data import FileLoader, ImageDataset, collate_images
from ..errors import SqueezeNetError
from ..models import InferenceModel, input_device
from .folders import labelled_images


@dataclass
class EvalResult:
    top1: float
    top5: float
    n: int  # images evaluated
    skipped: int  # unreadable images, not counted in n
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("skipped_files")
        return d


@torch.inference_mode()
def evaluate(
    model: InferenceModel,
    data: str | Path,
    *,
    batch_size: int = 50,
    workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Accuracy of a model (``load_weights``, an ``OnnxModel``, anything with a ``meta``) on an image folder.

    ``data`` is an ImageFolder tree or a flat folder of ``<wnid>_*.JPEG`` files (ImageNet models).
    Images that cannot be decoded are skipped and reported, never fatal. Batches go to the model's device.
    """
    if batch_size < 1 or workers < 0:
        raise SqueezeNetError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    meta = model.meta
    found = labelled_images(meta, data)
    files, labels = [p for p, _ in found.samples], [y for _, y in found.samples]
    dataset = ImageDataset(FileLoader(files, meta.preprocessing.transforms()), labels)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_images)
    k = min(5, meta.num_classes)
    top1 = MulticlassAccuracy(num_classes=meta.num_classes, top_k=1, average="micro")
    top5 = MulticlassAccuracy(num_classes=meta.num_classes, top_k=k, average="micro")
    model.eval()
    device = input_device(model)
    skipped: list[str] = []
    n = 0
    with image_bar("eval", len(dataset), progress) as advance:
        for images, labels, _, skipped_here in loader:
            skipped.extend(skipped_here)
            if labels.numel():
                logits = model(images.to(device)).float().cpu()
                top1.update(logits, labels)
                top5.update(logits, labels)
                n += labels.numel()
            advance(labels.numel() + len(skipped_here))
    if n == 0:
        raise SqueezeNetError(f"{data}: none of the {len(dataset)} images could be read")
    return EvalResult(top1=float(top1.compute()), top5=float(top5.compute()), n=n, skipped=len(skipped),
                      skipped_files=skipped)
