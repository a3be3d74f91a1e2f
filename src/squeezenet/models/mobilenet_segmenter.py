"""torchvision's ``lraspp_mobilenet_v3_large`` behind our segmenter interface: the reference our segmenters are
measured against.

As with ``ssdlite_mobilenet_v3`` (``mobilenet_detector.py``): registering torchvision's architecture as a model
(``lraspp_mobilenet_v3``) lets the same ``squeezenet train`` recipe, loss, evaluation, export and ``bench`` run it,
so "trained the same way" is literal. The network is torchvision's own builder with no weights (MobileNetV3-Large
with dilated last stage, the LR-ASPP head on its stride-8 and stride-16 maps), unwrapped from its ``{"out": ...}``
dict so that ``forward`` returns the logits tensor our segmenters return. Input statistics: torchvision's ImageNet
mean and std. No ImageNet weights for its body travel with the toolkit: it starts from torchvision's random init.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from ..common.schema import from_dict
from .config import CONFIG_VERSION, MAX_CLASSES, _check_int
from .meta import ModelMeta
from .preprocessing import TORCHVISION, Preprocessing
from .segmenter import MAX_IMAGE_SIZE, Segmenter


@dataclass(frozen=True)
class MobileNetLRASPPConfig:
    """torchvision's LR-ASPP on MobileNetV3-Large: the classes (background included) and the input side."""

    num_classes: int
    image_size: int = 320
    arch: str = field(default="lraspp_mobilenet_v3", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)

    def __post_init__(self) -> None:
        _check_int("num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)

    @property
    def task(self) -> str:
        return "segment"

    @property
    def head(self) -> str:
        return "lraspp"

    @property
    def in_chans(self) -> int:
        return 3

    def preprocessing(self) -> Preprocessing:
        size = self.image_size
        return replace(TORCHVISION, name="mobilenet-lraspp", resize=size, crop=size, resize_mode="square")

    def num_parameters(self) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in MobileNetLRASPP(self).parameters())

    def largest_activation(self, size: int) -> int:
        """The logits at full resolution or the body's widest map (16 channels at half size, expanded 64 at a
        quarter), whichever is larger."""
        return max(self.num_classes * size * size, 64 * ((size + 1) // 2) ** 2)

    def output_shape(self) -> tuple[int, ...]:
        return (self.num_classes, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "version": self.version, "num_classes": self.num_classes,
                "image_size": self.image_size}

    @classmethod
    def from_dict(cls, data: Any, where: str = "segmenter config") -> MobileNetLRASPPConfig:
        return from_dict(cls, data, where)


class MobileNetLRASPP(Segmenter):
    """torchvision's LR-ASPP MobileNetV3-Large network (``backbone`` returns the low and high maps)."""

    def __init__(self, config: MobileNetLRASPPConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        reference = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=config.num_classes)
        self.body: nn.Module = reference.backbone
        self.head: nn.Module = reference.classifier
        self.layer_names = {"backbone": ["body"], "head": ["head"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.body(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
