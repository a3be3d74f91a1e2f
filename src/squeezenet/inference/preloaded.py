"""Preprocessed images held in memory: for analyses and benchmarks that run many passes over the same images."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SqueezeNetError
from ..models import InferenceModel

MAX_BYTES = 2 << 30  # preprocessed float images held at once; a full ImageNet val set would be 31 GB


def _detector_images(data: str | Path) -> list[tuple[Path, int]]:
    """A detector's images, unlabelled (-1: what it answers is compared between runtimes, not scored): those of a
    box folder (labels/ beside images/, or train/ and val/ ones, read as ``eval`` reads them) or of any image folder."""
    from ..data.images import expand_image_paths
    from .detection import read_boxes

    root = Path(data)
    if (root / "labels").is_dir() or (root / "train").is_dir():
        return [(s.image, -1) for s in read_boxes(root).samples]
    return [(p, -1) for p in expand_image_paths([str(root)])]


def load_images(model: InferenceModel, data: str | Path, limit: int | None = None, seed: int = 0,
                max_bytes: int = MAX_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images and labels from an eval folder (a fixed random subset of ``limit``), in memory.

    The size is checked before anything is decoded: more than ``max_bytes`` is a ``ValueError`` that
    says which ``--limit`` fits."""
    from ..data import FileLoader, ImageDataset, collate_images
    from .folders import labelled_images

    meta = model.meta
    samples = _detector_images(data) if meta.task == "detect" else labelled_images(meta, data).samples
    if limit is not None and limit < len(samples):
        keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        samples = [samples[i] for i in keep.tolist()]
    crop = meta.preprocessing.crop
    per_image = 2 * 4 * meta.config.in_chans * crop * crop  # decoded list + stacked batch
    if len(samples) * per_image > max_bytes:
        gib = len(samples) * per_image / 2**30
        raise SqueezeNetError(f"{data}: {len(samples):,} images of {crop}x{crop} would take {gib:.1f} GiB in memory; "
                         f"use limit={max_bytes // per_image} or fewer")
    dataset = ImageDataset(FileLoader([str(p) for p, _ in samples], meta.preprocessing.transforms()),
                           [y for _, y in samples])
    images, labels, _, _ = collate_images([dataset[i] for i in range(len(dataset))])
    if not len(labels):
        raise SqueezeNetError(f"{data}: no readable images")
    return images, labels
