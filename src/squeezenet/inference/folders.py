"""A labelled image folder numbered the way a model numbers its classes."""

from __future__ import annotations

from pathlib import Path

from ..common.imagenet import wnid_to_index
from ..data import LabelledImages, list_labelled_images
from ..models import ModelMeta


def labelled_images(meta: ModelMeta, data: str | Path) -> LabelledImages:
    """The images under ``data`` with labels in ``meta``'s class order: ImageNet wnids (folders or flat
    ``<wnid>_*`` files) for 1000-class models, otherwise folder names matched to ``meta.classes``."""
    return list_labelled_images(data, wnid_index=wnid_to_index if meta.num_classes == 1000 else None,
                                class_names=meta.classes)
