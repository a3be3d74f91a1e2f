"""Checkpoints that no kill, crash or full disk can leave half-written, and what a signal saves.

Lightning writes a checkpoint through fsspec's local "transaction": a temporary file in ``$TMPDIR``, then a
move. When the run folder is on another filesystem (a mounted volume, a network disk, a tmpfs ``$TMPDIR``) the
move is a copy, and a kill during it leaves a torn ``last.ckpt`` that no ``--resume`` can read. Here the
temporary file is in the checkpoint's own folder, fsynced, then renamed: the rename is atomic on every POSIX
filesystem, so the folder holds the previous checkpoint or the new one, never part of one. A failed write
(a full disk) removes the temporary file and says so in one line; the previous checkpoint is untouched.
"""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..common.io import atomic_path
from ..errors import SqueezeNetError

logger = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` writing through a temporary file beside the checkpoint (fsync + rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        try:
            with atomic_path(path) as tmp:
                torch.save(checkpoint, tmp)
        except (OSError, RuntimeError) as exc:  # torch's zip writer reports a full disk as a RuntimeError
            free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
            reason = "no space left on the device" if free < (64 << 20) else " ".join(str(exc).split())[:120]
            raise SqueezeNetError(f"{path}: could not write the checkpoint ({reason}); the previous checkpoint "
                                  "is intact") from None


class SaveOnSignal(L.Callback):
    """On SIGTERM (a scheduler's pre-emption, ``kill``) or Ctrl-C, save ``last.ckpt`` where training stopped.

    Lightning turns SIGTERM into an exception after the current batch (on every rank at once) and catches
    Ctrl-C; both reach ``on_exception``. The checkpoint holds the loops' mid-epoch position, so ``--resume``
    continues from the batch after the last one trained.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.signum: int | None = None
        self.where = ""

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            self.signum = signal.SIGTERM
        elif isinstance(exception, KeyboardInterrupt):
            self.signum = signal.SIGINT
        else:
            return
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self.where = f"epoch {trainer.current_epoch + 1}, batch {batches}"
        trainer.save_checkpoint(self.path)
        logger.info(f"saved {self.path} at {self.where}")
