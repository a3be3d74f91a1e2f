"""The layers of a network by the paper's names: what compression acts on and what reports show."""

from __future__ import annotations

from torch import nn


def prunable_layers(model: nn.Module) -> dict[str, nn.Conv2d | nn.Linear]:
    """Conv and linear layers by module path, in definition order: the weights compression touches."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def paper_layer_names(model: nn.Module) -> dict[str, str]:
    """Module path -> the paper's name (``features.3.squeeze`` -> ``fire2/squeeze``); the path if unknown."""
    layers = prunable_layers(model)
    names: dict[str, str] = {}
    layer_names: dict[str, list[str]] = getattr(model, "layer_names", {})  # FeatureExtractor and foreign nets have none
    for paper, paths in layer_names.items():
        for path in paths:
            for name in layers:
                if name == path:
                    names[name] = paper
                elif name.startswith(path + "."):
                    names[name] = f"{paper}/{name[len(path) + 1:]}"
    return {name: names.get(name, name) for name in layers}
