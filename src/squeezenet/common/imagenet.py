"""ImageNet-1k class identities, shipped with the package (no timm, no download).

Index order is the sorted-wnid order used by Caffe and torchvision. ``imagenet_classes.tsv`` beside this
module was generated from timm's packaged synset list (wnids) and torchvision's weight metadata (names);
a test checks it against an independent copy.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

WNID = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    text = resources.files(__package__).joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    wnids, names = tuple(r[0] for r in rows), tuple(r[1] for r in rows)
    if len(wnids) != 1000 or list(wnids) != sorted(wnids) or not all(WNID.match(w) for w in wnids):
        raise RuntimeError("the packaged ImageNet class list is damaged: reinstall squeezenet-toolkit")
    return wnids, names


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids, in class-index order."""
    return _table()[0]


def imagenet_names() -> tuple[str, ...]:
    """Short human-readable names of the 1000 classes (``tench``, ``goldfish``, ...)."""
    return _table()[1]


@lru_cache(maxsize=1)
def wnid_to_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}
