"""The SqueezeNet network, built from a :class:`~squeezenet.models.config.SqueezeNetConfig`."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import init

from .config import SqueezeNetConfig
from .features import FeatureInfo, sequential_feature_info
from .fire import Fire
from .meta import ModelMeta, Network, default_classes


class SqueezeNet(Network):
    """SqueezeNet and every network of its design space.

    Layout and state_dict keys follow torchvision's ``SqueezeNet`` (``features.N``, ``classifier.1``),
    so torchvision weights load unchanged. ``classifier`` is dropout -> conv10 (1x1) -> ReLU ->
    global average pool, as in the paper: there is no fully connected layer.

    The model keeps its :attr:`meta` (architecture config, preprocessing, class names), which files written
    by this toolkit store so the network can be rebuilt from them alone; :attr:`layer_names` maps the
    paper's layer names (conv1, fire2, ...) to the modules that make them up.
    """

    features: nn.Sequential
    classifier: nn.Sequential

    def __init__(self, config: SqueezeNetConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        self.num_features = config.num_features
        bias = not config.batch_norm
        stem = config.stem

        layers: list[nn.Module] = []
        names: dict[str, list[int]] = {}

        def add(name: str, *mods: nn.Module) -> None:
            names[name] = list(range(len(layers), len(layers) + len(mods)))
            layers.extend(mods)

        stem_mods: list[nn.Module] = [
            nn.Conv2d(config.in_chans, stem.out_channels, stem.kernel_size, stride=stem.stride,
                      padding=stem.padding, bias=bias)
        ]
        if config.batch_norm:
            stem_mods.append(nn.BatchNorm2d(stem.out_channels))
        stem_mods.append(nn.ReLU(inplace=True))
        add("conv1", *stem_mods)
        if stem.pool:
            add("maxpool1", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        for i, (cin, spec, shortcut) in enumerate(zip(config.fire_inputs(), config.fires, config.shortcuts())):
            add(f"fire{i + 2}", Fire(cin, spec.squeeze, spec.expand1x1, spec.expand3x3,
                                     batch_norm=config.batch_norm, shortcut=shortcut))  # type: ignore[arg-type]
            if i in config.pool_after:
                add(f"maxpool{i + 2}", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        self.features = nn.Sequential(*layers)

        conv10 = f"conv{len(config.fires) + 2}"
        self.classifier = nn.Sequential(
            nn.Dropout(p=config.dropout),
            nn.Conv2d(self.num_features, config.num_classes, kernel_size=1, padding=config.classifier_padding),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        self.layer_names: dict[str, list[str]] = {k: [f"features.{i}" for i in v] for k, v in names.items()}
        self.layer_names[conv10] = ["classifier.0", "classifier.1", "classifier.2"]
        self.layer_names[f"avgpool{len(config.fires) + 2}"] = ["classifier.3"]
        self.feature_info: list[FeatureInfo] = sequential_feature_info(self.features)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a fresh model is statistically the same as theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier[1]:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before the classifier: (N, num_features, H/16, W/16) for ImageNet nets."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits from a feature map, or the globally pooled features with ``pre_logits=True``."""
        if pre_logits:
            return torch.flatten(self.classifier[3](x), 1)
        return torch.flatten(self.classifier(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Conv2d:
        return self.classifier[1]  # type: ignore[return-value]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace conv10 by a freshly initialised one with ``num_classes`` outputs (for fine-tuning); the class
        names go back to their defaults."""
        config = replace(self.config, num_classes=num_classes)  # validates num_classes
        old = self.get_classifier()
        new = nn.Conv2d(self.num_features, num_classes, kernel_size=1, padding=old.padding)  # type: ignore[arg-type]
        init.normal_(new.weight, mean=0.0, std=0.01)
        init.zeros_(new.bias)  # type: ignore[arg-type]
        self.classifier[1] = new.to(device=old.weight.device, dtype=old.weight.dtype)
        self.meta = self.meta.replace(config=config, classes=default_classes(num_classes))

    @property
    def config(self) -> SqueezeNetConfig:
        return self.meta.config  # type: ignore[return-value]


def squeezenet_body(backbone: SqueezeNetConfig) -> tuple[nn.Sequential, list[FeatureInfo], dict[str, list[str]]]:
    """The convolutional body of a SqueezeNet (its ``features``) for a detector or segmenter to put a head on: the
    layers (keys ``backbone.N`` there, so a classifier's ``features.N`` load into them: ``weights.load_backbone``),
    their feature points, and the paper's names of the layers (conv1, fire2, ...: what compression and reports use)."""
    net = SqueezeNet(replace(backbone, num_classes=1))
    names = {k: [p.replace("features.", "backbone.", 1) for p in v] for k, v in net.layer_names.items()
             if all(p.startswith("features.") for p in v)}
    return net.features, net.feature_info, names
