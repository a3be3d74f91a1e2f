"""Fine-tuning after pruning and quantization, on the same Lightning trainer as ``squeezenet train``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from ..models import Network
from ..train import Recipe, apply_overrides, load_recipe, train
from .prune import apply_counts, gradual_fraction

logger = logging.getLogger(__name__)
UNLABELLED_BATCH = 25  # a few hundred calibration images: enough steps per epoch to learn from
CLASSIFIER_LR = 0.02  # SGD's peak rate while pruning a classifier
#: a detector fine-tunes at this share of its recipe's peak rate (the detect recipe: AdamW 1e-3 -> 1e-4), the rate its
#: ImageNet body learned at while it was trained (README "Detect objects": pruning fine-tuning, measured)
DETECTOR_LR_SHARE = 0.1


class GradualPruning(L.Callback):
    """Prunes from the current counts to ``final`` along Zhu & Gupta's cubic curve during the first
    ``end`` share of training, re-ranking weights by magnitude every ``every`` steps.

    Short runs re-rank more often (at least ``min_updates`` times inside the pruning window), so the
    target is always reached with the last ``1 - end`` of training left to recover; with a fixed
    interval, a run shorter than it would prune everything at its very end, untrained and unvalidated.
    """

    def __init__(self, initial: Mapping[str, int], final: Mapping[str, int], end: float = 0.6, every: int = 20,
                 min_updates: int = 10):
        self.initial, self.final, self.end, self.max_every, self.min_updates = dict(initial), dict(final), end, every, min_updates
        self.every = every
        self._last = -1.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        window = self.end * max(1, int(trainer.estimated_stepping_batches))  # steps in which pruning happens
        self.every = max(1, min(self.max_every, int(window // self.min_updates)))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every:
            return
        share = gradual_fraction(pl_module.progress(), 0.0, self.end)  # type: ignore[operator]
        if share > self._last:
            self._last = share
            counts = {p: round(self.initial[p] - share * (self.initial[p] - self.final[p])) for p in self.final}
            apply_counts(pl_module.model, counts)  # type: ignore[arg-type]

    def state_dict(self) -> dict:  # saved in the epoch checkpoints: a resumed run re-ranks on the same steps
        return {"last": self._last}

    def load_state_dict(self, state_dict: dict) -> None:
        self._last = float(state_dict["last"])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last < 1.0:  # a time budget stopped training before the schedule ended
            logger.warning(f"pruning stopped {self._last:.0%} of the way to its target; the rest is pruned now, "
                           "without fine-tuning: give it more epochs or time")
        apply_counts(pl_module.model, self.final)  # type: ignore[arg-type]


def finetune_recipe(model: Network, *, epochs: int, lr: float | None = None, base: str | None = None,
                    optimizer: str | None = None, weight_decay: float | None = None, time_budget_s: float | None = None,
                    distill: float = 0.0, unlabelled: bool = False, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """A short cosine run on the model's own input pipeline; ``overrides`` (dotted keys) come last.

    The base recipe (``cifar10`` for small inputs, ``torchvision`` otherwise, ``detect`` or ``segment`` for
    detectors and segmenters) gives
    augmentation, batch size and label smoothing; image size, resizing, channel order, value range and
    normalisation come from the model's preprocessing (so Caffe-preprocessed models fine-tune too). Classifiers
    fine-tune with SGD at ``lr`` (default 0.02, Han et al.'s setting scaled to our batch); detectors and segmenters
    with their
    base recipe's optimizer (AdamW) at a tenth of its peak rate (see :data:`DETECTOR_LR_SHARE`). ``distill``: the
    teacher's share of the loss; ``unlabelled``: the images are a small unlabelled folder (teacher only, mild
    augmentation: resize, random crop, flip).
    """
    pre = model.meta.preprocessing
    task = model.meta.task
    dense = task in ("detect", "segment")  # their own recipe, optimizer and augmentation
    d = load_recipe(base or (task if dense else "cifar10" if pre.crop <= 64 else "torchvision")).to_dict()
    d.update(name=f"{d['name']}-finetune", epochs=epochs, head_bias=0.0, time_budget_s=time_budget_s)
    if dense:  # the trained model is the starting point: no ImageNet body, every layer at one rate
        d.update(backbone_weights=None)
        d["optimizer"].update(backbone_lr=1.0)
    default_lr = d["optimizer"]["lr"] * DETECTOR_LR_SHARE if dense else CLASSIFIER_LR
    d["optimizer"].update(name=optimizer or (d["optimizer"]["name"] if dense else "sgd"),
                          lr=lr if lr is not None else default_lr)
    if weight_decay is not None:
        d["optimizer"]["weight_decay"] = weight_decay
    d["schedule"].update(name="cosine", warmup_epochs=0.0)
    d["data"].update(image_size=pre.crop, resize=pre.resize, mean=list(pre.mean), std=list(pre.std),
                     channel_order=pre.channel_order, value_range=pre.value_range, resize_mode=pre.resize_mode)
    d["distill"] = {"weight": 1.0 if unlabelled else distill, "temperature": 1.0}
    if dense:
        d["data"]["augment"] = d["data"]["augment"] if d["data"]["augment"] in (task, "flip", "none") else task
    if unlabelled:
        d["batch_size"] = min(d["batch_size"], UNLABELLED_BATCH)
        d["label_smoothing"] = 0.0
        d["data"].update(in_memory=True, workers=0)  # decoded once (calibration sets are small)
        if pre.crop > 64:
            d["data"]["augment"] = "crop"
    return Recipe.from_dict(apply_overrides(d, overrides or {}), "fine-tuning recipe").validate()


def finetune(model: Network, data: str, run_dir: str | Path, recipe: Recipe, *, data_root: str | Path | None = None,
             callbacks: list[L.Callback] | None = None, progress_bar: bool | None = None, resume: bool = False,
             teacher: nn.Module | None = None) -> dict:
    """Fine-tune ``model`` in place (masks and shared weights stay enforced); returns the run's metrics.

    ``resume``: continue ``run_dir`` from its last epoch checkpoint; ``model`` must already carry the
    parametrizations that checkpoint holds (see :mod:`squeezenet.compress.workdir`). ``teacher``: distil from
    it (``recipe.distill``); ``data`` may then be a folder of unlabelled images."""
    result = train(recipe, data, run_dir, data_root=data_root, model=model, callbacks=callbacks,
                   progress_bar=progress_bar, resume=resume, teacher=teacher)
    model.eval()
    return result.metrics
