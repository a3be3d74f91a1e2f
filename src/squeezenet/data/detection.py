"""Detection samples for training and evaluation: images warped to the network's square input, boxes with them.

Augmentation is torchvision.transforms.v2 on ``tv_tensors.BoundingBoxes`` (the boxes follow every flip, crop and
resize; boxes cut to nothing are dropped by ``SanitizeBoundingBoxes``), seeded by (seed, epoch, index) as for
classification, so a resumed run replays it exactly. Labels inside a batch are 1-based: 0 is the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import SqueezeNetError
from .boxes import BoxSet
from .images import _mix, load_rgb_image

BoxAugment = Literal["detect", "flip", "none"]
IN_MEMORY_MAX_BYTES = 2 << 30  # decoded originals kept between epochs (coco128's training images: 70 MB)


def box_transform(augment: BoxAugment, size: int) -> v2.Compose:
    """Image + boxes -> ``size`` x ``size`` (warped, as the model's ``square`` preprocessing does).

    ``detect``: SSD's recipe, milder (colour jitter; zoom out to 1.5x and an IoU-constrained crop, each on 30% of
    images; horizontal flip); ``flip``: flips only; ``none``: the warp alone (evaluation)."""
    steps: list[Any] = []
    if augment == "detect":
        steps += [v2.RandomApply([v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0},
                                                   side_range=(1.0, 1.5))], p=0.3),
                  v2.RandomApply([v2.RandomIoUCrop()], p=0.3)]
    elif augment not in ("flip", "none"):
        raise SqueezeNetError(f"unknown box augmentation {augment!r}; choose detect, flip or none")
    steps.append(v2.Resize((size, size), antialias=True))  # before the pixel-wise steps: they then cost (S/640)^2
    if augment == "detect":
        steps.append(v2.RandomPhotometricDistort(p=0.5))
    if augment in ("detect", "flip"):
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


class DetectionDataset(Dataset):
    """``(image uint8 3xSxS, {"boxes": Kx4 pixels of the SxS input, "labels": K, 1-based}, index)``; an unreadable
    image gives ``(None, message, index)`` (collected by :func:`collate_detections`)."""

    def __init__(self, boxes: BoxSet, size: int, augment: BoxAugment = "none", seed: int = 0, in_memory: bool = True):
        self.boxes, self.size, self.seed, self.epoch = boxes, size, seed, 0
        self.transform = box_transform(augment, size)
        self.random = augment != "none"
        self._cache: dict[int, torch.Tensor] | None = {} if in_memory else None
        self._cached_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.boxes)

    def _image(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image = load_rgb_image(self.boxes.samples[i].image)
        if self._cache is not None and self._cached_bytes + image.numel() <= IN_MEMORY_MAX_BYTES:
            self._cache[i] = image
            self._cached_bytes += image.numel()
        return image

    def __getitem__(self, i: int):
        sample = self.boxes.samples[i]
        try:
            image = self._image(i)
        except ValueError as exc:
            return None, str(exc), i
        h, w = image.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        target = {"boxes": tv_tensors.BoundingBoxes(sample.boxes * scale, format="XYXY", canvas_size=(h, w)),
                  "labels": sample.labels + 1}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, i) if self.random else 0)
            image, target = self.transform(tv_tensors.Image(image), target)
        return image.as_subclass(torch.Tensor), {"boxes": target["boxes"].as_subclass(torch.Tensor).float(),
                                                 "labels": target["labels"]}, i


def collate_detections(items: Sequence) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor, list[str]]:
    """Readable samples stacked into (images, targets, indices); the unreadable ones' messages listed."""
    good = [it for it in items if it[0] is not None]
    skipped = [msg for x, msg, _ in items if x is None]
    if not good:
        return torch.empty(0, 3, 1, 1, dtype=torch.uint8), [], torch.empty(0, dtype=torch.long), skipped
    return (torch.stack([x for x, _, _ in good]), [t for _, t, _ in good], torch.tensor([i for _, _, i in good]),
            skipped)
