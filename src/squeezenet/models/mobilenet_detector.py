"""torchvision's ``ssdlite320_mobilenet_v3_large`` behind our detector interface: the reference our detectors are
measured against.

The issue that brought detectors asks for our SqueezeNet detectors and torchvision's SSDLite on MobileNetV3 "trained
the same way, same budget". Registering torchvision's architecture as a model (``ssdlite_mobilenet_v3``) makes that
literal: the same ``squeezenet train`` recipe, loss, augmentation, evaluation, export and ``bench`` run it. The
network is torchvision's own (its builder with no weights: the reduced tail and the normal init it uses when no
ImageNet body is given, BatchNorm eps 1e-3), only unwrapped from torchvision's ``SSD`` so that ``forward`` returns
the one tensor our detectors return, ``N x A x (4 + 1 + C)``, and decoding, NMS and the loss are ours (the same
``BoxCoder`` weights, matcher and hard-negative loss as torchvision's SSD). Its input statistics are torchvision's
for this model: RGB in 0..1 mapped to -1..1.

No ImageNet weights for its body travel with the toolkit (torchvision downloads them; nothing here may): it is
trained from a random init, and compared with our detectors' random-body runs as well as their ImageNet-body ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import ssdlite320_mobilenet_v3_large

from ..common.schema import from_dict
from .config import CONFIG_VERSION, MAX_CLASSES, _check_int
from .detector import MAX_IMAGE_SIZE, Detector, _on_meta
from .meta import ModelMeta
from .preprocessing import TORCHVISION, Preprocessing


@dataclass(frozen=True)
class MobileNetSSDLiteConfig:
    """torchvision's SSDLite on MobileNetV3-Large: the object classes (background is extra) and the input side."""

    num_classes: int
    image_size: int = 320
    arch: str = field(default="ssdlite_mobilenet_v3", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)

    def __post_init__(self) -> None:
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("image_size", self.image_size, 64, MAX_IMAGE_SIZE)

    @property
    def task(self) -> str:
        return "detect"

    @property
    def head(self) -> str:
        return "ssdlite"  # default boxes, not fitted anchors: the trainer leaves them alone

    @property
    def in_chans(self) -> int:
        return 3

    def preprocessing(self) -> Preprocessing:
        """torchvision's transform for this model: the image warped to the square input, 0..1 mapped to -1..1."""
        size = self.image_size
        return replace(TORCHVISION, name="mobilenet-ssdlite", resize=size, crop=size, resize_mode="square",
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def num_parameters(self) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in MobileNetSSDLite(self).parameters())

    def largest_activation(self, size: int) -> int:
        """Elements of the largest map one ``size`` x ``size`` image makes, from a run on the meta device."""
        return _largest_activation(self.num_classes, size)

    def output_shape(self) -> tuple[int, ...]:
        with torch.device("meta"):
            anchors = MobileNetSSDLite(self).anchors
        return (len(anchors), 4 + 1 + self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "version": self.version, "num_classes": self.num_classes,
                "image_size": self.image_size}

    @classmethod
    def from_dict(cls, data: Any, where: str = "detector config") -> MobileNetSSDLiteConfig:
        return from_dict(cls, data, where)


@functools.lru_cache(maxsize=8)
def _largest_activation(num_classes: int, size: int) -> int:
    largest = 0

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output[0].numel())

    with torch.device("meta"):
        body: nn.Module = _torchvision_ssdlite(num_classes).backbone
        body.eval()
        hooks = [m.register_forward_hook(record) for m in body.modules() if not list(m.children())]
        try:
            body(torch.empty(1, 3, size, size))
        except RuntimeError:  # a map vanished: too small an input
            return 0
        finally:
            for hook in hooks:
                hook.remove()
    return largest


def _torchvision_ssdlite(num_classes: int) -> SSD:
    return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes + 1)


class MobileNetSSDLite(Detector):
    """torchvision's SSDLite320 MobileNetV3-Large network (backbone with its extra blocks, head, default boxes)."""

    def __init__(self, config: MobileNetSSDLiteConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        reference = _torchvision_ssdlite(config.num_classes)
        self.backbone: nn.Module = reference.backbone
        self.head: nn.Module = reference.head
        self.anchor_generator: DefaultBoxGenerator = reference.anchor_generator
        self.layer_names = {"backbone": ["backbone"], "head": ["head"]}
        size = config.image_size
        with torch.device("cpu"):  # the anchors are data even when the model is built on the meta device
            maps = _on_meta(self.backbone, config)
            images = ImageList(torch.zeros(1, 0, size, size), [(size, size)])
            anchors = self.anchor_generator(images, [torch.zeros(1, 0, *m.shape[-2:]) for m in maps])[0]
        self._set_anchors(anchors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(list(self.backbone(x).values()))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)
