"""Lightning callbacks: exact resume (RNG state), best-weights export, and per-epoch lines for logs."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..weights import save_weights

logger = logging.getLogger(__name__)


class RNGState(L.Callback):
    """Saves and restores every RNG in checkpoints, so ``--resume`` continues exactly (dropout included)."""

    # Only tensors and plain Python values: Lightning reloads checkpoints with torch.load(weights_only=True).
    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": {"keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached": float(cached)}}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class MidEpochPosition(L.Callback):
    """Where in its epoch a checkpoint was taken, so that a run stopped mid-epoch (SIGTERM, Ctrl-C) resumes with
    the next batch instead of the epoch's first: the training sampler asks :meth:`batches_to_skip` when it starts.

    (Lightning's own route, a stateful DataLoader, is not taken: it restores loader state only when the loader
    is created after the checkpoint is loaded, and ours is created earlier, when the schedule asks for the
    number of steps.)
    """

    def __init__(self) -> None:
        self.trainer: L.Trainer | None = None
        self.pending: tuple[int, int] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        if self.trainer is None:
            return {}
        return {"epoch": self.trainer.current_epoch,
                "batches": self.trainer.fit_loop.epoch_loop.batch_progress.current.completed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending = (int(state["epoch"]), int(state["batches"])) if state else None

    def batches_to_skip(self, epoch: int) -> int:
        """Batches of ``epoch`` already trained before the checkpoint this run resumed from (once; else 0). An
        end-of-epoch checkpoint names the epoch it finished, which is not the one that starts next."""
        pending, self.pending = self.pending, None
        return pending[1] if pending is not None and pending[0] == epoch else 0


class BestWeights(L.Callback):
    """Writes ``best.safetensors`` (with architecture, preprocessing and class names) when the monitored validation
    metric (top-1; mAP@0.5 for detectors) improves."""

    def __init__(self, path: Path, source: str, monitor: str = "val/top1"):
        self.path, self.source, self.monitor = Path(path), source, monitor
        self.best = -1.0
        self.best_epoch = -1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # (not on_validation_epoch_end: callbacks run that hook before the LightningModule's, where a detector
        # computes and logs its mAP, so the best weights were saved with the previous epoch's score)
        if trainer.sanity_checking:
            return
        value = float(trainer.callback_metrics.get(self.monitor, -1.0))
        if value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            if trainer.is_global_zero:
                save_weights(pl_module.model, self.path, source=self.source)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EpochLine(L.Callback):
    """One log line per epoch (INFO): what a log file needs when there is no live progress bar."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics

        def fmt(key: str, spec: str = ".4f") -> str:
            return format(float(m[key]), spec) if key in m else "-"

        scores = "  ".join(f"{label} {fmt(key)}" for label, key in getattr(pl_module, "summary", ()))
        logger.info(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  loss {fmt('train/loss_epoch')}  "
                    f"{scores}  {pl_module.epoch_rate():.0f} img/s  "  # type: ignore[operator]
                    f"{time.perf_counter() - self._start:.0f}s")
