"""What a run directory holds (names only; importing this needs no training dependencies)."""

from __future__ import annotations

from pathlib import Path

RUN_FILE = "run.json"  # what was asked: recipe, data, versions
LAST_CKPT = Path("checkpoints") / "last.ckpt"  # written every epoch: what --resume continues from
BEST_WEIGHTS = "best.safetensors"
METRICS_FILE = "metrics.json"
RUN_LOCK = ".train.lock"  # held (flock) by the process training into the folder: a second one is refused
