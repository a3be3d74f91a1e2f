"""Training recipes: YAML files of model, data, optimiser and schedule settings.

Named recipes ship with the package (``squeezenet/recipes/*.yaml``; ``recipes/`` at the repository
root links there). Any field can be overridden with dotted keys: ``optimizer.lr=0.1``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..common.schema import from_dict
from ..errors import SqueezeNetError, brief


@dataclass
class OptimizerSpec:
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1  # peak learning rate for the global batch size
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # apply weight decay to BN parameters and biases too (Caffe does)
    backbone_lr: float = 1.0  # detectors: a pretrained body's learning rate as a fraction of lr (keeps its features)


@dataclass
class ScheduleSpec:
    name: Literal["onecycle", "linear", "step", "cosine", "constant"] = "onecycle"
    warmup_epochs: float = 0.0  # linear warm-up from 0 (linear, step, cosine)
    pct_start: float = 0.25  # onecycle: fraction of training spent rising to the peak
    step_epochs: int = 30  # step: multiply by gamma every step_epochs
    gamma: float = 0.1


@dataclass
class DataSpec:
    image_size: int = 224  # crop fed to the network
    resize: int = 256  # evaluation: shorter side before the centre crop
    # cifar: pad-crop + flip; imagenet: random-resized crop + flip; crop: resize, random crop + flip (as Caffe's
    # AlexNet/SqueezeNet were trained: mild, for distillation and short fine-tuning); none.
    # Detectors: detect (colour jitter, zoom out, IoU crop, flip: boxes follow) or flip; segmenters: segment (crop,
    # colour jitter, flip: masks follow) or flip
    augment: Literal["cifar", "imagenet", "crop", "detect", "segment", "flip", "none"] = "imagenet"
    in_memory: bool | None = None  # decode everything once; default: yes for images of 64 px or less
    workers: int = 4
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["RGB", "BGR"] = "RGB"  # what the network sees (BGR: Caffe models)
    value_range: float = 1.0  # pixels scaled to 0..1 (1.0) or left 0..255 (255.0, Caffe); mean/std in that range
    resize_mode: Literal["shorter", "square"] = "shorter"  # square: warp to resize x resize (Caffe's databases)
    limit_train: int | None = None  # use only the first N training images (smoke tests, subsets)
    limit_val: int | None = None
    # detectors and segmenters: train on these classes of the data only (``[person]``: person against background);
    # other objects are dropped, their pixels become background. null: every class of the data
    classes: tuple[str, ...] | None = None


@dataclass
class DistillSpec:
    """Knowledge distillation from a teacher model (passed to ``train(teacher=)``, not named here).

    The loss is ``weight * T**2 * KL(teacher || student at temperature T) + (1 - weight) * cross-entropy``;
    images without a label (an unlabelled folder) take the teacher's term alone."""

    weight: float = 1.0
    temperature: float = 1.0
    dropout: bool = False  # keep the student's dropout on (off: it matches the teacher's deterministic outputs)


