"""The registered networks: the paper's SqueezeNets, its variants, its design space and AlexNet."""

from __future__ import annotations

from dataclasses import replace

from .alexnet import AlexNet, AlexNetConfig
from .config import (
    Bypass,
    Macro,
    SqueezeNetConfig,
    design_space_config,
    small_image_stem,
    v1_0_config,
    v1_1_config,
)
from .registry import register_arch, register_model
from .squeezenet import SqueezeNet

register_arch("squeezenet", SqueezeNetConfig.from_dict, SqueezeNet)
register_arch("alexnet", AlexNetConfig.from_dict, AlexNet)


def _finish(config: SqueezeNetConfig, small_stem: bool, caffe_compat: bool, stem_pool: bool = False) -> SqueezeNet:
    if small_stem:
        stem = small_image_stem(config.stem.out_channels)
        config = replace(config, stem=replace(stem, pool=True) if stem_pool else stem)
    if caffe_compat:
        config = replace(config, classifier_padding=1)
    return SqueezeNet(config)


@register_model(input_size=224)
def squeezenet1_0(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    dropout: float = 0.5,
    batch_norm: bool = False,
    small_stem: bool = False,
    bypass: Bypass = "none",
    caffe_compat: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.0, the paper's Table 1 network (1.25M parameters, 0.82 GMACs at 224).

    ``caffe_compat=True`` gives conv10 the ``pad=1`` of the original Caffe release, which its
    published weights (including the Deep Compression model) need to be reproduced exactly.
    """
    cfg = v1_0_config(num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                      batch_norm=batch_norm, bypass=bypass)
    return _finish(cfg, small_stem, caffe_compat)


@register_model(input_size=224)
def squeezenet1_1(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    dropout: float = 0.5,
    batch_norm: bool = False,
    small_stem: bool = False,
    bypass: Bypass = "none",
    caffe_compat: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.1: v1.0's accuracy with 2.4x fewer MACs (1.24M parameters, 0.35 GMACs at 224)."""
    cfg = v1_1_config(num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                      batch_norm=batch_norm, bypass=bypass)
    return _finish(cfg, small_stem, caffe_compat)


@register_model(input_size=224)
def squeezenet1_0_simple_bypass(
    *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5, batch_norm: bool = False,
    small_stem: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.0 with identity bypasses around fire3, 5, 7, 9 (paper section 6; no extra parameters)."""
    return squeezenet1_0(num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                         batch_norm=batch_norm, small_stem=small_stem, bypass="simple")


@register_model(input_size=224)
def squeezenet1_0_complex_bypass(
    *, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5, batch_norm: bool = False,
    small_stem: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.0 with identity bypasses and 1x1-conv bypasses around fire2, 4, 6, 8 (section 6)."""
    return squeezenet1_0(num_classes=num_classes, in_chans=in_chans, dropout=dropout,
                         batch_norm=batch_norm, small_stem=small_stem, bypass="complex")


@register_model(input_size=32)
def squeezenet1_0_cifar(
    *, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.5, batch_norm: bool = False,
    bypass: Bypass = "none", stem_pool: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.0 for 32x32 images: small-image stem (3x3/1 conv, no pool), 10 classes.

    ``stem_pool=True`` puts a 3x3/2 max-pool after the stem (Fire modules then run at 16, 8 and 4 px):
    about 4x fewer MACs, for training on a CPU.
    """
    cfg = v1_0_config(num_classes=num_classes, in_chans=in_chans, dropout=dropout, batch_norm=batch_norm, bypass=bypass)
    return _finish(cfg, small_stem=True, caffe_compat=False, stem_pool=stem_pool)


@register_model(input_size=32)
def squeezenet1_1_cifar(
    *, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.5, batch_norm: bool = False,
    bypass: Bypass = "none", stem_pool: bool = False,
) -> SqueezeNet:
    """SqueezeNet v1.1 for 32x32 images: small-image stem (3x3/1 conv, no pool), 10 classes.

    ``stem_pool=True`` puts a 3x3/2 max-pool after the stem (Fire modules then run at 16, 8 and 4 px):
    about 4x fewer MACs, for training on a CPU.
    """
    cfg = v1_1_config(num_classes=num_classes, in_chans=in_chans, dropout=dropout, batch_norm=batch_norm, bypass=bypass)
    return _finish(cfg, small_stem=True, caffe_compat=False, stem_pool=stem_pool)


@register_model(input_size=224)
def squeezenet_design(
    *,
    base_e: int = 128,
    incr_e: int = 128,
    pct3x3: float = 0.5,
    freq: int = 2,
    sr: float = 0.125,
    macro: Macro = "1_0",
    num_classes: int = 1000,
    in_chans: int = 3,
    dropout: float = 0.5,
    batch_norm: bool = False,
    small_stem: bool = False,
    stem_pool: bool = False,
    bypass: Bypass = "none",
) -> SqueezeNet:
    """Any network of the paper's design space (section 5) from base_e, incr_e, pct3x3, freq and SR.

    Fire module i (0-based) gets e_i = base_e + incr_e * floor(i / freq) expand filters, a fraction
    pct3x3 of them 3x3, and SR * e_i squeeze filters. The defaults reproduce SqueezeNet v1.0.
    ``macro`` picks the v1.0 or v1.1 stem and pooling positions; ``small_stem`` (and ``stem_pool``) adapt
    it to 32x32 images as in the ``_cifar`` models.
    """
    cfg = design_space_config(base_e, incr_e, pct3x3, freq, sr, macro, num_classes=num_classes,
                              in_chans=in_chans, dropout=dropout, batch_norm=batch_norm, bypass=bypass)
    return _finish(cfg, small_stem, caffe_compat=False, stem_pool=stem_pool)


@register_model(input_size=224)
def alexnet(*, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.5) -> AlexNet:
    """AlexNet, the paper's baseline (torchvision's variant: 61.1M parameters, 0.71 GMACs at 224)."""
    return AlexNet(AlexNetConfig(num_classes=num_classes, in_chans=in_chans, dropout=dropout))
