"""Preprocessed images held in memory: the one reader for work that makes many passes over a few hundred images
(calibration for int8 and compression, export checks, benchmarks, analyses).

Both readers check the memory the images will take before any is decoded, decode through the model's own
preprocessing (``meta.preprocessing.transforms()``, as evaluation does), and skip an unreadable file with its
one-line message; a folder where nothing can be read is an error."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import SqueezeNetError
from ..models import InferenceModel, ModelMeta

logger = logging.getLogger(__name__)
MAX_BYTES = 2 << 30  # preprocessed float images held at once; a full ImageNet val set would be 31 GB


def _check_fits(where: str | Path, count: int, meta: ModelMeta, max_bytes: int, limit_name: str) -> None:
    """Refuse before decoding when ``count`` images would pass ``max_bytes``: each is held twice while read (the
    decoded list, then the stacked batch)."""
    crop = meta.preprocessing.crop
    per_image = 2 * 4 * meta.config.in_chans * crop * crop
    if count * per_image > max_bytes:
        raise SqueezeNetError(f"{where}: {count:,} images of {crop}x{crop} would take {count * per_image / 2**30:.1f} "
                              f"GiB in memory; use {limit_name}{max_bytes // per_image} or fewer")


def _decode(meta: ModelMeta, paths: list[Path], labels: list[int], where: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The images through the model's preprocessing, stacked; unreadable ones skipped with a warning each."""
    from ..data import FileLoader, ImageDataset, collate_images

    dataset = ImageDataset(FileLoader([str(p) for p in paths], meta.preprocessing.transforms()), labels)
    images, kept_labels, _, skipped = collate_images([dataset[i] for i in range(len(dataset))])
    for message in skipped:
        logger.warning(message)
    if not len(kept_labels):
        raise SqueezeNetError(f"{where}: none of its {len(paths)} images could be read")
    if skipped:
        logger.info(f"{where}: {len(kept_labels)} images read, {len(skipped)} unreadable")
    return images, kept_labels


def unlabelled_images(meta: ModelMeta, folder: str | Path, limit: int | None = None,
                      max_bytes: int = MAX_BYTES) -> torch.Tensor:
    """Every image below ``folder`` (sorted; the first ``limit``), preprocessed for ``meta``: calibration and check
    images, which need no labels."""
    from ..data.images import expand_image_paths

    if not Path(folder).is_dir():
        raise SqueezeNetError(f"{folder}: not a folder of images")
    paths = [Path(p) for p in expand_image_paths([folder])[:limit]]
    _check_fits(folder, len(paths), meta, max_bytes, "")
    return _decode(meta, paths, [-1] * len(paths), folder)[0]


def _detector_images(data: str | Path) -> list[tuple[Path, int]]:
    """A detector's images, unlabelled (-1: what it answers is compared between runtimes, not scored): those of a
    box folder (labels/ beside images/, or train/ and val/ ones, read as ``eval`` reads them) or of any image folder."""
    from ..data.images import expand_image_paths
    from .detection import read_boxes

    root = Path(data)
    if (root / "labels").is_dir() or (root / "train").is_dir():
        return [(s.image, -1) for s in read_boxes(root).samples]
    return [(Path(p), -1) for p in expand_image_paths([str(root)])]


def load_images(model: InferenceModel, data: str | Path, limit: int | None = None, seed: int = 0,
                max_bytes: int = MAX_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed images and labels from an eval folder (a fixed random subset of ``limit``), in memory.

    The size is checked before anything is decoded: more than ``max_bytes`` is an error that says which
    ``limit`` fits."""
    from .folders import labelled_images

    meta = model.meta
    samples = _detector_images(data) if meta.task == "detect" else labelled_images(meta, data).samples
    if limit is not None and limit < len(samples):
        keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        samples = [samples[i] for i in keep.tolist()]
    _check_fits(data, len(samples), meta, max_bytes, "limit=")
    return _decode(meta, [Path(p) for p, _ in samples], [y for _, y in samples], data)
