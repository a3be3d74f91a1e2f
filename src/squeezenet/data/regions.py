"""An object's region, as label files give it: polygons (YOLO segmentation lines, COCO ``segmentation`` lists) or
COCO run-length counts (``iscrowd`` regions and some converted datasets), checked before anything is allocated.

Run-length counts are read here rather than handed to pycocotools as they come: its C decoder trusts them, and a
string whose counts add up to more than ``height x width`` writes past its buffer. Once checked, decoding is one
``numpy.repeat`` (tested equal to ``pycocotools.mask.decode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import SqueezeNetError, brief

MAX_RLE_CHARS = 1 << 24
MAX_POLYGON_POINTS = 1 << 16
MAX_MASK_PIXELS = 1 << 28  # a run-length mask of at most 268 M pixels (16k x 16k)
TOLERANCE_PX = 1.0  # COCO polygons may overshoot their image by rounding; clipped


@dataclass(frozen=True)
class Region:
    """Polygons (each P x 2, x and y in 0..1 of the image) or run-length ``counts`` (column-major, COCO's order)
    of an image of ``size`` (height, width); ``crowd``: COCO's ``iscrowd``, pixels that neither train nor count."""

    polygons: tuple[torch.Tensor, ...] = ()
    counts: tuple[int, ...] | None = None
    size: tuple[int, int] | None = None
    crowd: bool = False

    def area(self) -> float:
        """The share of the image it covers (0..1): what draws larger regions first, smaller ones in front."""
        if self.counts is not None and self.size is not None:
            return sum(self.counts[1::2]) / max(self.size[0] * self.size[1], 1)
        return sum(_polygon_area(p) for p in self.polygons)

    def draw(self, canvas: Image.Image, value: int) -> None:
        """Fill ``value`` into the ``L`` image ``canvas`` where the region is."""
        w, h = canvas.size
        if self.counts is not None and self.size is not None:
            if self.size != (h, w):
                raise SqueezeNetError(f"a run-length mask of {self.size[1]}x{self.size[0]} for a {w}x{h} image")
            inside = np.repeat(np.arange(len(self.counts)) % 2, self.counts).astype(np.uint8).reshape(w, h).T
        elif self.polygons:
            from pycocotools import mask as coco_mask  # type: ignore[import-untyped]

            # COCO's own rasteriser (as torchvision's segmentation reference draws COCO): PIL's fills every pixel
            # the outline touches, 6% more than the polygon's area on a 60 x 35 triangle
            scale = torch.tensor([w, h], dtype=torch.float64)
            rles = coco_mask.frPyObjects([(p.double() * scale).flatten().tolist() for p in self.polygons], h, w)
            inside = coco_mask.decode(coco_mask.merge(rles))
        else:
            return
        canvas.paste(value, mask=Image.fromarray(np.ascontiguousarray(inside) * 255))


def _polygon_area(points: torch.Tensor) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(0.5 * (x * y.roll(-1) - x.roll(-1) * y).sum().abs())


def polygon(values: list[float], width: float, height: float, where: str) -> torch.Tensor:
    """A flat ``x1, y1, x2, y2, ...`` list in pixels as P x 2 fractions of the image (clipped to it)."""
    if len(values) < 6 or len(values) % 2 or len(values) > 2 * MAX_POLYGON_POINTS:
        raise SqueezeNetError(f"{where}: a polygon needs an even count of at least 6 numbers (x y pairs), got "
                              f"{len(values):,}")
    try:
        xy = torch.tensor([float(v) for v in values], dtype=torch.float64).view(-1, 2)
    except (TypeError, ValueError):
        raise SqueezeNetError(f"{where}: a polygon of non-numbers ({brief(str(values), 40)})") from None
    if not bool(torch.isfinite(xy).all()):
        raise SqueezeNetError(f"{where}: a polygon with a non-finite coordinate")
    limit = torch.tensor([width, height], dtype=torch.float64)
    if bool((xy < -TOLERANCE_PX).any()) or bool((xy > limit + TOLERANCE_PX).any()):
        raise SqueezeNetError(f"{where}: a polygon outside the {width:g}x{height:g} image")
    return (xy / limit).clamp(0, 1).float()


def rle_counts(counts: Any, size: tuple[int, int], where: str) -> tuple[int, ...]:
    """COCO run-length counts (a list, or the compressed string of ``pycocotools.mask.encode``) checked to cover
    exactly ``height x width`` pixels."""
    if isinstance(counts, str):
        if len(counts) > MAX_RLE_CHARS:
            raise SqueezeNetError(f"{where}: run-length counts of {len(counts):,} characters")
        values = _uncompress(counts, where)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        values = counts
    else:
        raise SqueezeNetError(f"{where}: counts must be a list of whole numbers or a compressed RLE string")
    if any(c < 0 for c in values):
        raise SqueezeNetError(f"{where}: a negative run length")
    h, w = size
    if h * w > MAX_MASK_PIXELS:
        raise SqueezeNetError(f"{where}: a {w}x{h} run-length mask (at most {MAX_MASK_PIXELS:,} pixels)")
    if sum(values) != h * w:
        raise SqueezeNetError(f"{where}: run lengths cover {sum(values):,} pixels, not the {w}x{h} = {h * w:,} of "
                              "its size")
    return tuple(values)


def _uncompress(text: str, where: str) -> list[int]:
    """pycocotools' ``rleFrString``: 5 bits a character from '0', a continuation bit, a sign bit on the last one;
    from the third count on, each is stored as its difference to the count two before."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise SqueezeNetError(f"{where}: compressed run-length counts end inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise SqueezeNetError(f"{where}: {text[p]!r} is not a compressed run-length character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if k > 13:  # 65 bits: no count of a real image needs more
                raise SqueezeNetError(f"{where}: a run length too large for any image")
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_region(segmentation: Any, width: float, height: float, crowd: bool, where: str) -> Region:
    """A COCO annotation's ``segmentation``: a list of polygons, or ``{"size": [h, w], "counts": ...}``."""
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(p, list) for p in segmentation):
            raise SqueezeNetError(f"{where}: segmentation must be a list of polygons (lists of x y numbers)")
        return Region(tuple(polygon(p, width, height, where) for p in segmentation), crowd=crowd)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = segmentation["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise SqueezeNetError(f"{where}: size must be [height, width], got {brief(str(size), 40)}")
        h, w = size
        if (h, w) != (int(height), int(width)) or not (math.isclose(h, height) and math.isclose(w, width)):
            raise SqueezeNetError(f"{where}: a run-length mask of {w}x{h} for a {width:g}x{height:g} image")
        return Region(counts=rle_counts(segmentation["counts"], (h, w), where), size=(h, w), crowd=crowd)
    raise SqueezeNetError(f"{where}: segmentation must be polygons or run-length counts ({{size, counts}})")
