"""The registered networks: the paper's SqueezeNets, its variants, its design space and AlexNet.

Every entry point declares its options once, in ``@register_model``; the shared sets are below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import SqueezeNetError, brief
from .alexnet import AlexNet, AlexNetConfig
from .archs import register_arch
from .config import DESIGN_DEFAULTS, SqueezeNetConfig, design_space_config, small_image_stem, v1_0_config, v1_1_config
from .detector import Detector, DetectorConfig, build_detector
from .mobilenet_detector import MobileNetSSDLite, MobileNetSSDLiteConfig
from .mobilenet_segmenter import MobileNetLRASPP, MobileNetLRASPPConfig
from .registry import register_model
from .segmenter import Segmenter, SegmenterConfig, build_segmenter
from .squeezenet import SqueezeNet

register_arch("squeezenet", SqueezeNetConfig.from_dict, SqueezeNet)
register_arch("alexnet", AlexNetConfig.from_dict, AlexNet)

#: options of every SqueezeNet builder
HEAD: dict[str, Any] = {"num_classes": 1000, "in_chans": 3, "dropout": 0.5, "batch_norm": False}
#: the ImageNet builders: the small-image stem and the bypass variants on top
IMAGENET: dict[str, Any] = {**HEAD, "small_stem": False, "bypass": "none"}
#: the 32x32 builders: 10 classes, small stem always, optionally a max-pool after it
CIFAR: dict[str, Any] = {**HEAD, "num_classes": 10, "bypass": "none", "stem_pool": False}
#: the paper's section-5 metaparameters (their defaults give v1.0) and the macroarchitecture
DESIGN: dict[str, Any] = {**DESIGN_DEFAULTS, "macro": "1_0"}


def _build(config: SqueezeNetConfig, small_stem: bool = False, caffe_compat: bool = False,
           stem_pool: bool = False) -> SqueezeNet:
    if small_stem:
        stem = small_image_stem(config.stem.out_channels)
        config = replace(config, stem=replace(stem, pool=True) if stem_pool else stem)
    if caffe_compat:
        config = replace(config, classifier_padding=1)
    return SqueezeNet(config)


def _split(options: dict[str, Any], *names: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options that shape the stem (``names``) apart from those the config presets take."""
    return {k: options.pop(k) for k in names if k in options}, options


