"""Datasets and image loading. Builds on ``squeezenet.models``."""

from .images import (
    IMAGE_EXTENSIONS,
    FileLoader,
    ImageDataset,
    LabelledImages,
    TensorLoader,
    collate_images,
    list_labelled_images,
    load_rgb_image,
)

__all__ = ["IMAGE_EXTENSIONS", "FileLoader", "ImageDataset", "LabelledImages", "TensorLoader", "collate_images",
           "list_labelled_images", "load_rgb_image"]
