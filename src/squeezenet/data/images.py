"""Reading images and labelled image folders, tolerant of files that cannot be decoded."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import make_dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from ..errors import SqueezeNetError

#: the largest image decoded (width x height): a 64-megapixel photo is 192 MB as RGB. Pillow's own guard warns at
#: 89M pixels and refuses only at 179M (537 MB, more with the float copies that follow); a 166 KB PNG can claim that.
MAX_PIXELS = 64_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
WNID_PREFIX = re.compile(r"^(n\d{8})(?:_|\.|$)")


def load_rgb_image(path: str | Path) -> torch.Tensor:
    """A uint8 RGB tensor (3, H, W); ``ValueError`` naming the file if it cannot be decoded."""
    path = Path(path)
    try:  # Pillow: every common format; torchvision.io's decoders are deprecated since 0.29
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is the lower cap, below
            with Image.open(path) as img:  # reads the header only: the size is known before decoding
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise SqueezeNetError(f"{path}: {width:,} x {height:,} pixels is more than the {MAX_PIXELS // 10**6} "
                                          "megapixels this toolkit decodes")
                return pil_to_tensor(img.convert("RGB"))
    except SqueezeNetError:
        raise
    except Image.DecompressionBombError:  # Pillow's hard limit (twice its warning) comes first
        raise SqueezeNetError(f"{path}: more than the {MAX_PIXELS // 10**6} megapixels this toolkit decodes") from None
    except (OSError, ValueError) as exc:
        raise SqueezeNetError(f"{path}: unreadable image ({' '.join(str(exc).split())[:150]})") from None


def expand_image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the image files below them (sorted); an empty folder is an error."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append(path)  # a missing or unreadable file is reported by whoever reads it, with its name
            continue
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise SqueezeNetError(f"{path}: a folder with no images ({', '.join(IMAGE_EXTENSIONS)})")
        out.extend(found)
    return out


@dataclass
class LabelledImages:
    """Image files with integer labels, and the name of each label found."""

    samples: list[tuple[str, int]]
    layout: str  # "folders" or "flat"


def list_labelled_images(
    root: str | Path,
    *,
    wnid_index: Callable[[], dict[str, int]] | None = None,
    class_names: Sequence[str] | None = None,
) -> LabelledImages:
    """Find images and labels under ``root``.

    Two layouts: an ImageFolder tree (one folder per class) or a flat folder of
    ``<wnid>_<anything>.JPEG`` files. Labels come from, in this order: WordNet ids (via
    ``wnid_index``, for ImageNet models), the model's ``class_names`` matched to folder names, or
    the sorted folder order (torchvision's ImageFolder rule).
    """
    root = Path(root)
    if not root.is_dir():
        raise SqueezeNetError(f"{root}: not a directory of images")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if folders:
        class_to_idx = _folder_labels(folders, wnid_index, class_names, root)
        samples = make_dataset(str(root), class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=True)
        if not samples:
            raise SqueezeNetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
        return LabelledImages(samples=samples, layout="folders")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SqueezeNetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no class folders")
    if wnid_index is None:
        raise SqueezeNetError(f"{root}: a flat folder needs <wnid>_name files and an ImageNet (1000-class) model")
    index = wnid_index()
    samples, unlabelled = [], []
    for p in files:
        m = WNID_PREFIX.match(p.name)
        if m and m.group(1) in index:
            samples.append((str(p), index[m.group(1)]))
        else:
            unlabelled.append(p.name)
    if unlabelled:
        raise SqueezeNetError(f"{root}: {len(unlabelled)} file(s) without an ImageNet <wnid>_ prefix, e.g. {unlabelled[0]!r}")
    return LabelledImages(samples=samples, layout="flat")


def _folder_labels(folders: list[str], wnid_index, class_names, root: Path) -> dict[str, int]:
    if wnid_index is not None and all(WNID_PREFIX.match(f) for f in folders):
        index = wnid_index()
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise SqueezeNetError(f"{root}: folder {unknown[0]!r} is not an ImageNet-1k class")
        return {f: index[f] for f in folders}
    if class_names is not None and set(folders) <= set(class_names):
        return {f: list(class_names).index(f) for f in folders}
    if class_names is not None and len(folders) > len(class_names):
        raise SqueezeNetError(f"{root}: {len(folders)} class folders for a model with {len(class_names)} classes")
    if class_names is not None and tuple(class_names) != tuple(f"class {i}" for i in range(len(class_names))):
        # numbering the folders in sorted order would score a model on labels that mean something else
        foreign = [f for f in folders if f not in class_names]
        raise SqueezeNetError(f"{root}: class folders such as {foreign[0][:40]!r} are not among the model's classes "
                              f"({', '.join(c[:20] for c in class_names[:3])}...); name the folders after them"
                              + (" or after ImageNet wnids" if wnid_index is not None else ""))
    return {f: i for i, f in enumerate(folders)}  # a model without class names: torchvision's ImageFolder order


class FileLoader:
    """Load image i from a list of files (optionally through a deterministic transform); picklable for workers."""

    def __init__(self, files: Sequence[str], transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.files, self.transform = list(files), transform

    def __call__(self, i: int) -> torch.Tensor:
        x = load_rgb_image(self.files[i])
        return self.transform(x) if self.transform is not None else x


class TensorLoader:
    """Image i of a uint8 N x C x H x W tensor decoded once into memory."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __call__(self, i: int) -> torch.Tensor:
        return self.images[i]


class ImageDataset(Dataset):
    """``(image, label, index)`` samples; an unreadable file gives ``(None, message, index)`` instead of raising.

    ``transform`` (random augmentation) is seeded by (seed, epoch, index), so the same sample gets the same
    augmentation whatever the number of processes or loader workers, and a resumed run replays it exactly.
    Use :func:`collate_images` to batch samples and collect the skipped files' messages.
    """

    def __init__(self, load: Callable[[int], torch.Tensor], labels: Sequence[int],
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, seed: int = 0):
        self.load, self.labels, self.transform, self.seed = load, list(labels), transform, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        try:
            x = self.load(i)
        except ValueError as exc:
            return None, str(exc), i
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_mix(self.seed, self.epoch, i))
                x = self.transform(x)
        return x, self.labels[i], i


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (splitmix-style), stable across processes."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def collate_images(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Stack readable samples into (images, labels, indices); list the messages of the unreadable ones."""
    good = [it for it in items if it[0] is not None]
    skipped = [msg for x, msg, _ in items if x is None]
    if not good:
        return (torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long),
                torch.empty(0, dtype=torch.long), skipped)
    return (torch.stack([x for x, _, _ in good]), torch.tensor([y for _, y, _ in good]),
            torch.tensor([i for _, _, i in good]), skipped)
