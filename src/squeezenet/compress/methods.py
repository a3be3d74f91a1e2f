"""How to compress: one typed config per method, as torchao's ``quantize_(model, Int8WeightOnlyConfig())`` does it
(the config's type picks the method). Each holds what its method needs and nothing else, so a combination that
has no meaning (a byte budget while fine-tuning on labels, distillation without data) cannot be written, and the
defaults live here alone: ``squeezenet compress`` builds its flags and their help from these fields.

- :class:`PostTraining`: no data. Prune by magnitude, share weights by k-means (optimal start: it loses the least
  with nothing to repair it).
- :class:`SideDataOnly`: no data and a byte budget: the side data's precision (codebooks, biases) is spent first,
  which keeps every answer; k-means with fewer bits only when that is not enough.
- :class:`Reconstruct`: a folder of unlabelled images. Each layer's weights are chosen for its output on them
  (GPTQ-style); with ``max_bytes`` a grid per layer by measured sensitivity per byte; ``centroid_epochs`` distil
  the codebooks on the input model's outputs.
- :class:`FineTune`: labelled training data (classes, boxes or masks). Pruning during fine-tuning (Han et al.),
  k-means, then the centroids fine-tuned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import SqueezeNetError
from .kmeans import Init


def cli(help: str, **argparse: Any) -> dict[str, Any]:
    """A field's command-line face (``help``, and ``metavar``/``type``/``choices``/``flag`` for argparse)."""
    return {"help": help, **argparse}


@dataclass(frozen=True, kw_only=True)
class Method:
    """What every method does first: magnitude pruning (a density or Han et al.'s quality threshold, per layer if
    wanted), then weight sharing with ``bits``-bit codebook indices."""

    density: str | float | None = field(default=None, metadata=cli(
        "fraction of weights kept: 0.33, or per layer '0.3,conv1=1,fire9=0.5,conv10=0.2' (paper names or module "
        "paths; the bare number is the default)", metavar="SPEC"))
    quality: str | float | None = field(default=None, metadata=cli(
        "Han et al.'s threshold: prune |w| <= quality x std of the layer (same syntax as --density)", metavar="SPEC"))
    bits: str | int = field(default=6, metadata=cli(
        "codebook index bits: 6, or per layer '5,conv1=8,conv10=6'", metavar="SPEC"))

    def __post_init__(self) -> None:
        if self.density is not None and self.quality is not None:
            raise SqueezeNetError("give a pruning density or a quality, not both")

    @property
    def pruning(self) -> tuple[str | float, Literal["density", "quality"]] | None:
        """(the targets spec, its kind), or None when nothing is pruned."""
        if self.density is not None:
            return self.density, "density"
        return (self.quality, "quality") if self.quality is not None else None

    def record(self) -> dict[str, Any]:
        """What a work directory remembers of this compression (a resume must ask for the same)."""
        return {"method": type(self).__name__, **{k: str(v) if isinstance(v, Path) else v
                                                  for k, v in dataclasses.asdict(self).items()}}


@dataclass(frozen=True, kw_only=True)
class PostTraining(Method):
    """No data: prune, share weights by k-means."""

    init: Init = field(default="optimal", metadata=cli(
        "k-means start: linear (Han et al.: spread over the weights' range) or optimal (least squares)",
        choices=("linear", "optimal")))


@dataclass(frozen=True, kw_only=True)
class SideDataOnly(Method):
    """No data, a byte budget: the finest side data (codebooks, biases) whose file fits."""

    max_bytes: int = field(metadata=cli(
        "the .sqz must fit N bytes: with --calibration, a grid per layer chosen by measured sensitivity per byte; "
        "without, the finest side data (codebooks, biases) that fits, which keeps every answer", metavar="N", type=int))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_bytes < 1024:
            raise SqueezeNetError(f"max_bytes={self.max_bytes}: a .sqz file needs more than 1 KB for its header alone")


