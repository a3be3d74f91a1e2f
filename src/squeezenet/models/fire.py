"""The Fire module: SqueezeNet's building block (Iandola et al. 2016, section 3.2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import SqueezeNetError, brief

Shortcut = Literal["none", "identity", "conv"]


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class Fire(nn.Module):
    """Squeeze with 1x1 convolutions, then expand with 1x1 and 3x3 convolutions, concatenated.

    The squeeze layer caps the number of input channels seen by the (9x more expensive) 3x3 filters,
    which is where SqueezeNet's parameter savings come from. Attribute names follow torchvision's
    ``Fire`` so that state_dicts are interchangeable; batch-norm layers and the bypass shortcut only
    add keys when they are switched on.

    Args:
        in_channels: channels of the input.
        squeeze: s1x1, filters of the squeeze layer.
        expand1x1: e1x1, 1x1 filters of the expand layer.
        expand3x3: e3x3, 3x3 filters of the expand layer (padding 1 keeps the spatial size).
        batch_norm: insert BatchNorm2d after every convolution (conv biases are then dropped).
        shortcut: the paper's bypass (section 6): ``"identity"`` adds the input to the output
            (needs ``in_channels == expand1x1 + expand3x3``), ``"conv"`` adds a 1x1 convolution of it.
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1x1: int,
        expand3x3: int,
        *,
        batch_norm: bool = False,
        shortcut: Shortcut = "none",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("squeeze", squeeze),
                            ("expand1x1", expand1x1), ("expand3x3", expand3x3)):
            if not isinstance(value, int) or value < 1:
                raise SqueezeNetError(f"Fire {name} must be a positive integer, got {brief(value)}")
        self.in_channels = in_channels
        self.out_channels = expand1x1 + expand3x3
        bias = not batch_norm
        self.squeeze = nn.Conv2d(in_channels, squeeze, kernel_size=1, bias=bias)
        self.squeeze_bn = _norm(squeeze, batch_norm)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1, bias=bias)
        self.expand1x1_bn = _norm(expand1x1, batch_norm)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1, bias=bias)
        self.expand3x3_bn = _norm(expand3x3, batch_norm)
        self.expand3x3_activation = nn.ReLU(inplace=True)

        self.shortcut: nn.Module | None
        if shortcut == "none":
            self.shortcut = None
        elif shortcut == "identity":
            if in_channels != self.out_channels:
                raise SqueezeNetError(
                    f"an identity bypass needs equal channels, got {in_channels} in and "
                    f"{self.out_channels} out (use shortcut='conv')"
                )
            self.shortcut = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, self.out_channels, kernel_size=1, bias=bias),
                _norm(self.out_channels, batch_norm),
            )
        else:
            raise SqueezeNetError(f"shortcut must be 'none', 'identity' or 'conv', got {brief(shortcut)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        out = torch.cat(
            [
                self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(s))),
                self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(s))),
            ],
            dim=1,
        )
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return out

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"
