"""Datasets and image loading. Builds on ``squeezenet.models``."""

from .images import (
    IMAGE_EXTENSIONS,
    FileLoader,
    ImageDataset,
    LabelledImages,
    TensorLoader,
    collate_images,
    expand_image_paths,
    list_labelled_images,
    load_rgb_image,
)

__all__ = ["IMAGE_EXTENSIONS", "FileLoader", "ImageDataset", "LabelledImages", "TensorLoader", "collate_images",
           "expand_image_paths", "list_labelled_images", "load_rgb_image"]
