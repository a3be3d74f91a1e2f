"""Trained quantization (Han et al. 2016): per-layer k-means weight sharing with fine-tuned centroids.

Each layer's kept (non-zero) weights are replaced by indices into a small codebook. The layer computes
with ``codebook[codes]`` through a parametrization, so the gradient that reaches a centroid is the sum
of its members' gradients (the backward of the gather), which is exactly the paper's update rule;
pruned weights stay zero. Without data, :func:`quantize` alone is post-training quantization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SqueezeNetError
from ..models import paper_layer_names, prunable_layers
from .kmeans import Init, assign, kmeans_1d
from .layer_settings import layer_values
from .prune import remove_masks

MAX_BITS = 16


class SharedWeights(nn.Module):
    """Parametrization ``weight -> where(mask, codebook[codes], 0)``; the codebook is the trainable part."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.codebook = nn.Parameter(codebook.float())
        self.codes: torch.Tensor
        self.mask: torch.Tensor
        self.register_buffer("codes", codes.long())
        self.register_buffer("mask", mask.bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # the stored weight only lends its shape
        return torch.where(self.mask, self.codebook[self.codes], torch.zeros((), dtype=self.codebook.dtype,
                                                                             device=self.codebook.device))


@dataclass(frozen=True)
class LayerQuantization:
    path: str
    bits: int
    centroids: int  # codebook entries actually used
    kept: int  # non-zero weights sharing them


def parse_bits(spec: str | int | Mapping[str, int], model: nn.Module, default: int = 8) -> dict[str, int]:
    """Bits per layer from ``6`` or ``"6,conv1=8,conv10=8"`` (paper names or module paths)."""
    bits: dict[str, int] = {}
    names = paper_layer_names(model)
    for path, value in layer_values(spec if not isinstance(spec, int) else float(spec), model, "bits").items():
        b = default if value is None else value
        if b != int(b) or not 1 <= b <= MAX_BITS:
            raise SqueezeNetError(f"bits=: {b:g} bits for {names.get(path, path)}; use whole numbers from 1 to {MAX_BITS}")
        bits[path] = int(b)
    return bits


def quantize(model: nn.Module, bits: Mapping[str, int], *, init: Init = "linear") -> list[LayerQuantization]:
    """Share each layer's non-zero weights among at most ``2**bits`` centroids (pruning masks are baked in first)."""
    remove_masks(model)
    layers = prunable_layers(model)
    report = []
    with torch.no_grad():
        for path, b in bits.items():
            layer = layers[path]
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
            weight = layer.weight.detach()
            mask = weight != 0
            kept = weight[mask].cpu().numpy()
            centroids = kmeans_1d(kept, 2**b, init)
            codes = np.zeros(weight.numel(), dtype=np.int64)
            codes[mask.flatten().cpu().numpy()] = assign(kept, centroids)
            sharing = SharedWeights(torch.from_numpy(centroids if centroids.size else np.zeros(1, np.float32)),
                                    torch.from_numpy(codes).view(weight.shape), mask)
            parametrize.register_parametrization(layer, "weight", sharing.to(weight.device), unsafe=True)
            # the stored weight only lends its shape: frozen, so DDP does not wait for a gradient it never gets
            layer.parametrizations.weight.original.requires_grad_(False)  # type: ignore[union-attr]
            report.append(LayerQuantization(path, b, int(centroids.size), int(mask.sum())))
    return report


def share_values(model: nn.Module) -> list[LayerQuantization]:
    """Weight sharing from the values each layer already holds (after a grid or codebook was chosen and the
    weights assigned): its codebook is the layer's distinct non-zero values, so the model computes exactly
    what it did until the codebooks are trained (distillation after reconstruction)."""
    remove_masks(model)
    report = []
    with torch.no_grad():
        for path, layer in prunable_layers(model).items():
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
            weight = layer.weight.detach()
            mask = weight != 0
            values, codes = torch.unique(weight[mask], return_inverse=True)
            full = torch.zeros(weight.shape, dtype=torch.long, device=weight.device)
            full[mask] = codes
            sharing = SharedWeights(values if values.numel() else weight.new_zeros(1), full, mask)
            parametrize.register_parametrization(layer, "weight", sharing, unsafe=True)
            layer.parametrizations.weight.original.requires_grad_(False)  # type: ignore[union-attr]
            n = int(values.numel())
            report.append(LayerQuantization(path, max(1, (n - 1).bit_length()), n, int(mask.sum())))
    return report


def remove_sharing(model: nn.Module) -> nn.Module:
    """Bake the shared weights into plain tensors (each layer keeps at most ``2**bits`` distinct values)."""
    for layer in prunable_layers(model).values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model
