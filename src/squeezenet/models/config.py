"""Serialisable architecture descriptions.

A :class:`SqueezeNetConfig` says everything needed to rebuild a network: every file this toolkit
writes stores ``config.to_dict()`` so that it can be turned back into a model with no other input.
The presets below are the paper's networks; :func:`design_space_config` is its section-5 design space.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ..common.schema import from_dict
from ..errors import SqueezeNetError, brief, count

Bypass = Literal["none", "simple", "complex"]
CONFIG_VERSION = 1
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; a file claiming more is refused before anything is allocated
# Bounds a config from a file must keep before anything is built from it (a 20 KB file can claim any size):
MAX_CHANNELS = 1 << 14  # filters in one layer (v1.0's widest has 256; the design space's 2,048 at most)
MAX_KERNEL = 15  # conv1's kernel (v1.0: 7; AlexNet: 11)
MAX_FIRES = 64  # Fire modules (the paper's networks have 8)
MAX_PARAMETERS = 200_000_000  # AlexNet has 61M, SqueezeNet v1.0 1.25M
MAX_CLASSIFIER_PADDING = 2  # conv10's padding (the Caffe release uses 1; each unit grows every output map)
Macro = Literal["1_0", "1_1"]

_BYPASSES = ("none", "simple", "complex")


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum:,}"
        raise SqueezeNetError(f"{name} must be an integer {bounds}, got {brief(value)}")


@dataclass(frozen=True)
class FireSpec:
    """Filter counts of one Fire module: s1x1, e1x1, e3x3."""

    squeeze: int
    expand1x1: int
    expand3x3: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_int(f"FireSpec.{f.name}", getattr(self, f.name), 1, MAX_CHANNELS)

    @property
    def out_channels(self) -> int:
        return self.expand1x1 + self.expand3x3


@dataclass(frozen=True)
class StemSpec:
    """The first convolution (``conv1``) and whether a 3x3/2 max-pool follows it."""

    out_channels: int
    kernel_size: int
    stride: int
    padding: int = 0
    pool: bool = True

    def __post_init__(self) -> None:
        _check_int("stem.out_channels", self.out_channels, 1, MAX_CHANNELS)
        _check_int("stem.kernel_size", self.kernel_size, 1, MAX_KERNEL)
        _check_int("stem.stride", self.stride, 1, MAX_KERNEL)
        _check_int("stem.padding", self.padding, 0, self.kernel_size)


# The stems of the two published versions and the small-image stem used for 32x32 inputs.
STEM_V1_0 = StemSpec(out_channels=96, kernel_size=7, stride=2)
STEM_V1_1 = StemSpec(out_channels=64, kernel_size=3, stride=2)


def small_image_stem(out_channels: int) -> StemSpec:
    """A 3x3 stride-1 stem without max-pool, for 32x32 images such as CIFAR-10.

    The ImageNet stems shrink the image 4x before the first Fire module (7x7/2 conv + 3x3/2 pool),
    which would leave a 32x32 image 8x8 at fire2 and 2x2 at conv10: too little for the later Fire
    modules' 3x3 filters to see any spatial context. Keeping full resolution through the stem and
    relying on the network's two remaining max-pools gives 32 -> 16 -> 8, so conv10 sees an 8x8 map,
    close to the 13x13 it sees on ImageNet; the 3x3 kernel (instead of 7x7) matches the smaller scale
    of CIFAR objects. This is the usual adaptation of ImageNet CNNs to CIFAR (as in ResNet's CIFAR nets).
    """
    return StemSpec(out_channels=out_channels, kernel_size=3, stride=1, padding=1, pool=False)


class ClassifierOutputs:
    """What a classifier's config says of its outputs (SqueezeNet's and AlexNet's): the task and their shape."""

    num_classes: int

    @property
    def task(self) -> str:
        """What the model's outputs mean: ``classify`` (logits per class)."""
        return "classify"

    def output_shape(self) -> tuple[int, ...]:
        """What the network returns per image: one logit per class."""
        return (self.num_classes,)


@dataclass(frozen=True)
class SqueezeNetConfig(ClassifierOutputs):
    """Architecture of one SqueezeNet-family network.

    Attributes:
        fires: the Fire modules in order (the paper's fire2 ... fire9 for the published nets).
        stem: ``conv1`` and its max-pool.
        pool_after: 0-based indices into ``fires`` that are followed by a 3x3/2 max-pool (ceil mode).
        bypass: section 6's macroarchitecture: ``"simple"`` adds identity shortcuts around every
            Fire module whose input and output channels match (fire3, 5, 7, 9 in v1.0);
            ``"complex"`` also adds 1x1-conv shortcuts around the others.
        num_classes, in_chans, dropout: classifier size, input channels, dropout before conv10.
        batch_norm: BatchNorm2d after every convolution but conv10 (not in the paper).
        classifier_padding: padding of conv10; the original Caffe v1.0 release uses 1.
    """

    fires: tuple[FireSpec, ...]
    stem: StemSpec = STEM_V1_0
    pool_after: tuple[int, ...] = (2, 6)
    bypass: Bypass = "none"
    num_classes: int = 1000
    in_chans: int = 3
    dropout: float = 0.5
    batch_norm: bool = False
    classifier_padding: int = 0
    arch: str = field(default="squeezenet", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)  # stored in every file; bumped when fields change meaning

    def __post_init__(self) -> None:
        if not self.fires or len(self.fires) > MAX_FIRES:
            raise SqueezeNetError(f"a SqueezeNet needs 1 to {MAX_FIRES} Fire modules, got {len(self.fires):,}")
        for i in self.pool_after:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.fires):
                raise SqueezeNetError(f"pool_after index {brief(i)} is not a Fire module index 0..{len(self.fires) - 1}")
        if len(set(self.pool_after)) != len(self.pool_after):
            raise SqueezeNetError(f"pool_after has repeated indices: {self.pool_after}")
        if self.bypass not in _BYPASSES:
            raise SqueezeNetError(f"bypass must be one of {', '.join(_BYPASSES)}, got {brief(self.bypass)}")
        _check_int("num_classes", self.num_classes, 1)
        if self.num_classes > MAX_CLASSES:
            raise SqueezeNetError(f"num_classes {count(self.num_classes)} is more than this toolkit builds ({MAX_CLASSES:,})")
        _check_int("in_chans", self.in_chans, 1, MAX_CHANNELS)
        _check_int("classifier_padding", self.classifier_padding, 0, MAX_CLASSIFIER_PADDING)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise SqueezeNetError(f"dropout must be a probability in [0, 1), got {brief(self.dropout)}")
        if not isinstance(self.batch_norm, bool):
            raise SqueezeNetError(f"batch_norm must be true or false, got {brief(self.batch_norm)}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise SqueezeNetError(f"this architecture has {count(self.num_parameters())} parameters, more than this toolkit "
                                  f"builds ({MAX_PARAMETERS:,})")

    def num_parameters(self) -> int:
        """Weights and biases (batch-norm and bypass convolutions included), counted without building anything."""
        def conv(cin: int, cout: int, k: int) -> int:
            return cout * (cin * k * k + 1) + (2 * cout if self.batch_norm else 0)

        total = conv(self.in_chans, self.stem.out_channels, self.stem.kernel_size)
        for cin, spec, shortcut in zip(self.fire_inputs(), self.fires, self.shortcuts()):
            total += conv(cin, spec.squeeze, 1) + conv(spec.squeeze, spec.expand1x1, 1)
            total += conv(spec.squeeze, spec.expand3x3, 3)
            total += conv(cin, spec.out_channels, 1) if shortcut == "conv" else 0
        return total + self.num_features * self.num_classes + self.num_classes

    def largest_activation(self, size: int) -> int:
        """Elements of the largest feature map one ``size`` x ``size`` image makes (what running it costs);
        0 when the input is too small for this architecture (a convolution or pooling leaves nothing)."""
        def pool(n: int) -> int:  # 3x3/2, ceil mode, as torch computes it: 0 means the map vanished
            return -(-(n - 3) // 2) + 1

        side = (size + 2 * self.stem.padding - self.stem.kernel_size) // self.stem.stride + 1
        if side < 1:
            return 0
        largest = self.stem.out_channels * side * side
        side = pool(side) if self.stem.pool else side
        for i, spec in enumerate(self.fires):
            if side < 1:
                return 0
            largest = max(largest, (spec.out_channels + spec.squeeze) * side * side)
            side = pool(side) if i in self.pool_after else side
        if side < 1:
            return 0
        side += 2 * self.classifier_padding
        return max(largest, self.num_classes * side * side)

    @property
    def num_features(self) -> int:
        """Channels entering the classifier (conv10)."""
        return self.fires[-1].out_channels

    def fire_inputs(self) -> list[int]:
        """Input channels of every Fire module."""
        chans = [self.stem.out_channels]
        for spec in self.fires[:-1]:
            chans.append(spec.out_channels)
        return chans

    def shortcuts(self) -> list[str]:
        """The shortcut of every Fire module (``"none"``, ``"identity"`` or ``"conv"``) under ``bypass``."""
        kinds = []
        for cin, spec in zip(self.fire_inputs(), self.fires):
            same = cin == spec.out_channels
            if self.bypass == "none":
                kinds.append("none")
            elif self.bypass == "simple":
                kinds.append("identity" if same else "none")
            else:
                kinds.append("identity" if same else "conv")
        return kinds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (stored in every file this toolkit writes)."""
        d = asdict(self)
        d["fires"] = [asdict(f) for f in self.fires]
        d["pool_after"] = list(self.pool_after)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "SqueezeNet config") -> SqueezeNetConfig:
        """Rebuild a config from :meth:`to_dict`'s output, rejecting unknown, missing or ill-typed fields."""
        return from_dict(cls, data, where)


# --- the published networks -------------------------------------------------------------------

V1_0_FIRES = (
    FireSpec(16, 64, 64),
    FireSpec(16, 64, 64),
    FireSpec(32, 128, 128),
    FireSpec(32, 128, 128),
    FireSpec(48, 192, 192),
    FireSpec(48, 192, 192),
    FireSpec(64, 256, 256),
    FireSpec(64, 256, 256),
)


def v1_0_config(**options: Any) -> SqueezeNetConfig:
    """SqueezeNet v1.0 (the paper's Table 1): 96-filter 7x7/2 stem, pools after conv1, fire4, fire8."""
    return SqueezeNetConfig(fires=V1_0_FIRES, stem=STEM_V1_0, pool_after=(2, 6), **options)


def v1_1_config(**options: Any) -> SqueezeNetConfig:
    """SqueezeNet v1.1: 64-filter 3x3/2 stem and earlier pools (after conv1, fire3, fire5), 2.4x fewer MACs."""
    return SqueezeNetConfig(fires=V1_0_FIRES, stem=STEM_V1_1, pool_after=(1, 3), **options)


# --- the design space (section 5) -------------------------------------------------------------

_MACROS: dict[str, tuple[StemSpec, tuple[int, ...]]] = {
    "1_0": (STEM_V1_0, (2, 6)),
    "1_1": (STEM_V1_1, (1, 3)),
}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def design_space_fires(
    base_e: int = 128,
    incr_e: int = 128,
    pct3x3: float = 0.5,
    freq: int = 2,
    sr: float = 0.125,
    num_fires: int = 8,
) -> tuple[FireSpec, ...]:
    """Fire dimensions from the paper's metaparameters.

    For Fire module i (0-based): e_i = base_e + incr_e * floor(i / freq) expand filters, of which
    e3x3 = pct3x3 * e_i are 3x3, and s1x1 = SR * e_i squeeze filters. Fractional filter counts are
    rounded half up; every layer keeps at least one filter of each kind.
    The defaults (128, 128, 0.5, 2, 0.125) give SqueezeNet v1.0's Fire modules exactly.
    """
    _check_int("base_e", base_e, 1)
    _check_int("incr_e", incr_e, 0)
    _check_int("freq", freq, 1)
    _check_int("num_fires", num_fires, 1)
    if isinstance(pct3x3, bool) or not isinstance(pct3x3, (int, float)) or not 0.0 < pct3x3 < 1.0:
        raise SqueezeNetError(f"pct3x3 must be strictly between 0 and 1, got {brief(pct3x3)}")
    if isinstance(sr, bool) or not isinstance(sr, (int, float)) or not (sr > 0 and math.isfinite(sr)):
        raise SqueezeNetError(f"SR (squeeze ratio) must be > 0, got {brief(sr)}")
    specs = []
    for i in range(num_fires):
        e = base_e + incr_e * (i // freq)
        if e < 2:
            raise SqueezeNetError(f"fire{i + 2} would have {e} expand filters; it needs at least 2 (one 1x1, one 3x3)")
        e3 = min(max(_round_half_up(pct3x3 * e), 1), e - 1)
        s = max(_round_half_up(sr * e), 1)
        specs.append(FireSpec(squeeze=s, expand1x1=e - e3, expand3x3=e3))
    return tuple(specs)


#: the section-5 metaparameters, with their defaults (SqueezeNet v1.0), as :func:`design_space_fires` declares them
DESIGN_DEFAULTS: dict[str, Any] = {k: p.default for k, p in inspect.signature(design_space_fires).parameters.items()
                                   if k != "num_fires"}


def design_space_config(macro: Macro = "1_0", **options: Any) -> SqueezeNetConfig:
    """A network of the paper's design space on the v1.0 (or v1.1) macroarchitecture.

    ``options`` are :func:`design_space_fires`'s metaparameters (``base_e``, ``incr_e``, ``pct3x3``, ``freq``,
    ``sr``) and :class:`SqueezeNetConfig` fields (``num_classes``, ``batch_norm``...).
    """
    if macro not in _MACROS:
        raise SqueezeNetError(f"macro must be one of {', '.join(_MACROS)}, got {brief(macro)}")
    stem, pools = _MACROS[macro]
    fires = design_space_fires(**{k: options.pop(k) for k in DESIGN_DEFAULTS if k in options})
    return SqueezeNetConfig(fires=fires, stem=options.pop("stem", stem), pool_after=pools, **options)
