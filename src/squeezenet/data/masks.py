"""Per-pixel labels from files: masks drawn from object outlines (YOLO polygons as coco128's labels, COCO
polygons and run-length counts) or read from PNG mask folders.

A mask holds one class index a pixel; :data:`IGNORE_INDEX` (255, VOC's border value) marks pixels that neither train
nor count. Three layouts:

- a YOLO folder (``images/``, ``labels/`` with polygon lines, ``classes.txt``) or a COCO folder (``images/``,
  ``annotations.json`` with ``segmentation`` polygons or run-length counts), read by the detection reader
  (``data/boxes.py``: the same checks, one line per bad label). Class 0 is the background and object class ``c`` is
  ``c + 1``; each image's regions are filled larger first, so a smaller object in front of a larger one keeps its
  pixels (COCO's masks overlap; one class a pixel must win somewhere); COCO's crowd regions are ignored pixels. A
  box line is an error: a box is not an outline.
- a PNG folder (``images/``, ``masks/`` with a PNG of the same stem, ``classes.txt`` naming every value, the
  background included), as VOC and Cityscapes' label-id images come: palette (``P``) or grey (``L``) PNGs whose
  values are class indices. A mask of another size than its image, a value that is no class, a mask without its
  image or an image without its mask: one line naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import SqueezeNetError, brief
from .boxes import (
    COCO_FILE,
    BoxSet,
    class_indices,
    is_coco_folder,
    is_yolo_folder,
    read_box_folder,
    read_class_names,
    read_yolo_folder,
)
from .images import IMAGE_EXTENSIONS
from .regions import Region

IGNORE_INDEX = 255
BACKGROUND = "background"
MAX_MASK_CLASSES = IGNORE_INDEX  # indices 0..254 (a uint8 mask; 255 is ignored)


@dataclass(frozen=True)
class MaskSample:
    """One image and where its mask comes from: ``outlines`` ((class index in the mask, region), ...) or ``png``
    (a mask file, its values read through ``remap`` when classes were selected: value v becomes ``remap[v]``)."""

    image: Path
    outlines: tuple[tuple[int, Region], ...] = ()
    png: Path | None = None
    remap: tuple[int, ...] | None = None


@dataclass
class MaskSet:
    """The images of a segmentation dataset, their masks' sources, and the class names (index = mask value)."""

    samples: list[MaskSample]
    classes: list[str]
    name: str = "masks"

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int], name: str) -> MaskSet:
        return MaskSet([self.samples[i] for i in indices], self.classes, name)

    def only(self, names: Sequence[str]) -> MaskSet:
        """The set with the background and ``names`` as its classes (in that order): the pixels of every other class
        become background. What ``data.classes`` in a recipe selects (person against background on COCO)."""
        if self.classes[0] in names:
            raise SqueezeNetError(f"{self.name}: {self.classes[0]!r} is class 0 (the background), always kept; select "
                                  "object classes")
        index = class_indices(self.classes, names, self.name)
        new = {old: k for k, old in enumerate(index, 1)}
        lut = tuple(new.get(v, 0) for v in range(len(self.classes)))
        samples = []
        for s in self.samples:
            if s.png is not None:
                old = s.remap
                samples.append(MaskSample(s.image, png=s.png,
                                          remap=tuple(lut[v] for v in old) if old else lut))
            else:
                samples.append(MaskSample(s.image, tuple((new[c], r) for c, r in s.outlines if c in new)))
        return MaskSet(samples, [self.classes[0], *names], self.name)


def masks_from_boxes(boxes: BoxSet) -> MaskSet:
    """Objects with outlines (YOLO polygons, COCO segmentations) as masks: background 0, object class ``c`` as
    ``c + 1``; COCO's crowd regions are drawn as :data:`IGNORE_INDEX`."""
    if len(boxes.classes) + 1 > MAX_MASK_CLASSES:
        raise SqueezeNetError(f"{boxes.name}: {len(boxes.classes)} classes and the background do not fit a mask "
                              f"(at most {MAX_MASK_CLASSES - 1} object classes)")
    samples = []
    for s in boxes.samples:
        outlines = s.outlines if s.outlines else (None,) * len(s.labels)
        for k, outline in enumerate(outlines, 1):
            if outline is None:
                raise SqueezeNetError(f"{s.image}: object {k} of its labels is a box, not an outline; masks are drawn "
                                      "from polygons (YOLO segmentation labels) or COCO segmentations")
        regions = [(int(c) + 1, r) for c, r in zip(s.labels.tolist(), outlines) if r is not None]
        samples.append(MaskSample(s.image, tuple(regions + [(c + 1, r) for c, r in s.crowds])))
    classes = [BACKGROUND, *boxes.classes]
    if len(set(classes)) != len(classes):
        raise SqueezeNetError(f"{boxes.name}: a class is named {BACKGROUND!r}; that name is class 0, the pixels of "
                              "no object")
    return MaskSet(samples, classes, boxes.name)