@dataclass(frozen=True, kw_only=True)
class _Tuning:
    """What every phase of training during compression takes."""

    centroid_lr: float = field(default=1e-4, metadata=cli(
        "learning rate of the centroid fine-tuning (Adam: a centroid's gradient sums thousands of members', so SGD "
        "steps explode)", type=float))
    budget_s: float | None = field(default=None, metadata=cli(
        "time limit per fine-tuning phase", flag="--budget", metavar="SECONDS", type=float))
    recipe: str | None = field(default=None, metadata=cli(
        "base recipe for fine-tuning (default: cifar10 for small inputs, torchvision for ImageNet ones, a detector's "
        "or segmenter's own)"))
    overrides: dict[str, Any] = field(default_factory=dict, metadata=cli(
        "override a fine-tuning recipe field, repeatable: --set batch_size=64 --set data.limit_train=5000",
        flag="--set"))

    def _check_tuning(self, epochs: int) -> None:
        if epochs < 0 or self.centroid_lr <= 0 or (self.budget_s is not None and self.budget_s <= 0):
            raise SqueezeNetError("fine-tuning epochs must be >= 0, the learning rate and the time limit > 0")


@dataclass(frozen=True, kw_only=True)
class Reconstruct(_Tuning, Method):
    """Unlabelled images: weights chosen for each layer's output on them."""

    calibration: str | Path = field(metadata=cli(
        "a folder of unlabelled images (a few hundred): each layer's weights are then chosen for its output on "
        "them (GPTQ-style reconstruction) instead of rounded to the nearest centroid", metavar="DIR"))
    max_bytes: int | None = field(default=None, metadata=SideDataOnly.__dataclass_fields__["max_bytes"].metadata)
    centroid_epochs: int = field(default=0, metadata=cli(
        "epochs of centroid fine-tuning after weight sharing; with --calibration: distillation of codebooks and "
        "biases on the input model's outputs (0 measured no worse, docs/compression.md)", type=int))

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_tuning(self.centroid_epochs)
        if self.max_bytes is not None and self.max_bytes < 1024:
            raise SqueezeNetError(f"max_bytes={self.max_bytes}: a .sqz file needs more than 1 KB for its header alone")


@dataclass(frozen=True, kw_only=True)
class FineTune(_Tuning, Method):
    """Labelled data: pruning during fine-tuning, k-means, the centroids fine-tuned."""

    data: str = field(metadata=cli("training data for fine-tuning, as `squeezenet train --data` takes it"))
    data_root: str | Path | None = field(default=None, metadata=cli(
        "where named datasets live (default $SQUEEZENET_DATA)"))
    finetune_epochs: int = field(default=0, metadata=cli("epochs of fine-tuning while pruning", type=int))
    centroid_epochs: int = field(default=1, metadata=Reconstruct.__dataclass_fields__["centroid_epochs"].metadata)
    schedule: Literal["gradual", "oneshot"] = field(default="gradual", metadata=cli(
        "prune along a cubic schedule during fine-tuning, or all at once first", choices=("gradual", "oneshot")))
    lr: float | None = field(default=None, metadata=cli(
        "peak learning rate while pruning (cosine; default: SGD at 0.02 for classifiers; a detector's or "
        "segmenter's recipe optimizer, AdamW, at a tenth of its rate)", type=float))
    init: Init = field(default="linear", metadata=PostTraining.__dataclass_fields__["init"].metadata)
    distill: float = field(default=0.0, metadata=cli(
        "share W (0..1) of the fine-tuning loss taken from the input model's outputs (KL, knowledge "
        "distillation), the rest from the labels; classifiers only", metavar="W", type=float))

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_tuning(min(self.finetune_epochs, self.centroid_epochs))
        if self.lr is not None and self.lr <= 0:
            raise SqueezeNetError("the learning rate must be > 0")
        if not 0 <= self.distill <= 1:
            raise SqueezeNetError(f"distill={self.distill:g}: the teacher's share of the loss is between 0 and 1")
        if self.schedule not in ("gradual", "oneshot"):
            raise SqueezeNetError(f"schedule must be gradual or oneshot, got {self.schedule!r}")
        if not self.finetune_epochs and not self.centroid_epochs:
            raise SqueezeNetError("fine-tuning with no epochs: give finetune_epochs or centroid_epochs, or compress "
                                  "without data (PostTraining)")


METHODS: tuple[type[Method], ...] = (FineTune, Reconstruct, SideDataOnly, PostTraining)
