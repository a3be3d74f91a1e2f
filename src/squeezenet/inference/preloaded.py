"""Preprocessed images held in memory: for analyses and benchmarks that run many passes over the same images."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_images(model: nn.Module, data: str | Path, limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images and labels from an eval folder (a fixed random subset of ``limit``), in memory."""
    from ..data import FileLoader, ImageDataset, collate_images, list_labelled_images
    from ..weights.imagenet import wnid_to_index

    found = list_labelled_images(data, wnid_index=wnid_to_index if model.num_classes == 1000 else None,
                                 class_names=getattr(model, "class_names", None))
    samples = found.samples
    if limit is not None and limit < len(samples):
        keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        samples = [samples[i] for i in keep.tolist()]
    dataset = ImageDataset(FileLoader([p for p, _ in samples], model.preprocessing.transforms()), [y for _, y in samples])
    images, labels, _, _ = collate_images([dataset[i] for i in range(len(dataset))])
    if not len(labels):
        raise ValueError(f"{data}: no readable images")
    return images, labels