def is_png_mask_folder(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def read_png_masks(folder: str | Path, classes: Sequence[str] | None = None) -> MaskSet:
    """``folder/images/*`` with ``folder/masks/<same stem>.png`` and ``folder/classes.txt`` (value v is line v+1)."""
    root = Path(folder)
    if classes is None:
        names_file = root / "classes.txt"
        if not names_file.is_file():
            raise SqueezeNetError(f"{root}: no classes.txt (one name a line, the background included: line n is "
                                  "mask value n-1)")
        classes = read_class_names(names_file)
    if len(classes) > MAX_MASK_CLASSES:
        raise SqueezeNetError(f"{root}: {len(classes)} classes; a mask holds at most {MAX_MASK_CLASSES} (255 is ignored)")
    images = sorted(p for p in (root / "images").rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise SqueezeNetError(f"{root / 'images'}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    mask_for = {p.relative_to(root / "images").with_suffix(".png"): p for p in images}
    for mask in sorted((root / "masks").rglob("*.png")):
        if mask.relative_to(root / "masks") not in mask_for:
            raise SqueezeNetError(f"{mask}: a mask without an image (no images/"
                                  f"{mask.relative_to(root / 'masks').with_suffix('')}.* beside it)")
    samples = []
    for rel, image in mask_for.items():
        mask = root / "masks" / rel
        if not mask.is_file():
            raise SqueezeNetError(f"{image}: no mask (masks/{rel})")
        samples.append(MaskSample(image, png=mask))
    return MaskSet(samples, list(classes), root.name)


def read_mask_folder(folder: str | Path, classes: Sequence[str] | None = None) -> MaskSet:
    """A PNG mask folder or a YOLO polygon folder (see the module docstring). ``classes``: the mask's class names
    (background first for a YOLO folder), when they come from elsewhere (a train/val parent)."""
    root = Path(folder)
    if is_png_mask_folder(root):
        return read_png_masks(root, classes)
    if is_coco_folder(root):
        masks = masks_from_boxes(read_box_folder(root))
        if classes is not None and list(classes) != masks.classes:
            raise SqueezeNetError(f"{root / COCO_FILE}: its {len(masks.classes) - 1} categories are not those of the "
                                  f"other split ({len(classes) - 1})")
        return masks
    if is_yolo_folder(root):
        objects = list(classes[1:]) if classes is not None else None
        return masks_from_boxes(read_yolo_folder(root, objects))
    raise SqueezeNetError(f"{root}: not a segmentation folder (images/ with masks/ PNGs, images/ with "
                          f"{COCO_FILE} (COCO polygons or run-length counts), or images/ with labels/ "
                          "polygons; classes.txt beside them)")


def resolve_masks(data: str | Path) -> tuple[MaskSet, MaskSet]:
    """Training and validation masks of a folder: ``train/`` and ``val/`` segmentation folders, or one split by
    the rule of :func:`squeezenet.data.boxes.split_every` (every fifth image to validation, as for boxes)."""
    root = Path(data)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = read_mask_folder(root / "train", _parent_classes(root))
        val = read_mask_folder(root / "val", train.classes)
        train.name, val.name = f"{root.name}-train", f"{root.name}-val"
        return train, val
    masks = read_mask_folder(root)
    every = range(len(masks))
    return (masks.subset([i for i in every if i % 5], f"{masks.name}-train"),
            masks.subset([i for i in every if i % 5 == 0], f"{masks.name}-val"))


def _parent_classes(root: Path) -> list[str] | None:
    """classes.txt beside train/ and val/ (YOLO: object classes, so the background is put first)."""
    names_file = root / "classes.txt"
    if not names_file.is_file():
        return None
    names = read_class_names(names_file)
    return names if is_png_mask_folder(root / "train") else [BACKGROUND, *names]


def draw_mask(sample: MaskSample, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    """The ``height x width`` uint8 mask of ``sample`` at its image's ``size`` (height, width): regions filled
    larger first (crowds as :data:`IGNORE_INDEX`), or the PNG checked (size, values) and read."""
    h, w = size
    if sample.png is not None:
        if sample.remap is None:
            return _read_png_mask(sample.png, (h, w), num_classes)
        values = _read_png_mask(sample.png, (h, w), len(sample.remap)).long()
        lut = torch.tensor([*sample.remap, *[0] * (IGNORE_INDEX - len(sample.remap)), IGNORE_INDEX], dtype=torch.uint8)
        return lut[values]
    canvas = Image.new("L", (w, h), 0)
    for cls, region in sorted(sample.outlines, key=lambda item: -item[1].area()):
        try:
            region.draw(canvas, IGNORE_INDEX if region.crowd else cls)
        except SqueezeNetError as exc:
            raise SqueezeNetError(f"{sample.image}: {exc}") from None
    return torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy())


def _read_png_mask(path: Path, size: tuple[int, int], num_classes: int) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            mode, (w, h) = image.mode, image.size
            values = np.asarray(image, dtype=np.uint8).copy() if mode in ("P", "L") else None
    except (OSError, ValueError) as exc:
        raise SqueezeNetError(f"{path}: unreadable mask ({brief(str(exc), 80)})") from None
    if values is None:
        raise SqueezeNetError(f"{path}: a {mode} image, not a mask (a palette or grey PNG of class indices)")
    if (h, w) != size:
        raise SqueezeNetError(f"{path}: a {w}x{h} mask for a {size[1]}x{size[0]} image")
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise SqueezeNetError(f"{path}: value {int(bad.max())} is no class (0..{num_classes - 1}; {IGNORE_INDEX} "
                              "ignored)")
    return torch.from_numpy(values)

