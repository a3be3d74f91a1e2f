"""Preprocessing presets: what a set of weights expects its input to look like.

Most wrong predictions reported against SqueezeNet ports come from a mismatch here (BGR vs RGB,
0..255 vs 0..1, mean only vs mean/std, 227 vs 224 crops). A :class:`Preprocessing` travels with the
weights in every file this toolkit writes, and ``transforms()`` builds the matching pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from ..common.schema import from_dict
from ..errors import SqueezeNetError, brief

MAX_RESIZE = 4096  # the side an image is resized to: 48 MB as uint8 before the crop


class ReverseChannels(nn.Module):
    """RGB -> BGR (Caffe models were trained on OpenCV's BGR images)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-3)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, centre-crop, scale, reorder channels, normalise.

    Attributes:
        name: preset name (``caffe`` or ``torchvision`` for the published weights).
        resize: image side after resizing (before the crop).
        resize_mode: ``shorter`` scales the shorter side to ``resize`` keeping the aspect ratio;
            ``square`` warps to ``resize`` x ``resize`` as Caffe's ``convert_imageset`` did for training.
        crop: side of the square centre crop fed to the network.
        mean, std: per-channel normalisation, in the network's channel order and value range.
        channel_order: ``RGB`` or ``BGR``.
        value_range: 1.0 for pixels in 0..1, 255.0 for Caffe's unscaled 0..255.
        interpolation: resize filter.
    """

    name: str
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    value_range: float = 1.0
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    resize_mode: Literal["shorter", "square"] = "shorter"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or len(self.name) > 100:
            raise SqueezeNetError(f"preprocessing name must be a string of at most 100 characters, got {brief(self.name)}")
        if not (0 < self.crop <= self.resize <= MAX_RESIZE):
            raise SqueezeNetError(f"preprocessing {brief(self.name)}: need 0 < crop <= resize <= {MAX_RESIZE}, "
                                  f"got {brief(self.crop)}/{brief(self.resize)}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(math.isfinite(v) for v in (*self.mean, *self.std)) \
                or any(s <= 0 for s in self.std):
            raise SqueezeNetError(f"preprocessing {brief(self.name)}: mean and std need 3 finite values, std > 0")
        if self.channel_order not in ("RGB", "BGR") or self.value_range not in (1.0, 255.0):
            raise SqueezeNetError(f"preprocessing {brief(self.name)}: channel_order RGB/BGR and value_range 1 or 255 expected")
        if self.resize_mode not in ("shorter", "square"):
            raise SqueezeNetError(f"preprocessing {brief(self.name)}: resize_mode must be shorter or square, "
                                  f"got {brief(self.resize_mode)}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise SqueezeNetError(f"preprocessing {brief(self.name)}: unknown interpolation {brief(self.interpolation)}")

    def transforms(self) -> v2.Compose:
        """A torchvision v2 pipeline from an RGB image (PIL or uint8 tensor CxHxW) to the network's input."""
        steps: list[nn.Module] = [
            v2.ToImage(),
            v2.Resize(
                self.resize if self.resize_mode == "shorter" else (self.resize, self.resize),
                interpolation=InterpolationMode(self.interpolation),
                antialias=True,
            ),
            v2.CenterCrop(self.crop),
            v2.ToDtype(torch.float32, scale=self.value_range == 1.0),
        ]
        if self.channel_order == "BGR":
            steps.append(ReverseChannels())
        steps.append(v2.Normalize(mean=list(self.mean), std=list(self.std)))
        return v2.Compose(steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "preprocessing") -> Preprocessing:
        return from_dict(cls, data, where)


#: The original Caffe release (and the Deep Compression model): BGR, 0..255, mean subtracted, no scaling,
#: 227 centre crop of the image warped to 256x256 (how Caffe's ImageNet databases were built). On the 250
#: sample images the DC model scores 0.664/0.852 top-1/top-5 this way, 0.656/0.820 with a shorter-side resize.
CAFFE = Preprocessing("caffe", resize=256, crop=227, mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
                      channel_order="BGR", value_range=255.0, resize_mode="square")

#: torchvision's ImageNet weights: RGB in 0..1, ImageNet mean/std, 224 crop of a 256 resize.
TORCHVISION = Preprocessing("torchvision", resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

#: 32x32 images as the ``cifar10`` recipe trains on them (CIFAR-10 mean/std): the default for small-stem models.
CIFAR = Preprocessing("cifar", resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))

PRESETS = {p.name: p for p in (CAFFE, TORCHVISION, CIFAR)}


def preset(name: str) -> Preprocessing:
    try:
        return PRESETS[name]
    except KeyError:
        raise SqueezeNetError(f"unknown preprocessing preset {brief(name)}; choose {', '.join(PRESETS)}") from None
