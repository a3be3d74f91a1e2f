"""Segmentation samples for training and evaluation: images warped to the network's square input, masks with them.

Augmentation is torchvision.transforms.v2 on ``tv_tensors.Mask`` (a mask follows every crop, flip and resize with
nearest-neighbour sampling, so no class is invented at a border), seeded by (seed, epoch, index) as for the other
tasks, so a resumed run replays it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..errors import SqueezeNetError
from .images import _mix, load_rgb_image
from .masks import IGNORE_INDEX, MaskSet, draw_mask

MaskAugment = Literal["segment", "flip", "none"]
IN_MEMORY_MAX_BYTES = 2 << 30  # decoded images and masks kept between epochs


def mask_transform(augment: MaskAugment, size: int) -> v2.Compose:
    """Image + mask -> ``size`` x ``size``. ``segment``: a random crop of 35-100% of the image (aspect 3:4 to 4:3)
    resized to the input, colour jitter on half the images, horizontal flips (the scale jitter segmentation recipes
    use, milder); ``flip``: the warp and flips; ``none``: the warp alone (evaluation)."""
    steps: list[Any] = []
    if augment == "segment":
        steps.append(v2.RandomResizedCrop((size, size), scale=(0.35, 1.0), antialias=True))
        steps.append(v2.RandomPhotometricDistort(p=0.5))
    elif augment in ("flip", "none"):
        steps.append(v2.Resize((size, size), antialias=True))
    else:
        raise SqueezeNetError(f"unknown mask augmentation {augment!r}; choose segment, flip or none")
    if augment in ("segment", "flip"):
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class SegmentationDataset(Dataset):
    """``(image uint8 3xSxS, mask int64 SxS, index)``; an unreadable image gives ``(None, message, index)`` (collected
    by :func:`collate_masks`). A bad mask (wrong size, a value that is no class) is a ``SqueezeNetError``."""

    def __init__(self, masks: MaskSet, size: int, augment: MaskAugment = "none", seed: int = 0, in_memory: bool = True):
        self.masks, self.size, self.seed, self.epoch = masks, size, seed, 0
        self.transform = mask_transform(augment, size)
        self.random = augment != "none"
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if in_memory else None
        self._cached_bytes = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.masks)

    def pair(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image i (uint8 3 x H x W) and its mask (uint8 H x W) at the image's own size. An unreadable image is a
        ``ValueError``; a bad mask a ``SqueezeNetError`` naming the mask's file."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image = load_rgb_image(self.masks.samples[i].image)
        return image, self._mask(i, image)

    def _mask(self, i: int, image: torch.Tensor) -> torch.Tensor:
        mask = draw_mask(self.masks.samples[i], (int(image.shape[-2]), int(image.shape[-1])), len(self.masks.classes))
        if self._cache is not None and self._cached_bytes + image.numel() + mask.numel() <= IN_MEMORY_MAX_BYTES:
            self._cache[i] = (image, mask)
            self._cached_bytes += image.numel() + mask.numel()
        return mask

    def __getitem__(self, i: int):
        if self._cache is not None and i in self._cache:
            image, mask = self._cache[i]
        else:
            try:
                image = load_rgb_image(self.masks.samples[i].image)
            except ValueError as exc:  # an unreadable image is skipped and counted, as for the other tasks
                return None, str(exc), i
            mask = self._mask(i, image)  # a bad mask is the user's to fix: an error, never skipped
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, i) if self.random else 0)
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long(), i


def collate_masks(items: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Readable samples stacked into (images, masks, indices); the unreadable ones' messages listed."""
    good = [it for it in items if it[0] is not None]
    skipped = [msg for x, msg, _ in items if x is None]
    if not good:
        return (torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.full((0, 1, 1), IGNORE_INDEX, dtype=torch.long),
                torch.empty(0, dtype=torch.long), skipped)
    return (torch.stack([x for x, _, _ in good]), torch.stack([m for _, m, _ in good]),
            torch.tensor([i for _, _, i in good]), skipped)
