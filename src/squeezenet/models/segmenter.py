"""Semantic segmenters on SqueezeNet bodies: torchvision's LR-ASPP head and a SqueezeSeg-style Fire decoder.

Both are plain networks from a preprocessed ``S x S`` batch to per-pixel class logits ``N x K x S x S`` (``K``
classes, the background among them as class 0 when the data has one): what every runtime computes, and what
``argmax`` turns into a mask. The image is warped to the square input as for detectors; masks are compared at the
image's own size after the logits are resized back (``inference/segmentation.py``).

- **LR-ASPP** (Howard et al. 2019, torchvision's ``LRASPPHead``): the body's stride-16 map through a 1x1
  convolution gated by its global average (the "lite" ASPP), upsampled to the stride-8 map, each classified by a 1x1
  convolution and summed; bilinear to the input size. Two taps, few parameters: the head torchvision puts on
  MobileNetV3 for its ``lraspp_mobilenet_v3_large``.
- **SqueezeSeg** (Wu, Wan, Yue, Keutzer 2018): the encoder's stride-16 map brought back to full resolution by
  FireDeconv modules (squeeze 1x1, a 4x4/2 transposed convolution on the squeezed channels, expand 1x1 + 3x3), each
  output added to the encoder map of the same stride (SqueezeSeg's skip additions; the decoder's widths are chosen
  equal to the encoder's there), then dropout and a 3x3 convolution to the classes. The paper decodes a LiDAR
  range image upsampling width only; on camera images both sides are upsampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.lraspp import LRASPPHead

from ..common.schema import from_dict
from ..errors import SqueezeNetError
from .config import CONFIG_VERSION, MAX_CLASSES, SqueezeNetConfig, _check_int
from .meta import ModelMeta, Network
from .squeezenet import squeezenet_body as _body

SegmentHead = Literal["lraspp", "squeezeseg"]
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class SegmenterConfig:
    """What rebuilds a segmenter: the body, the head, the classes (all of them, background included) and the input
    side; ``inter_channels`` is LR-ASPP's width, ``dropout`` SqueezeSeg's before its classifier."""

    head: SegmentHead
    num_classes: int
    backbone: SqueezeNetConfig
    image_size: int = 320
    inter_channels: int = 128
    dropout: float = 0.5
    arch: str = field(default="segmenter", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)

    def __post_init__(self) -> None:
        _check_int("num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)
        _check_int("inter_channels", self.inter_channels, 1, 4096)
        if self.head not in ("lraspp", "squeezeseg"):
            raise SqueezeNetError(f"head must be lraspp or squeezeseg, got {self.head!r}")
        if not 0 <= self.dropout < 1:
            raise SqueezeNetError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def task(self) -> str:
        return "segment"

    @property
    def in_chans(self) -> int:
        return self.backbone.in_chans

    def num_parameters(self) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in build_segmenter(self).parameters())

    def largest_activation(self, size: int) -> int:
        """The body's largest map, or the logits at full resolution (K x S x S) if larger."""
        body = self.backbone.largest_activation(size)
        return max(body, self.num_classes * size * size) if body else 0

    def output_shape(self) -> tuple[int, ...]:
        """Per image: class logits at every pixel of the input."""
        return (self.num_classes, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "version": self.version, "head": self.head, "num_classes": self.num_classes,
                "backbone": self.backbone.to_dict(), "image_size": self.image_size,
                "inter_channels": self.inter_channels, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: Any, where: str = "segmenter config") -> SegmenterConfig:
        return from_dict(cls, data, where)