@register_model(input_size=224, **IMAGENET, caffe_compat=False)
def squeezenet1_0(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.0, the paper's Table 1 network (1.25M parameters, 0.82 GMACs at 224).

    ``caffe_compat=True`` gives conv10 the ``pad=1`` of the original Caffe release, which its
    published weights (including the Deep Compression model) need to be reproduced exactly.
    """
    stem, rest = _split(options, "small_stem", "caffe_compat")
    return _build(v1_0_config(**rest), **stem)


@register_model(input_size=224, **IMAGENET, caffe_compat=False)
def squeezenet1_1(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.1: v1.0's accuracy with 2.4x fewer MACs (1.24M parameters, 0.35 GMACs at 224)."""
    stem, rest = _split(options, "small_stem", "caffe_compat")
    return _build(v1_1_config(**rest), **stem)


@register_model(input_size=224, **HEAD, small_stem=False)
def squeezenet1_0_simple_bypass(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.0 with identity bypasses around fire3, 5, 7, 9 (paper section 6; no extra parameters)."""
    return squeezenet1_0(**options, bypass="simple")


@register_model(input_size=224, **HEAD, small_stem=False)
def squeezenet1_0_complex_bypass(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.0 with identity bypasses and 1x1-conv bypasses around fire2, 4, 6, 8 (section 6)."""
    return squeezenet1_0(**options, bypass="complex")


@register_model(input_size=32, **CIFAR)
def squeezenet1_0_cifar(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.0 for 32x32 images: small-image stem (3x3/1 conv, no pool), 10 classes.

    ``stem_pool=True`` puts a 3x3/2 max-pool after the stem (Fire modules then run at 16, 8 and 4 px):
    about 4x fewer MACs, for training on a CPU.
    """
    stem, rest = _split(options, "stem_pool")
    return _build(v1_0_config(**rest), small_stem=True, **stem)


@register_model(input_size=32, **CIFAR)
def squeezenet1_1_cifar(**options: Any) -> SqueezeNet:
    """SqueezeNet v1.1 for 32x32 images: small-image stem (3x3/1 conv, no pool), 10 classes.

    ``stem_pool=True`` as for ``squeezenet1_0_cifar``.
    """
    stem, rest = _split(options, "stem_pool")
    return _build(v1_1_config(**rest), small_stem=True, **stem)


@register_model(input_size=224, **DESIGN, **IMAGENET, stem_pool=False)
def squeezenet_design(**options: Any) -> SqueezeNet:
    """Any network of the paper's design space (section 5) from base_e, incr_e, pct3x3, freq and SR.

    Fire module i (0-based) gets e_i = base_e + incr_e * floor(i / freq) expand filters, a fraction
    pct3x3 of them 3x3, and SR * e_i squeeze filters. The defaults reproduce SqueezeNet v1.0.
    ``macro`` picks the v1.0 or v1.1 stem and pooling positions; ``small_stem`` (and ``stem_pool``) adapt
    it to 32x32 images as in the ``_cifar`` models.
    """
    stem, rest = _split(options, "small_stem", "stem_pool")
    return _build(design_space_config(**rest), **stem)


@register_model(input_size=224, num_classes=1000, in_chans=3, dropout=0.5)
def alexnet(**options: Any) -> AlexNet:
    """AlexNet, the paper's baseline (torchvision's variant: 61.1M parameters, 0.71 GMACs at 224)."""
    return AlexNet(AlexNetConfig(**options))


# --- detectors: a SqueezeNet body under a box head (models/detector.py) ---------------------------------------

register_arch("detector", DetectorConfig.from_dict, build_detector)
#: options of every detector builder: 80 classes (COCO), a 320x320 input, the v1.0 body as SqueezeDet has it
DETECT: dict[str, Any] = {"num_classes": 80, "image_size": 320, "body": "v1.0", "batch_norm": False}
_BODIES = {"v1.0": v1_0_config, "v1.1": v1_1_config}  # ("v": a bare 1_1 reads as the number 11 in YAML and --set)


def _body_config(body: str, batch_norm: bool) -> SqueezeNetConfig:
    if body not in _BODIES:
        raise SqueezeNetError(f"body must be v1.0 or v1.1 (the SqueezeNet under the head), got {brief(body)}")
    return _BODIES[body](batch_norm=batch_norm)


@register_model(input_size=320, **DETECT, dropout=0.5)
def squeezedet(**options: Any) -> Detector:
    """SqueezeDet (Wu et al. 2017): the body, fire10/fire11 and ConvDet, one 3x3 conv predicting boxes per anchor.

    Anchor shapes default to SqueezeDet's nine; ``squeezenet train`` fits them to the training boxes (k-means).
    """
    body = _body_config(options.pop("body"), options.pop("batch_norm"))
    return build_detector(DetectorConfig("convdet", backbone=body, **options))


@register_model(input_size=320, **DETECT)
def ssdlite_squeezenet(**options: Any) -> Detector:
    """SSDLite on SqueezeNet: torchvision's SSDLite head and default boxes on the stride 8-128 maps (multi-scale)."""
    body = _body_config(options.pop("body"), options.pop("batch_norm"))
    return build_detector(DetectorConfig("ssdlite", backbone=body, dropout=0.0, **options))


register_arch("ssdlite_mobilenet_v3", MobileNetSSDLiteConfig.from_dict, MobileNetSSDLite)


@register_model(input_size=320, num_classes=80, image_size=320)
def ssdlite_mobilenet_v3(**options: Any) -> Detector:
    """torchvision's ssdlite320_mobilenet_v3_large, the reference our detectors are measured against (random init).

    The same recipe, loss, decoding and export as our detectors; no ImageNet weights for its body travel."""
    return MobileNetSSDLite(MobileNetSSDLiteConfig(**options))


# --- segmenters: a SqueezeNet body under a per-pixel head (models/segmenter.py) -------------------------------

register_arch("segmenter", SegmenterConfig.from_dict, build_segmenter)
#: options of every segmenter builder: COCO's 80 classes and the background, a 320x320 input, the v1.0 body
SEGMENT: dict[str, Any] = {"num_classes": 81, "image_size": 320, "body": "v1.0", "batch_norm": False}


@register_model(input_size=320, **SEGMENT, inter_channels=128)
def lraspp_squeezenet(**options: Any) -> Segmenter:
    """LR-ASPP on SqueezeNet: torchvision's lite ASPP head on the stride-8 and stride-16 maps, bilinear to full size."""
    body = _body_config(options.pop("body"), options.pop("batch_norm"))
    return build_segmenter(SegmenterConfig("lraspp", backbone=body, **options))


@register_model(input_size=320, **SEGMENT, dropout=0.5)
def squeezeseg(**options: Any) -> Segmenter:
    """SqueezeSeg (Wu et al. 2018): the body, FireDeconv decoder with skip additions back to full resolution."""
    body = _body_config(options.pop("body"), options.pop("batch_norm"))
    return build_segmenter(SegmenterConfig("squeezeseg", backbone=body, **options))


register_arch("lraspp_mobilenet_v3", MobileNetLRASPPConfig.from_dict, MobileNetLRASPP)


@register_model(input_size=320, num_classes=81, image_size=320)
def lraspp_mobilenet_v3(**options: Any) -> Segmenter:
    """torchvision's lraspp_mobilenet_v3_large, the reference our segmenters are measured against (random init).

    The same recipe, loss, evaluation and export as our segmenters; no ImageNet weights for its body travel."""
    return MobileNetLRASPP(MobileNetLRASPPConfig(**options))
