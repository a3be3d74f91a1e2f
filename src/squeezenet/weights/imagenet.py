"""ImageNet-1k class identities, available offline.

Index order is the sorted-wnid order used by Caffe and torchvision. WordNet ids come from timm's
packaged synset list, short names from torchvision's weight metadata.
"""

from __future__ import annotations

import re
from functools import lru_cache

WNID = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids, in class-index order."""
    from timm.data import ImageNetInfo

    wnids = tuple(ImageNetInfo("imagenet-1k").label_names())
    if len(wnids) != 1000 or list(wnids) != sorted(wnids):
        raise RuntimeError("timm's ImageNet-1k synset list is not the sorted 1000 wnids")
    return wnids


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """Short human-readable names of the 1000 classes (``tench``, ``goldfish``, ...)."""
    from torchvision.models import SqueezeNet1_1_Weights

    return tuple(SqueezeNet1_1_Weights.IMAGENET1K_V1.meta["categories"])


@lru_cache(maxsize=1)
def wnid_to_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(imagenet_wnids())}