class Segmenter(Network):
    """The base of our segmenters: ``forward(x) -> N x K x S x S`` class logits."""

    backbone: nn.Sequential
    _taps: tuple[int, ...]

    @property
    def config(self) -> SegmenterConfig:
        return self.meta.config  # type: ignore[return-value]

    def _run_body(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """The body's maps at the tapped layers (index in ``self.backbone`` -> map)."""
        maps = {}
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self._taps:
                maps[i] = x
        return maps

    def get_classifier(self) -> nn.Conv2d:
        raise SqueezeNetError("a segmenter has no classifier layer; its head labels every pixel")

    def reset_classifier(self, num_classes: int) -> None:
        raise SqueezeNetError("a segmenter's classes are set when it is built (num_classes=)")


def _taps(info: list[Any], strides: tuple[int, ...]) -> list[int]:
    """Indices in the body of the last layer at each of ``strides`` (the map a decoder or head reads)."""
    found = {f.reduction: int(f.module.rsplit(".", 1)[1]) for f in info}
    missing = [s for s in strides if s not in found]
    if missing:
        raise SqueezeNetError(f"a segmenter needs a body with maps at strides {strides} (an ImageNet stem); "
                              f"this one has {sorted(found)}")
    return [found[s] for s in strides]


class LRASPPSqueeze(Segmenter):
    """torchvision's LR-ASPP head on the stride-8 (low) and stride-16 (high) maps of a SqueezeNet body."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        body, info, body_names = _body(config.backbone)
        low, high = _taps(info, (8, 16))
        self._taps = (low, high)
        self.backbone = nn.Sequential(*list(body)[: high + 1])
        channels = {int(f.module.rsplit(".", 1)[1]): f.num_chs for f in info}
        self.head = LRASPPHead(channels[low], channels[high], config.num_classes, config.inter_channels)
        kept = {f"backbone.{i}" for i in range(len(self.backbone))}
        self.layer_names = {**{k: v for k, v in body_names.items() if all(p in kept for p in v)}, "head": ["head"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self._run_body(x)
        out = self.head({"low": maps[self._taps[0]], "high": maps[self._taps[1]]})
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


class FireDeconv(nn.Module):
    """SqueezeSeg's FireDeconv: squeeze 1x1, a 4x4/2 transposed convolution on the squeezed channels (twice the
    side), expand 1x1 + 3x3 concatenated; the upsampling costs ``squeeze^2 * 16`` weights, not ``in * out * 16``."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1)
        self.upsample = nn.ConvTranspose2d(squeeze, squeeze, kernel_size=4, stride=2, padding=1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.upsample(F.relu(self.squeeze(x))))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


def _fire_deconv(cin: int, cout: int) -> FireDeconv:
    """A FireDeconv to ``cout`` channels with SqueezeSeg's proportions (squeeze = out / 8, at least 16; expand
    split evenly)."""
    return FireDeconv(cin, max(16, cout // 8), cout // 2, cout - cout // 2)


class SqueezeSeg(Segmenter):
    """The SqueezeNet body, then FireDeconvs from stride 16 to 8, 4, 2 and 1, each added to the body's map of its
    stride (SqueezeSeg's skips), dropout, and a 3x3 convolution to the classes."""

    SKIPS = (8, 4, 2)
    FULL_RESOLUTION_CHANNELS = 64

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        body, info, body_names = _body(config.backbone)
        *skips, high = _taps(info, (*self.SKIPS, 16))
        self._taps = (*skips, high)
        self._skips = tuple(skips)
        self.backbone = nn.Sequential(*list(body)[: high + 1])
        channels = {int(f.module.rsplit(".", 1)[1]): f.num_chs for f in info}
        widths = [channels[i] for i in skips] + [self.FULL_RESOLUTION_CHANNELS]
        decoder, cin = [], channels[high]
        for cout in widths:
            decoder.append(_fire_deconv(cin, cout))
            cin = cout
        self.decoder = nn.ModuleList(decoder)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Conv2d(cin, config.num_classes, kernel_size=3, padding=1)
        kept = {f"backbone.{i}" for i in range(len(self.backbone))}
        stages = [f"fire_deconv{i + 10}" for i in range(len(decoder))]
        self.layer_names = {**{k: v for k, v in body_names.items() if all(p in kept for p in v)},
                            **{name: [f"decoder.{i}"] for i, name in enumerate(stages)},
                            "classifier": ["classifier"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self._run_body(x)
        y = maps[self._taps[-1]]
        for i, block in enumerate(self.decoder):
            y = block(y)
            target = maps[self._skips[i]] if i < len(self._skips) else x
            if y.shape[-2:] != target.shape[-2:]:  # ceil-mode pooling: a side may be one off from twice the next
                y = F.interpolate(y, size=target.shape[-2:], mode="bilinear", align_corners=False)
            if i < len(self._skips):
                y = y + target
        return self.classifier(self.dropout(y))


def build_segmenter(config: SegmenterConfig) -> Segmenter:
    """The network a segmenter config describes."""
    return LRASPPSqueeze(config) if config.head == "lraspp" else SqueezeSeg(config)
