"""Training and validation datasets: CIFAR-10 (torchvision or JPEG folders) and ImageFolder trees.

Samples (``ImageDataset``) stay ``uint8`` until they reach the device, where the training module scales and normalises
them (4x less memory traffic). Augmentation is seeded per (seed, epoch, sample index), so a run is
reproducible whatever the number of processes or loader workers, and a resumed run replays the
exact same images. Small-image datasets (CIFAR) are decoded once into memory, where unreadable files are
skipped and counted up front; streamed images that cannot be read are dropped from their batch and counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision.transforms import v2

from ..errors import SqueezeNetError
from .images import FileLoader, ImageDataset, TensorLoader, expand_image_paths, list_labelled_images, load_rgb_image

Augment = Literal["cifar", "imagenet", "crop", "none"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the CIFAR-10 training set (0..1 scale), used to normalise CIFAR models.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

IN_MEMORY_MAX_BYTES = 4 * 2**30


def default_data_root() -> Path:
    """``$SQUEEZENET_DATA``, else ``~/.cache/squeezenet/data``."""
    env = os.environ.get("SQUEEZENET_DATA")
    return Path(env) if env else Path.home() / ".cache" / "squeezenet" / "data"


ResizeMode = Literal["shorter", "square"]


def resize_step(resize: int, mode: ResizeMode = "shorter") -> v2.Resize:
    """Shorter side to ``resize`` (aspect kept), or a warp to ``resize`` x ``resize`` (Caffe's databases)."""
    return v2.Resize(resize if mode == "shorter" else (resize, resize), antialias=True)


def train_transform(augment: Augment, size: int, in_memory: bool = False, resize: int | None = None,
                    resize_mode: ResizeMode = "shorter") -> v2.Compose | None:
    """Per-sample v2 augmentation; ``None`` where the training module augments whole batches instead
    (``cifar`` on in-memory data: see :mod:`squeezenet.data.augment`)."""
    if augment == "cifar":
        if in_memory:
            return None
        return v2.Compose([v2.RandomCrop(size, padding=size // 8, padding_mode="reflect"), v2.RandomHorizontalFlip()])
    if augment == "imagenet":
        return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
    if augment == "crop":
        steps = [] if in_memory else [resize_step(resize or size, resize_mode)]
        return v2.Compose([*steps, v2.RandomCrop(size), v2.RandomHorizontalFlip()])
    if augment == "none":
        return None
    raise SqueezeNetError(f"augment must be cifar, imagenet, crop or none, got {augment!r}")


def eval_transform(resize: int, size: int, resize_mode: ResizeMode = "shorter") -> v2.Compose:
    return v2.Compose([resize_step(resize, resize_mode), v2.CenterCrop(size)])


@dataclass
class SplitSource:
    """Where one split's images come from: file paths with labels, or arrays already in memory."""

    labels: list[int]
    files: list[str] | None = None
    arrays: torch.Tensor | None = None  # uint8 N x 3 x H x W


@dataclass
class DataSource:
    name: str
    classes: list[str]
    train: SplitSource
    val: SplitSource
    val_name: str = "val"
    labelled: bool = True  # False: every label is -1 (distillation from a teacher; val is the training images)


def resolve_data(data: str, root: str | Path | None = None, *, download: bool = True,
                 unlabelled: bool = False) -> DataSource:
    """Find a training/validation pair for ``data``: ``cifar10`` or a folder with train/ and val/ or test/.

    ``unlabelled``: a folder without train/ is a set of unlabelled images (any layout below it), used
    for both splits (see :func:`unlabelled_source`)."""
    if data == "cifar10":
        return _cifar10(Path(root) if root else default_data_root(), download)
    base = Path(data)
    if not base.is_dir():
        raise SqueezeNetError(f"{data}: not a data folder (expected 'cifar10' or a folder with train/ and val/ or test/)")
    if unlabelled and not (base / "train").is_dir():
        return unlabelled_source(base)
    val_name = next((n for n in ("val", "test") if (base / n).is_dir()), None)
    if not (base / "train").is_dir() or val_name is None:
        raise SqueezeNetError(f"{base}: needs a train/ folder and a val/ or test/ folder, one sub-folder per class")
    classes = sorted(d.name for d in (base / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
    train = list_labelled_images(base / "train", class_names=classes)
    val = list_labelled_images(base / val_name, class_names=classes)
    return DataSource(base.name, classes, _split_from(train.samples), _split_from(val.samples), val_name)


def unlabelled_source(folder: str | Path) -> DataSource:
    """Every image below ``folder`` as training images with label -1, validated on the same images (without
    augmentation): what a teacher's answers on them are learnt from, and how closely (agreement)."""
    files = [str(p) for p in expand_image_paths([folder])]
    split = SplitSource(labels=[-1] * len(files), files=files)
    return DataSource(Path(folder).name, [], split, split, "calibration", labelled=False)


def _split_from(samples: list[tuple[str, int]]) -> SplitSource:
    return SplitSource(labels=[y for _, y in samples], files=[p for p, _ in samples])


def _cifar10(root: Path, download: bool) -> DataSource:
    folder = root / "cifar10"
    if (folder / "train").is_dir() and any((folder / n).is_dir() for n in ("test", "val")):
        source = resolve_data(str(folder))
        source.name = "cifar10"
        return source
    from torchvision.datasets import CIFAR10

    try:
        splits = {t: CIFAR10(str(folder), train=t, download=download and not _has_batches(folder)) for t in (True, False)}
    except (RuntimeError, OSError) as exc:
        raise OSError(
            f"CIFAR-10 not found under {folder} and could not be downloaded ({exc}); set SQUEEZENET_DATA to a folder "
            "holding cifar10/ (train/ and test/ JPEG folders, or torchvision's cifar-10-batches-py)"
        ) from None
    out = {t: SplitSource(labels=list(d.targets), arrays=torch.from_numpy(np.ascontiguousarray(d.data.transpose(0, 3, 1, 2))))
           for t, d in splits.items()}
    return DataSource("cifar10", list(CIFAR10_CLASSES), out[True], out[False], "test")


def _has_batches(folder: Path) -> bool:
    return (folder / "cifar-10-batches-py" / "data_batch_1").is_file()


def load_into_memory(split: SplitSource, size: int, resize_mode: ResizeMode = "shorter"
                     ) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode a split once into a uint8 tensor (images resized to ``size`` if needed); skip unreadable files."""
    if split.arrays is not None:
        return split.arrays, split.labels, []
    assert split.files is not None
    if len(split.files) * 3 * size * size > IN_MEMORY_MAX_BYTES:
        raise SqueezeNetError(f"{len(split.files):,} images of {size}px do not fit the in-memory cache; stream them instead")
    resize = v2.Compose([resize_step(size, resize_mode), v2.CenterCrop(size)])
    images = torch.empty(len(split.files), 3, size, size, dtype=torch.uint8)
    labels, skipped, n = [], [], 0
    for path, label in zip(split.files, split.labels):
        try:
            x = load_rgb_image(path)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        images[n] = x if x.shape[-2:] == (size, size) else resize(x)
        labels.append(label)
        n += 1
    return images[:n].clone() if n < len(images) else images, labels, skipped


def make_dataset(split: SplitSource, *, train: bool, size: int, resize: int, augment: Augment, in_memory: bool,
                 seed: int, resize_mode: ResizeMode = "shorter") -> tuple[ImageDataset, list[str]]:
    """An :class:`ImageDataset` for one split, and the messages of images skipped while building it."""
    transform = train_transform(augment, size, in_memory, resize, resize_mode) if train else None
    if in_memory:
        images, labels, skipped = load_into_memory(split, resize if augment in ("imagenet", "crop") else size,
                                                   resize_mode)
        if transform is None and images.shape[-1] != size:
            transform = v2.CenterCrop(size)  # evaluation (or no augmentation) of images cached at `resize`
        return ImageDataset(TensorLoader(images), labels, transform, seed), skipped
    assert split.files is not None
    base = eval_transform(resize, size, resize_mode) if not train or augment == "none" else None
    return ImageDataset(FileLoader(split.files, base), split.labels, transform, seed), []


__all__ = ["CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DataSource", "SplitSource", "default_data_root",
           "make_dataset", "resolve_data", "unlabelled_source"]
