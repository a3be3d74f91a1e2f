"""Calibration images: any folder of images, no labels, preprocessed as the model expects."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.images import expand_image_paths, load_rgb_image
from ..errors import SqueezeNetError
from ..models import ModelMeta

logger = logging.getLogger(__name__)
MAX_BYTES = 2 << 30  # preprocessed images held at once


def calibration_images(meta: ModelMeta, folder: str | Path, limit: int | None = None,
                       max_bytes: int = MAX_BYTES) -> torch.Tensor:
    """Every image below ``folder`` (sorted; the first ``limit``), preprocessed for ``meta``; unreadable files
    are skipped with a warning. The memory they need is checked before any is decoded."""
    if not Path(folder).is_dir():
        raise SqueezeNetError(f"{folder}: not a folder of calibration images")
    paths = expand_image_paths([folder])[:limit]
    crop = meta.preprocessing.crop
    per_image = 4 * meta.config.in_chans * crop * crop
    if len(paths) * per_image > max_bytes:
        raise SqueezeNetError(f"{folder}: {len(paths):,} calibration images of {crop}x{crop} would take "
                              f"{len(paths) * per_image / 2**30:.1f} GiB; use {max_bytes // per_image:,} or fewer")
    transform = meta.preprocessing.transforms()
    images, skipped = [], 0
    for path in paths:
        try:
            images.append(transform(load_rgb_image(path)))
        except SqueezeNetError as exc:
            logger.warning(str(exc))
            skipped += 1
    if not images:
        raise SqueezeNetError(f"{folder}: none of its {len(paths)} images could be read")
    logger.info(f"calibration: {len(images)} images from {folder}" + (f" ({skipped} unreadable)" if skipped else ""))
    return torch.stack(images)