@dataclass
class Recipe:
    name: str = "custom"
    description: str = ""
    model: str = "squeezenet1_1"
    model_options: dict[str, Any] = field(default_factory=dict)
    init: Literal["torchvision", "caffe", "msra"] = "torchvision"
    # detectors: ImageNet weights for the body (a file or a named weight set; null: randomly initialised)
    backbone_weights: str | None = None
    head_bias: float = 0.0  # initial conv10 bias: > 0 keeps the ReLU after conv10 from dying early (see init.py)
    epochs: int = 30
    batch_size: int = 128  # global: split over all devices
    label_smoothing: float = 0.0
    grad_clip_norm: float | None = None  # clip the global gradient norm (tames early updates of nets without BN)
    time_budget_s: float | None = None  # also end (with the schedule annealed) once training has taken this long
    seed: int = 0
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    data: DataSpec = field(default_factory=DataSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["mean"], d["data"]["std"] = list(self.data.mean), list(self.data.std)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "recipe") -> Recipe:
        return from_dict(cls, data, where)

    def validate(self) -> Recipe:
        if self.epochs < 1 or self.batch_size < 1:
            raise SqueezeNetError(f"recipe {self.name}: epochs and batch_size must be >= 1")
        if not self.optimizer.lr > 0:
            raise SqueezeNetError(f"recipe {self.name}: optimizer.lr must be > 0, got {self.optimizer.lr}")
        if self.time_budget_s == 0:
            self.time_budget_s = None  # 0 turns the budget off (as --time-budget 0 does)
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise SqueezeNetError(f"recipe {self.name}: time_budget_s must be > 0 (or 0 for none)")
        for name, value, low, high in (
                ("epochs", self.epochs, 1, 100_000), ("batch_size", self.batch_size, 1, 1 << 16),
                ("seed", self.seed, 0, 2**63 - 1), ("data.workers", self.data.workers, 0, 256),
                ("data.image_size", self.data.image_size, 8, 1024), ("data.resize", self.data.resize, 8, 4096),
                ("schedule.step_epochs", self.schedule.step_epochs, 1, 100_000),
                ("data.limit_train", self.data.limit_train or 1, 1, 2**40),
                ("data.limit_val", self.data.limit_val or 1, 1, 2**40)):
            if not low <= value <= high:
                raise SqueezeNetError(f"recipe {self.name}: {name} must be in {low:,}..{high:,}, got {brief(value)}")
        r, o = self.schedule, self.optimizer
        for fname, x, lo, hi in (
                ("optimizer.momentum", o.momentum, 0.0, 1.0), ("optimizer.weight_decay", o.weight_decay, 0.0, 1.0),
                ("optimizer.lr", o.lr, 0.0, 1e3), ("optimizer.backbone_lr", o.backbone_lr, 0.0, 1.0),
                ("schedule.pct_start", r.pct_start, 0.0, 1.0),
                ("schedule.gamma", r.gamma, 0.0, 1e6), ("schedule.warmup_epochs", r.warmup_epochs, 0.0, 1e5),
                ("grad_clip_norm", self.grad_clip_norm or 1.0, 1e-12, 1e12)):
            if not lo <= x <= hi:
                raise SqueezeNetError(f"recipe {self.name}: {fname} must be in [{lo:g}, {hi:g}], got {brief(x)}")
        if any(s <= 0 for s in self.data.std):
            raise SqueezeNetError(f"recipe {self.name}: data.std must be > 0, got {list(self.data.std)}")
        self._check_model()
        if not 0 <= self.label_smoothing < 1:
            raise SqueezeNetError(f"recipe {self.name}: label_smoothing must be in [0, 1)")
        if self.data.image_size < 8 or self.data.resize < self.data.image_size:
            raise SqueezeNetError(f"recipe {self.name}: need 8 <= data.image_size <= data.resize")
        if self.data.value_range not in (1.0, 255.0):
            raise SqueezeNetError(f"recipe {self.name}: data.value_range must be 1 or 255, got {self.data.value_range:g}")
        if not 0 <= self.distill.weight <= 1 or not 0 < self.distill.temperature <= 100:
            raise SqueezeNetError(f"recipe {self.name}: distill.weight must be in [0, 1] and distill.temperature in (0, 100]")
        return self

    def _check_model(self) -> None:
        """The model name and options, checked now (on the meta device: nothing allocated) rather than after the
        data has loaded."""
        import torch

        from ..models import create_model

        try:
            with torch.device("meta"):
                create_model(self.model, **{**self.model_options, "num_classes": 10})
        except TypeError as exc:  # an option of the wrong type reaching a builder
            raise SqueezeNetError(f"recipe {self.name}: model_options for {self.model}: {exc}") from None


def list_recipes() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("squeezenet.recipes").iterdir()
                  if p.name.endswith(".yaml"))


def _parse_value(text: str, key: str) -> Any:
    """A ``--set`` value as YAML (``0.1``, ``true``, ``[1, 2]``, ``null``); tags and malformed YAML are one line."""
    if text == "":
        return ""
    if len(text) > 10_000:
        raise SqueezeNetError(f"--set {key}: a value of {len(text):,} characters")
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        problem = ("a YAML tag, which is never read" if isinstance(exc, yaml.constructor.ConstructorError)
                   else getattr(exc, "problem", None) or type(exc).__name__)
        raise SqueezeNetError(f"--set {key}: {brief(text, 40)} is not a plain YAML value ({problem})") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SqueezeNetError(f"--set {key}: {brief(text, 40)} is not a finite number")
    return value


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``optimizer.lr``) in a recipe dict; string values are read as YAML scalars."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.replace("-", "_").split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SqueezeNetError(f"override {dotted}: {p} is not a section")
        node[leaf] = _parse_value(value, dotted) if isinstance(value, str) else value
    return out


def load_recipe(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """A named recipe (``paper``, ``torchvision``, ``cifar10``) or a YAML file, with overrides applied."""
    text = str(name_or_path)
    if text in list_recipes():
        raw = resources.files("squeezenet.recipes").joinpath(f"{text}.yaml").read_text()
        where = f"recipe {text}"
    else:
        path = Path(text)
        if not path.is_file():
            raise SqueezeNetError(f"unknown recipe {text!r}: not a file, and named recipes are {', '.join(list_recipes())}")
        raw, where = path.read_text(), str(path)
    try:
        data = yaml.safe_load(raw) or {}
    except (yaml.YAMLError, RecursionError) as exc:
        raise SqueezeNetError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SqueezeNetError(f"{where}: a recipe must be a YAML mapping")
    return Recipe.from_dict(apply_overrides(data, overrides or {}), where).validate()
