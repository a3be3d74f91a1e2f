"""The LightningModules: what training any task with a :class:`Recipe` shares, and the classifier's."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..data.augment import pad_crop_flip
from ..errors import SqueezeNetError
from .recipe import Recipe

logger = logging.getLogger(__name__)


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool,
                     backbone_lr: float = 1.0) -> list[dict]:
    """Weight decay on conv/linear weights only (unless the recipe says otherwise, as Caffe did).

    Always two groups, weights then the rest: a parametrization (pruning mask, shared weights) moves a
    layer's weight after its bias in ``model.parameters()``, and an optimizer's saved state is matched by
    position, so a checkpoint must not depend on whether the masks existed when the optimizer was made.
    A detector's body (``model.backbone``) with ``backbone_lr`` < 1 gets two groups of its own, first, whose
    learning rate is that fraction of the others'.
    """
    body = getattr(model, "backbone", None) if backbone_lr != 1.0 else None
    parts = [body, None] if isinstance(body, nn.Module) else [None]
    in_body = {id(p) for p in body.parameters()} if isinstance(body, nn.Module) else set()
    groups = []
    for part in parts:
        params = list(part.parameters()) if part is not None else [p for p in model.parameters() if id(p) not in in_body]
        scale = {"lr_scale": backbone_lr} if part is not None else {}
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, **scale},
                   {"params": [p for p in params if p.ndim <= 1],
                    "weight_decay": weight_decay if decay_norm_and_bias else 0.0, **scale}]
    return groups


def lr_at(recipe: Recipe, progress: float) -> float:
    """Learning-rate multiplier at a point of training, ``progress`` in [0, 1].

    ``onecycle``: linear rise from 1/25 of the peak over ``pct_start``, then cosine to zero;
    ``linear``/``cosine``: optional linear warm-up, then linear or cosine decay to zero;
    ``step``: times ``gamma`` every ``step_epochs`` epochs; ``constant``: 1.
    """
    s, p = recipe.schedule, min(max(progress, 0.0), 1.0)
    if s.name == "onecycle":
        if p < s.pct_start:
            return 0.04 + 0.96 * p / s.pct_start
        return 0.5 * (1 + math.cos(math.pi * (p - s.pct_start) / (1 - s.pct_start)))
    warm = s.warmup_epochs / recipe.epochs
    if p < warm:
        return p / warm
    q = (p - warm) / max(1e-12, 1 - warm)
    if s.name == "linear":
        return 1.0 - q
    if s.name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * q))
    if s.name == "step":
        return s.gamma ** int(p * recipe.epochs // s.step_epochs)
    if s.name == "constant":
        return 1.0
    raise SqueezeNetError(f"unknown schedule {s.name!r}; choose onecycle, linear, cosine, step or constant")


class RecipeModule(L.LightningModule):
    """What every task's training shares: inputs arrive as uint8 and are normalised on the device as the recipe says;
    the learning rate follows the recipe's schedule over steps or over its time budget, whichever is further along;
    training time is kept across resumes. ``monitor`` is the validation metric that picks the best epoch."""

    monitor = "val/top1"
    #: (label, metric) pairs of the one line a finished epoch logs without a progress bar
    summary: tuple[tuple[str, str], ...] = (("val top-1", "val/top1"), ("top-5", "val/top5"))
    #: metrics.json keys -> logged metrics (the first is also reported as best_<key>, the monitor's best value)
    results: dict[str, str] = {"top1": "val/top1", "top5": "val/top5"}

    def __init__(self, model: nn.Module, recipe: Recipe, channels_last: bool = True):
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.channels_last = channels_last
        std = torch.tensor(recipe.data.std).view(1, 3, 1, 1)
        mean = torch.tensor(recipe.data.mean).view(1, 3, 1, 1)
        self.register_buffer("scale", recipe.data.value_range / (255.0 * std), persistent=False)
        self.register_buffer("shift", mean / std, persistent=False)
        self.bgr = recipe.data.channel_order == "BGR"
        self._seen = 0
        self._epoch_start = 0.0
        self.train_seconds = 0.0  # training time so far, kept across resumes (time budgets)
        self.budget_reached = False  # the time budget ended training before its epochs did
        self.skipped_images = 0  # unreadable files dropped from batches by this process
        self._step_start: float | None = None
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 RGB -> the network's input (channel order, value range, mean and std of the recipe)."""
        if self.bgr:
            x = x.flip(1)  # images are decoded as RGB; mean/std are in the network's order
        return x.float() * self.scale - self.shift  # type: ignore[operator]

    def count_images(self, n: int) -> float:
        """Add ``n`` trained images (this process); the epoch's rate over all processes so far."""
        self._seen += n * self.trainer.world_size
        return self._seen / max(1e-9, time.perf_counter() - self._epoch_start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_start(self) -> None:  # a run resumed mid-epoch gets no on_train_epoch_start for that epoch
        self._seen, self._epoch_start = 0, time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self._seen, self._epoch_start = 0, time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._step_start is not None:
            self.train_seconds += time.perf_counter() - self._step_start
        if self.recipe.time_budget_s and self.trainer.world_size > 1:
            # one clock for all ranks: the LR and the stopping step must not differ between processes
            self.train_seconds = float(self.trainer.strategy.broadcast(self.train_seconds, src=0))
        if self.progress() >= 1.0:
            self.trainer.should_stop = True  # the time budget is spent: stop after this step
            steps_left = self.trainer.global_step < self.trainer.estimated_stepping_batches
            if steps_left and not self.budget_reached and self.trainer.is_global_zero:
                logger.info(f"time budget of {self.recipe.time_budget_s:g} s reached in epoch {self.current_epoch + 1} "
                            f"of {self.trainer.max_epochs}, after {batch_idx + 1} of {self.trainer.num_training_batches} "
                            "batches; the learning-rate schedule ran to its end (a budget of 0 trains every epoch)")
            self.budget_reached = self.budget_reached or steps_left

    def progress(self, step: int | None = None) -> float:
        """Fraction of training done: steps over total steps, or time over the recipe's budget if further along."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        done = (self.trainer.global_step if step is None else step) / total
        budget = self.recipe.time_budget_s
        return max(done, self.train_seconds / budget) if budget else done

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_seconds"] = self.train_seconds

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_seconds = float(checkpoint.get("train_seconds", 0.0))

    def epoch_rate(self) -> float:
        """Training images per second (all processes) in the current epoch so far."""
        return self._seen / max(1e-9, time.perf_counter() - self._epoch_start)

    def on_train_epoch_end(self) -> None:
        self.log("train/images_per_s", self.epoch_rate(), rank_zero_only=True)
        self.log("train/epoch_time_s", time.perf_counter() - self._epoch_start, rank_zero_only=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[-1]["lr"], rank_zero_only=True)  # (not a body's)

    def configure_optimizers(self):
        r = self.recipe
        groups = parameter_groups(self.model, r.optimizer.weight_decay, r.optimizer.decay_norm_and_bias,
                                  r.optimizer.backbone_lr)
        for g in groups:
            g["lr"] = r.optimizer.lr * g.pop("lr_scale", 1.0)
        if r.optimizer.name == "sgd":
            opt = torch.optim.SGD(groups, lr=r.optimizer.lr, momentum=r.optimizer.momentum, nesterov=r.optimizer.nesterov)
        elif r.optimizer.name == "adamw":
            opt = torch.optim.AdamW(groups, lr=r.optimizer.lr)
        else:
            raise SqueezeNetError(f"unknown optimizer {r.optimizer.name!r}; choose sgd or adamw")
        lr_at(r, 0.0)  # validates the schedule name
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(r, self.progress(step)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ClassifierModule(RecipeModule):
    """Cross-entropy training of any registered classifier (distilled from a ``teacher`` if given)."""

    def __init__(self, model: nn.Module, recipe: Recipe, num_classes: int, channels_last: bool = True,
                 batch_augment: bool = False, teacher: nn.Module | None = None):
        super().__init__(model, recipe, channels_last)
        # a list, not a submodule: checkpoints and the optimizer hold the student only
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.batch_augment = batch_augment  # pad-crop-flip on device (in-memory small-image data)
        k = min(5, num_classes)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, index, skipped = batch
        self.skipped_images += len(skipped)
        x = self.normalise(x)
        if self.batch_augment and self.trainer is not None and self.trainer.training and x.numel():
            x = pad_crop_flip(x, index, self.current_epoch, self.recipe.seed, padding=x.shape[-1] // 8)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """The teacher's logits for ``x`` (moved to this module's device on first use), or None without one."""
        if not self._teacher:
            return None
        teacher = self._teacher[0]
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        with torch.no_grad():
            return teacher(x).float()

    def loss(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on labelled images; with a teacher, ``weight * T**2 * KL(teacher || student)`` plus
        ``(1 - weight)`` of the cross-entropy, and the KL alone for unlabelled images (label < 0)."""
        labelled = y >= 0
        teacher = self.teacher_logits(x) if self.recipe.distill.weight > 0 else None
        if teacher is None:
            if not bool(labelled.all()):
                raise SqueezeNetError("unlabelled images need a teacher to learn from (distillation)")
            return F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        t, w = self.recipe.distill.temperature, self.recipe.distill.weight
        student_log = F.log_softmax(logits.float() / t, dim=1)
        teacher_log = F.log_softmax(teacher / t, dim=1)
        kl = (teacher_log.exp() * (teacher_log - student_log)).sum(1) * t * t
        ce = F.cross_entropy(logits, y.clamp(min=0), label_smoothing=self.recipe.label_smoothing, reduction="none")
        share = torch.where(labelled, torch.full_like(kl, w), torch.ones_like(kl))
        return (share * kl + (1 - share) * ce).mean()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self._teacher and not self.recipe.distill.dropout:
            for m in self.model.modules():  # the student matches the teacher's deterministic outputs
                if isinstance(m, nn.Dropout):
                    m.eval()

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        if y.numel() == 0:
            return None  # every image of this batch was unreadable
        logits = self.model(x)
        loss = self.loss(x, logits, y)
        labelled = y >= 0
        if bool(labelled.any()):  # (an unlabelled set has no accuracy to log, only the loss)
            self.train_acc(logits.detach()[labelled], y[labelled])
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=int(labelled.sum()))
        rate = self.count_images(y.numel())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=y.numel())
        self.log("img/s", rate, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        if y.numel() == 0:
            return
        logits = self.model(x)
        if bool((y < 0).any()):  # unlabelled: the teacher's answer is the label, val/top1 is the agreement with it
            teacher = self.teacher_logits(x)
            if teacher is None:
                raise SqueezeNetError("unlabelled validation images need a teacher")
            y = torch.where(y < 0, teacher.argmax(1), y)
        self.val_top1(logits, y)
        self.val_top5(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True, batch_size=y.numel())
        self.log("val/top1", self.val_top1, on_epoch=True, prog_bar=True, batch_size=y.numel())
        self.log("val/top5", self.val_top5, on_epoch=True, batch_size=y.numel())

