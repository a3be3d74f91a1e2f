"""Magnitude pruning (Han et al. 2015) with masks that every training loop respects.

A mask is a ``torch.nn.utils.parametrize`` parametrization: the layer computes with ``weight * mask``,
so the pruned weights stay zero through any optimiser, Lightning loop, DDP or hand-written loop,
and their gradients are zero. Targets are per layer: an explicit density (fraction kept) or Han's
``threshold = quality x std(weights)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SqueezeNetError
from ..models import prunable_layers
from .layer_settings import layer_values


class PruningMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` (mask: bool buffer, saved with the model)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask: torch.Tensor
        self.register_buffer("mask", mask.bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


@dataclass(frozen=True)
class Target:
    """One layer's pruning target: keep a ``density`` fraction, or weights above ``quality`` x std."""

    density: float | None = None
    quality: float | None = None

    def __post_init__(self) -> None:
        if (self.density is None) == (self.quality is None):
            raise SqueezeNetError("a pruning target is a density or a quality, not both")
        if self.density is not None and not 0.0 < self.density <= 1.0:
            raise SqueezeNetError(f"density must be in (0, 1], got {self.density}")
        if self.quality is not None and not 0.0 <= self.quality < 100.0:
            raise SqueezeNetError(f"quality must be in [0, 100), got {self.quality}")

    def keep_count(self, weight: torch.Tensor) -> int:
        """How many weights this target keeps (at least one)."""
        n = weight.numel()
        if self.density is not None:
            return max(1, min(n, round(self.density * n)))
        threshold = self.quality * weight.float().std().item()  # type: ignore[operator]
        return max(1, int((weight.abs() > threshold).sum()))


def parse_targets(spec: str | float | Mapping[str, float], kind: str, model: nn.Module) -> dict[str, Target]:
    """Per-layer targets from ``0.33`` or ``"0.33,conv1=1,fire9=0.5"`` (see :func:`layer_values`); layers
    not named and without a default keep every weight."""
    if kind not in ("density", "quality"):
        raise SqueezeNetError(f"unknown pruning target kind {kind!r}")
    values = layer_values(spec, model, kind)
    return {path: Target(density=1.0) if v is None else Target(**{kind: v}) for path, v in values.items()}


def magnitude_mask(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the ``keep`` largest-magnitude entries (ties broken by position, deterministic)."""
    flat = weight.detach().abs().flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep >= flat.numel():
        mask[:] = True
    else:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask.view_as(weight)


def current_mask(layer: nn.Module) -> torch.Tensor | None:
    if parametrize.is_parametrized(layer, "weight"):
        for p in layer.parametrizations.weight:  # type: ignore[union-attr]
            if isinstance(p, PruningMask):
                return p.mask
    return None


def set_mask(layer: nn.Module, mask: torch.Tensor) -> None:
    """Install or replace ``layer``'s pruning mask."""
    existing = current_mask(layer)
    if existing is not None:
        existing.copy_(mask.to(existing.device))
    else:
        parametrize.register_parametrization(layer, "weight", PruningMask(mask.to(layer.weight.device)))  # type: ignore[arg-type]


def keep_counts(model: nn.Module, targets: Mapping[str, Target]) -> dict[str, int]:
    """How many weights each targeted layer keeps, measured on its current (masked) weights."""
    layers = prunable_layers(model)
    unknown = set(targets) - set(layers)
    if unknown:
        raise SqueezeNetError(f"no prunable layer {', '.join(sorted(unknown))} in this model")
    with torch.no_grad():
        return {path: target.keep_count(layers[path].weight) for path, target in targets.items()}


def apply_counts(model: nn.Module, counts: Mapping[str, int]) -> dict[str, float]:
    """Mask each layer to its ``counts[path]`` largest weights; returns each layer's density.

    Weights already pruned stay pruned (their masked value is 0, so they never rank above a kept one).
    """
    layers = prunable_layers(model)
    result: dict[str, float] = {}
    with torch.no_grad():
        for path, keep in counts.items():
            layer = layers[path]
            weight = layer.weight
            if keep < weight.numel() or current_mask(layer) is not None:
                set_mask(layer, magnitude_mask(weight, keep))
            result[path] = min(keep, weight.numel()) / weight.numel()
    return result


def prune(model: nn.Module, targets: Mapping[str, Target]) -> dict[str, float]:
    """One-shot magnitude pruning to the targets; returns each layer's density."""
    return apply_counts(model, keep_counts(model, targets))


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake the masks into the weights (zeros stay) and drop the parametrizations."""
    for layer in prunable_layers(model).values():
        if current_mask(layer) is not None:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def gradual_fraction(progress: float, start: float = 0.0, end: float = 0.75) -> float:
    """Zhu & Gupta (2017)'s cubic schedule: share of the pruning done at ``progress`` in [0, 1].

    Fast at first, while the network has redundant weights to spare, slow near the target;
    pruning ends at ``end`` so the rest of the fine-tuning heals the last cut.
    """
    if progress <= start:
        return 0.0
    if progress >= end:
        return 1.0
    return 1.0 - (1.0 - (progress - start) / (end - start)) ** 3


__all__ = [
    "PruningMask", "Target", "apply_counts", "gradual_fraction", "keep_counts", "magnitude_mask", "parse_targets",
    "prune", "remove_masks", "set_mask",
]
