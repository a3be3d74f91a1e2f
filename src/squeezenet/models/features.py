"""Multi-scale feature maps for detection and segmentation backbones (like timm's ``features_only``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SqueezeNetError
from .fire import Fire


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone can return: channels, total stride, and the module producing it."""

    num_chs: int
    reduction: int
    module: str


def sequential_feature_info(features: nn.Sequential, prefix: str = "features") -> list[FeatureInfo]:
    """The last output at each stride of a plain conv/pool/Fire stack.

    A feature point is the module just before each max-pool (the deepest map at that stride) and the
    last module of the stack, provided it is not itself a pool.
    """
    info: list[FeatureInfo] = []
    channels, reduction = 0, 1
    mods = list(features)
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            channels, reduction = m.out_channels, reduction * _stride(m.stride)
        elif isinstance(m, Fire):
            channels = m.out_channels
        elif isinstance(m, nn.MaxPool2d):
            reduction *= _stride(m.stride)
            continue
        is_last = i == len(mods) - 1
        if is_last or isinstance(mods[i + 1], nn.MaxPool2d):
            info.append(FeatureInfo(num_chs=channels, reduction=reduction, module=f"{prefix}.{i}"))
    return info


def _stride(stride: int | Sequence[int]) -> int:
    return stride if isinstance(stride, int) else int(stride[0])


class FeatureExtractor(nn.Module):
    """Wraps a backbone's ``features`` stack and returns a list of maps, one per selected stride.

    Only the layers up to the deepest requested map are kept, so an unused classifier costs nothing.
    """

    def __init__(self, features: nn.Sequential, feature_info: list[FeatureInfo], out_indices: Sequence[int] | None = None):
        super().__init__()
        n = len(feature_info)
        indices = list(range(n)) if out_indices is None else [i + n if i < 0 else i for i in out_indices]
        for i in indices:
            if not 0 <= i < n:
                raise SqueezeNetError(f"out_indices {list(out_indices or [])} out of range: this backbone has {n} feature maps")
        self.feature_info = [feature_info[i] for i in indices]
        positions = [int(f.module.rsplit(".", 1)[1]) for f in self.feature_info]
        self.features = nn.Sequential(*list(features)[: max(positions) + 1])
        self._positions = set(positions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._positions:
                outs.append(x)
        return outs

    def channels(self) -> list[int]:
        return [f.num_chs for f in self.feature_info]

    def reductions(self) -> list[int]:
        return [f.reduction for f in self.feature_info]
