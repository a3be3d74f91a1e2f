"""Datasets and image loading. Builds on ``squeezenet.models``."""

from .images import (
    IMAGE_EXTENSIONS,
    Batch,
    ImageFileDataset,
    LabelledImages,
    collate_skipping,
    list_labelled_images,
    load_rgb_image,
)

__all__ = ["IMAGE_EXTENSIONS", "Batch", "ImageFileDataset", "LabelledImages", "collate_skipping", "list_labelled_images",
           "load_rgb_image"]
