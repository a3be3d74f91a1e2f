"""Side data on a fine grid: codebooks and biases rounded to ``2**-bits`` of each tensor's largest value.

A weight-shared model stores, besides its index streams, each layer's codebook and bias as float32
(the published SqueezeNet: 33.7 KB of its 534 KB lossless ``.sqz``). Those values need far fewer
significant bits than float32 carries: rounded to a power-of-two grid (``bits`` bits below the
tensor's largest magnitude), they are stored as small integers (see :func:`squeezenet.weights.sqz.float_grid`)
while the network's answers stay the same (measured in ``docs/compression.md``). Weights that are kept
stay non-zero (a value that would round to zero becomes one grid step), so masks do not change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ..errors import SqueezeNetError
from ..models.layers import prunable_layers

DEFAULT_WEIGHT_BITS = 20  # codebooks: max |logit change| 3.4e-4 on the calibration images (docs/compression.md)
DEFAULT_BIAS_BITS = 12  # a bias error adds straight to one channel: 12 places moved no logit by more than 1e-4
FIRST_LAYER_EXTRA = 3  # the layer that sees raw pixels (Caffe inputs span +-128) moved the logits 10x more


def grid_step(values: torch.Tensor, bits: int) -> float:
    """The power of two ``bits`` binary places below the largest magnitude (1.0 for an all-zero tensor)."""
    top = float(values.abs().max()) if values.numel() else 0.0
    return 2.0 ** (math.floor(math.log2(top)) - bits) if top > 0 else 1.0


def round_to_grid(values: torch.Tensor, step: float, keep_nonzero: bool = False) -> torch.Tensor:
    """``values`` rounded to multiples of ``step`` (exact in float32 for power-of-two steps)."""
    rounded = torch.round(values.double() / step) * step
    if keep_nonzero:
        rounded = torch.where((rounded == 0) & (values != 0), torch.sign(values.double()) * step, rounded)
    return rounded.to(values.dtype)


@torch.no_grad()
def snap_side_values(model: nn.Module, weight_bits: int = DEFAULT_WEIGHT_BITS, bias_bits: int = DEFAULT_BIAS_BITS,
                     first_layer_extra: int = FIRST_LAYER_EXTRA, skip_weights: Iterable[str] = ()) -> nn.Module:
    """Round every prunable layer's weights and bias to its own grid, in place (``skip_weights``: layer paths
    whose weights are already on a grid of their own).

    Meant for weight-shared layers, where this rounds the codebook (a dense layer becomes a shared one
    with up to ``2**(bits+1)`` values, which is lossy compression, not side data)."""
    for bits in (weight_bits, bias_bits):
        if not 4 <= bits <= 23:
            raise SqueezeNetError(f"{bits} grid bits: use 4 to 23 binary places (float32 has 23)")
    skipped = set(skip_weights)
    for i, (path, layer) in enumerate(prunable_layers(model).items()):
        weight = layer.weight
        if path not in skipped:
            bits = min(23, weight_bits + (first_layer_extra if i == 0 else 0))
            weight.copy_(round_to_grid(weight, grid_step(weight, bits), keep_nonzero=True))
        if layer.bias is not None:
            layer.bias.copy_(round_to_grid(layer.bias, grid_step(layer.bias, bias_bits)))
    return model
