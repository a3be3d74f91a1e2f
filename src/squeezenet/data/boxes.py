"""Object labels from files: YOLO txt folders (boxes or polygons) and COCO JSON, checked line by line.

A training folder is either layout: images/ with labels/ and classes.txt, or images/ with annotations.json (COCO);
or train/ and val/ folders of one of them (:func:`resolve_boxes`).

Every reader returns :class:`BoxSet`: one :class:`BoxSample` per image (boxes as ``x1, y1, x2, y2`` in 0..1 of the
image, 0-based class indices) and the class names. A bad label is one ``SqueezeNetError`` naming the file and the line
(a coordinate out of range, an unknown class, a malformed line, a label without an image), never a silently wrong
box; an image without a label file, or with an empty one, is an image without objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError, brief
from .images import IMAGE_EXTENSIONS
from .regions import Region, coco_region

MAX_LABEL_BYTES = 16 << 20  # one image's label file (coco128's largest is 9 KB)
MAX_OBJECTS = 10_000  # objects in one image (COCO's most crowded has 93)
MAX_CLASSES = 100_000
MAX_COCO_BYTES = 1 << 30  # one COCO annotation file (instances_train2017.json has 448 MB)
TOLERANCE = 1e-3  # normalised coordinates may overshoot 0..1 by this much (rounding in exporters); clipped


@dataclass(frozen=True)
class BoxSample:
    """One image and its objects: ``boxes`` (K x 4 float32, ``x1, y1, x2, y2`` in 0..1) and ``labels`` (K, 0-based);
    ``outlines`` (when the labels had them: YOLO segmentation lines, COCO ``segmentation``) one region per object,
    ``None`` for an object given as a box; ``crowds``: (class, region) of COCO's ``iscrowd`` annotations, which are
    no object to find. Regions are what masks are drawn from (``data/masks.py``)."""

    image: Path
    boxes: torch.Tensor
    labels: torch.Tensor
    outlines: tuple[Region | None, ...] = ()
    crowds: tuple[tuple[int, Region], ...] = ()


@dataclass
class BoxSet:
    """The images of a detection dataset with their objects, and the class names (index = class id)."""

    samples: list[BoxSample]
    classes: list[str]
    name: str = "boxes"

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int], name: str) -> BoxSet:
        return BoxSet([self.samples[i] for i in indices], self.classes, name)

    def only(self, names: Sequence[str]) -> BoxSet:
        """The set with ``names`` as its classes (in that order): other objects are dropped, images kept (an image
        without one of ``names`` is an image without objects). What ``data.classes`` in a recipe selects."""
        index = class_indices(self.classes, names, self.name)
        new = {old: k for k, old in enumerate(index)}
        samples = []
        for s in self.samples:
            keep = [i for i, c in enumerate(s.labels.tolist()) if c in new]
            samples.append(BoxSample(s.image, s.boxes[keep], torch.tensor([new[int(s.labels[i])] for i in keep],
                                                                           dtype=s.labels.dtype),
                                     tuple(s.outlines[i] for i in keep) if s.outlines else (),
                                     tuple((new[c], r) for c, r in s.crowds if c in new)))
        return BoxSet(samples, list(names), self.name)

    def box_sizes(self) -> torch.Tensor:
        """Width and height (0..1) of every box: what anchor shapes are fitted to."""
        boxes = [s.boxes for s in self.samples if len(s.boxes)]
        if not boxes:
            return torch.zeros(0, 2)
        b = torch.cat(boxes)
        return b[:, 2:] - b[:, :2]


def class_indices(classes: Sequence[str], names: Sequence[str], where: str) -> list[int]:
    """Where each of ``names`` is in ``classes``; an unknown or repeated name is one line naming ``where``."""
    if not names:
        raise SqueezeNetError(f"{where}: an empty class selection")
    if len(set(names)) != len(names):
        raise SqueezeNetError(f"{where}: a class selected twice ({', '.join(names)})")
    missing = [n for n in names if n not in classes]
    if missing:
        shown = ", ".join(classes[:8]) + (f" and {len(classes) - 8} more" if len(classes) > 8 else "")
        raise SqueezeNetError(f"{where}: no class {brief(missing[0], 40)} (its classes: {shown})")
    return [list(classes).index(n) for n in names]


def read_class_names(path: Path) -> list[str]:
    """One class name a line (``classes.txt``, as coco128 and darknet's ``obj.names`` have it)."""
    try:
        text = path.read_bytes()[: 1 << 24].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SqueezeNetError(f"{path}: unreadable class list ({brief(str(exc), 80)})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SqueezeNetError(f"{path}: no class names (one name a line)")
    if len(names) > MAX_CLASSES or len(set(names)) != len(names):
        raise SqueezeNetError(f"{path}: {len(names):,} class names, {len(names) - len(set(names))} of them repeated")
    return names


def _parse_line(text: str, where: str, num_classes: int) -> tuple[int, list[float], list[float] | None]:
    """``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 x3 y3 ...`` (a polygon): class, ``x1, y1, x2, y2`` and the
    polygon's ``x, y`` values (None for a box)."""
    parts = text.split()
    try:
        cls = int(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise SqueezeNetError(f"{where}: not a label line: {brief(text, 60)} (class index, then numbers)") from None
    if not 0 <= cls < num_classes:
        raise SqueezeNetError(f"{where}: class {cls} is not one of the {num_classes} classes (0..{num_classes - 1})")
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        raise SqueezeNetError(f"{where}: {len(values)} numbers after the class; a box has 4 (cx cy w h), a polygon "
                              "an even number >= 6 (x y pairs)")
    if not all(math.isfinite(v) and -TOLERANCE <= v <= 1 + TOLERANCE for v in values):
        bad = next(v for v in values if not (math.isfinite(v) and -TOLERANCE <= v <= 1 + TOLERANCE))
        raise SqueezeNetError(f"{where}: coordinate {bad:g} is outside 0..1 (YOLO labels are fractions of the image)")
    if len(values) == 4:
        cx, cy, w, h = values
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if not all(-TOLERANCE <= v <= 1 + TOLERANCE for v in box):
            raise SqueezeNetError(f"{where}: the box reaches outside the image (cx {cx:g}, w {w:g}; cy {cy:g}, h {h:g})")
    else:
        xs, ys = values[0::2], values[1::2]
        box = [min(xs), min(ys), max(xs), max(ys)]
    box = [min(max(v, 0.0), 1.0) for v in box]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise SqueezeNetError(f"{where}: an empty box (zero width or height)")
    return cls, box, ([min(max(v, 0.0), 1.0) for v in values] if len(values) != 4 else None)


def read_yolo_labels(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, tuple[Region | None, ...]]:
    """Boxes, classes and outlines (None for box lines) of one YOLO label file (blank lines are skipped)."""
    try:
        size = path.stat().st_size
        if size > MAX_LABEL_BYTES:
            raise SqueezeNetError(f"{path}: a label file of {size:,} bytes (at most {MAX_LABEL_BYTES >> 20} MB)")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SqueezeNetError(f"{path}: not a text label file (not UTF-8)") from None
    except OSError as exc:
        raise SqueezeNetError(f"{path}: unreadable label file ({exc.strerror or exc})") from None
    boxes, labels, polygons = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            cls, box, polygon = _parse_line(line, f"{path}:{number}", num_classes)
            labels.append(cls)
            boxes.append(box)
            polygons.append(None if polygon is None else Region((torch.tensor(polygon, dtype=torch.float32).view(-1, 2),)))
            if len(boxes) > MAX_OBJECTS:
                raise SqueezeNetError(f"{path}: more than {MAX_OBJECTS:,} objects in one image")
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64),
            tuple(polygons))


def is_yolo_folder(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "labels").is_dir()


def read_yolo_folder(folder: str | Path, classes: Sequence[str] | None = None) -> BoxSet:
    """``folder/images/*.jpg`` with ``folder/labels/<same stem>.txt`` and ``folder/classes.txt`` (or ``classes``).

    A label file whose image is missing is an error (a renamed or deleted image would silently lose its objects).
    """
    root = Path(folder)
    if not is_yolo_folder(root):
        raise SqueezeNetError(f"{root}: a YOLO folder needs images/ and labels/ (with classes.txt beside them)")
    if classes is None:
        names_file = root / "classes.txt"
        if not names_file.is_file():
            raise SqueezeNetError(f"{root}: no classes.txt (one class name a line; line n is class n-1)")
        classes = read_class_names(names_file)
    images = sorted(p for p in (root / "images").rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise SqueezeNetError(f"{root / 'images'}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    label_for = {p.relative_to(root / "images").with_suffix(".txt"): p for p in images}
    for label in sorted((root / "labels").rglob("*.txt")):
        if label.relative_to(root / "labels") not in label_for:
            raise SqueezeNetError(f"{label}: a label file without an image (no images/"
                                  f"{label.relative_to(root / 'labels').with_suffix('')}.* beside it)")
    samples = []
    for rel, image in label_for.items():
        label = root / "labels" / rel
        if label.is_file():
            boxes, labels, polygons = read_yolo_labels(label, len(classes))
        else:
            boxes, labels, polygons = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), ()
        samples.append(BoxSample(image, boxes, labels, polygons))
    return BoxSet(samples, list(classes), root.name)


def read_coco_json(annotations: str | Path, images: str | Path) -> BoxSet:
    """COCO's ``instances_*.json``: boxes (``bbox`` = x, y, w, h in pixels) of every image, categories renumbered
    0..n-1 in id order, and each object's ``segmentation`` (polygons or run-length counts) when it has one;
    ``iscrowd`` regions are no box to find (COCO's evaluation ignores them too), their regions are kept as crowds."""
    path, image_dir = Path(annotations), Path(images)
    try:
        data = parse_json(path.read_bytes(), str(path), max_chars=MAX_COCO_BYTES)
    except OSError as exc:
        raise SqueezeNetError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise SqueezeNetError(f"{path}: not a COCO annotation file (needs images, annotations and categories lists)")
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        index = {cid: i for i, (cid, _) in enumerate(categories)}
        info = {int(im["id"]): (str(im["file_name"]), float(im["width"]), float(im["height"])) for im in data["images"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise SqueezeNetError(f"{path}: a category or image entry without a valid {brief(str(exc), 40)}") from None
    objects: dict[int, list[tuple[int, list[float], Region | None]]] = {i: [] for i in info}
    crowds: dict[int, list[tuple[int, Region]]] = {i: [] for i in info}
    for n, ann in enumerate(data["annotations"]):
        where = f"{path}: annotation {n}"
        try:
            image_id, cat, (x, y, w, h) = int(ann["image_id"]), int(ann["category_id"]), map(float, ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise SqueezeNetError(f"{where}: needs image_id, category_id and bbox [x, y, w, h]") from None
        if image_id not in info:
            raise SqueezeNetError(f"{where}: image_id {image_id} is not among the images")
        if cat not in index:
            raise SqueezeNetError(f"{where}: category_id {cat} is not among the categories")
        _, width, height = info[image_id]
        segmentation = ann.get("segmentation")
        region = (coco_region(segmentation, width, height, bool(ann.get("iscrowd")), where)
                  if segmentation not in (None, [], {}) else None)
        if ann.get("iscrowd"):
            if region is not None:
                crowds[image_id].append((index[cat], region))
            continue
        if not (w > 0 and h > 0 and x >= -1 and y >= -1 and x + w <= width + 1 and y + h <= height + 1):
            raise SqueezeNetError(f"{where}: bbox {[x, y, w, h]} is empty or outside the {width:g}x{height:g} image")
        box = [max(x / width, 0.0), max(y / height, 0.0), min((x + w) / width, 1.0), min((y + h) / height, 1.0)]
        objects[image_id].append((index[cat], box, region))
    samples = []
    for image_id, (name, _, _) in sorted(info.items()):
        file = image_dir / name
        if not file.is_file():
            raise SqueezeNetError(f"{path}: image {name} (id {image_id}) is not in {image_dir}")
        found = objects[image_id]
        boxes = torch.tensor([b for _, b, _ in found], dtype=torch.float32).reshape(-1, 4)
        outlines = tuple(r for _, _, r in found) if any(r is not None for _, _, r in found) else ()
        samples.append(BoxSample(file, boxes, torch.tensor([c for c, _, _ in found], dtype=torch.int64), outlines,
                                 tuple(crowds[image_id])))
    return BoxSet(samples, [name for _, name in categories], path.stem)


def split_every(boxes: BoxSet, every: int = 5) -> tuple[BoxSet, BoxSet]:
    """A fixed train/val split: every ``every``-th image (in sorted order, starting with the first) to validation."""
    val = [i for i in range(len(boxes)) if i % every == 0]
    train = [i for i in range(len(boxes)) if i % every]
    return boxes.subset(train, f"{boxes.name}-train"), boxes.subset(val, f"{boxes.name}-val")


COCO_FILE = "annotations.json"


def is_coco_folder(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / COCO_FILE).is_file()


def read_box_folder(folder: str | Path) -> BoxSet:
    """A YOLO folder (images/, labels/, classes.txt) or a COCO folder (images/ and ``annotations.json``, COCO's
    ``instances_*.json`` renamed)."""
    root = Path(folder)
    if is_coco_folder(root):
        boxes = read_coco_json(root / COCO_FILE, root / "images")
        boxes.name = root.name
        return boxes
    if is_yolo_folder(root):
        return read_yolo_folder(root)
    raise SqueezeNetError(f"{root}: not a detection folder (images/ with labels/ and classes.txt, or images/ with "
                          f"{COCO_FILE}; or train/ and val/ folders of either layout)")


def resolve_boxes(data: str | Path) -> tuple[BoxSet, BoxSet]:
    """Training and validation boxes of a folder: ``train/`` and ``val/`` YOLO folders (classes.txt in either or
    beside them) or COCO folders (images/ and annotations.json each, the same categories), or one folder of either
    layout split by :func:`split_every` (every fifth image to validation)."""
    root = Path(data)
    if is_coco_folder(root / "train") and is_coco_folder(root / "val"):
        train, val = read_box_folder(root / "train"), read_box_folder(root / "val")
        if train.classes != val.classes:
            raise SqueezeNetError(f"{root}: train/ and val/ name different categories ({len(train.classes)} and "
                                  f"{len(val.classes)})")
        train.name, val.name = f"{root.name}-train", f"{root.name}-val"
        return train, val
    if is_yolo_folder(root / "train") and is_yolo_folder(root / "val"):
        names_file = next((p for p in (root / "classes.txt", root / "train" / "classes.txt") if p.is_file()), None)
        if names_file is None:
            raise SqueezeNetError(f"{root}: no classes.txt (beside train/ and val/, or in train/)")
        classes = read_class_names(names_file)
        train, val = read_yolo_folder(root / "train", classes), read_yolo_folder(root / "val", classes)
        train.name, val.name = f"{root.name}-train", f"{root.name}-val"
        return train, val
    return split_every(read_box_folder(root))
