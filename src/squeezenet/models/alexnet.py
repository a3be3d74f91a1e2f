"""AlexNet, the paper's baseline (torchvision's single-GPU variant), with SqueezeNet's model API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torchvision
from torch import nn

from ..common.schema import from_dict
from ..errors import SqueezeNetError, brief
from .config import CONFIG_VERSION, MAX_CHANNELS, MAX_CLASSES, ClassifierOutputs
from .features import FeatureInfo, sequential_feature_info
from .meta import ModelMeta, Network, default_classes


@dataclass(frozen=True)
class AlexNetConfig(ClassifierOutputs):
    """Architecture of :class:`AlexNet`: the options torchvision's model has, plus input channels."""

    num_classes: int = 1000
    in_chans: int = 3
    dropout: float = 0.5
    arch: str = field(default="alexnet", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)

    def __post_init__(self) -> None:
        for name, most in (("num_classes", MAX_CLASSES), ("in_chans", MAX_CHANNELS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
                raise SqueezeNetError(f"{name} must be an integer in 1..{most:,}, got {brief(v)}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise SqueezeNetError(f"dropout must be a probability in [0, 1), got {brief(self.dropout)}")

    def num_parameters(self) -> int:
        """Weights and biases, counted without building anything (61.1M for ImageNet)."""
        convs = 64 * (self.in_chans * 121 + 1) + 192 * (64 * 25 + 1) + 384 * (192 * 9 + 1) + 256 * (384 * 9 + 1) \
            + 256 * (256 * 9 + 1)
        return convs + 4096 * (256 * 36 + 1) + 4096 * (4096 + 1) + self.num_classes * (4096 + 1)

    def largest_activation(self, size: int) -> int:
        """Elements of the largest feature map one ``size`` x ``size`` image makes (conv1's, 64 channels);
        0 when the input is too small (one of the three 3x3/2 max-pools would leave nothing)."""
        conv1 = side = (size + 4 - 11) // 4 + 1
        for _ in range(3):  # conv2-5 keep the size (padded); each max-pool (floor mode) shrinks it
            side = (side - 3) // 2 + 1 if side >= 3 else 0
        return 64 * conv1 * conv1 if side > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "AlexNet config") -> AlexNetConfig:
        return from_dict(cls, data, where)


class AlexNet(Network, torchvision.models.AlexNet):
    """torchvision's AlexNet (61.1M parameters); same state_dict keys, so its weights load unchanged."""

    features: nn.Sequential
    avgpool: nn.AdaptiveAvgPool2d
    classifier: nn.Sequential

    def __init__(self, config: AlexNetConfig) -> None:
        super().__init__(num_classes=config.num_classes, dropout=config.dropout)
        self.meta = ModelMeta.default(config)
        self.num_features = 256
        if config.in_chans != 3:
            self.features[0] = nn.Conv2d(config.in_chans, 64, kernel_size=11, stride=4, padding=2)
        self.layer_names: dict[str, list[str]] = {
            "conv1": ["features.0", "features.1"], "maxpool1": ["features.2"],
            "conv2": ["features.3", "features.4"], "maxpool2": ["features.5"],
            "conv3": ["features.6", "features.7"], "conv4": ["features.8", "features.9"],
            "conv5": ["features.10", "features.11"], "maxpool5": ["features.12"],
            "avgpool": ["avgpool"],
            "fc6": ["classifier.0", "classifier.1", "classifier.2"],
            "fc7": ["classifier.3", "classifier.4", "classifier.5"],
            "fc8": ["classifier.6"],
        }
        self.feature_info: list[FeatureInfo] = sequential_feature_info(self.features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.classifier[-1]  # type: ignore[return-value]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the last layer by a fresh one with ``num_classes`` outputs (class names reset to defaults)."""
        config = replace(self.config, num_classes=num_classes)  # validates num_classes
        old = self.get_classifier()
        self.classifier[-1] = nn.Linear(old.in_features, num_classes).to(device=old.weight.device, dtype=old.weight.dtype)
        self.meta = self.meta.replace(config=config, classes=default_classes(num_classes))

    @property
    def config(self) -> AlexNetConfig:
        return self.meta.config  # type: ignore[return-value]
