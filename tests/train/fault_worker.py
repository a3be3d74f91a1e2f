"""``squeezenet`` with a fault injected into file writes, for the kill and full-disk tests.

KILL_AT_SAVE=N: the N-th ``torch.save`` to a file writes half of its bytes, then the process SIGKILLs itself
(what a kill, an OOM kill or a pulled plug does in the middle of a checkpoint).
FILL_AT_SAVE=N: before the N-th ``torch.save`` to a file, fill that file's filesystem (a full disk).
FAULT_MATCH=TEXT: count only saves to files whose name contains TEXT (``last.ckpt``: its temporary files too).
SIGNAL_AT_STEP=N with SIGNAL=KILL|TERM|INT: the process sends itself that signal as training step N (1-based, counted
over the whole run) begins: a kill or a scheduler's SIGTERM in the middle of an epoch, at the same batch on any CPU
(waiting a second after a log line depended on the machine's speed).
"""

import io
import os
import signal
import sys

import torch

from squeezenet.cli import main

_real_save = torch.save
_calls = 0


def _fill(folder: str) -> None:
    with open(os.path.join(folder, "filler"), "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass


def _save(obj, f, *args, **kwargs):
    global _calls
    if isinstance(f, (str, os.PathLike)) and os.environ.get("FAULT_MATCH", "") in os.path.basename(os.fspath(f)):
        _calls += 1
        if _calls == int(os.environ.get("KILL_AT_SAVE", "0")):
            buffer = io.BytesIO()
            _real_save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as out:
                out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                out.flush()
                os.fsync(out.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        if _calls == int(os.environ.get("FILL_AT_SAVE", "0")):
            _fill(os.path.dirname(os.fspath(f)))
    return _real_save(obj, f, *args, **kwargs)


def _signal_at_step() -> None:
    step = int(os.environ.get("SIGNAL_AT_STEP", "0"))
    if not step:
        return
    from squeezenet.train.module import RecipeModule

    real = RecipeModule.on_train_batch_start

    def start(self, batch, batch_idx):
        if self.trainer.global_step + 1 == step:
            os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get("SIGNAL", "KILL")))
        return real(self, batch, batch_idx)

    RecipeModule.on_train_batch_start = start


torch.save = _save
_signal_at_step()
sys.exit(main(sys.argv[1:]))
