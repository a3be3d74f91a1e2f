"""Fold batch-norm into the preceding convolutions: the plain architecture with the same function.

Compression acts on the weights a deployed model computes with, so a network trained with
batch-norm is folded first (``w' = w * g / sqrt(v + eps)``, ``b' = beta + (b - m) * g / sqrt(v + eps)``,
per output channel); zeros stay zeros, so pruned weights remain pruned.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import SqueezeNetError
from ..models import Network, model_from_config


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every conv in definition order, with the batch-norm registered right after it (if any)."""
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for i, m in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            bn = nxt if isinstance(nxt, nn.BatchNorm2d) and nxt.num_features == m.out_channels else None
            pairs.append((m, bn))
    return pairs


def fold_batch_norm(model: Network) -> Network:
    """A new model without batch-norm computing the same function (eval mode), with the same meta but for
    ``batch_norm``; returns ``model`` if it has none."""
    config = model.meta.config
    if not getattr(config, "batch_norm", False):  # AlexNet's config has no such field
        return model
    plain = model_from_config(dataclasses.replace(config, batch_norm=False))  # type: ignore[type-var]
    source, target = _conv_bn_pairs(model), _conv_bn_pairs(plain)
    if len(source) != len(target):
        raise SqueezeNetError(f"cannot fold batch-norm: {len(source)} convolutions vs {len(target)} in the plain model")
    with torch.no_grad():
        for (conv, bn), (dst, _) in zip(source, target):
            assert dst.bias is not None  # the plain architecture has conv biases where batch-norm had shifts
            weight = conv.weight.detach().double()
            bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
            if bn is not None:
                mean, var = bn.running_mean, bn.running_var
                assert mean is not None and var is not None  # batch-norm in eval mode keeps running statistics
                scale = bn.weight.double() / torch.sqrt(var.double() + bn.eps)
                weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
                bias = bn.bias.double() + (bias - mean.double()) * scale
            dst.weight.copy_(weight.float())
            dst.bias.copy_(bias.float())
    plain.meta = model.meta.replace(config=plain.config)
    return plain.eval()
