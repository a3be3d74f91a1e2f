"""The work directory of a compression with fine-tuning, so that a killed run resumes instead of starting over.

Layout: ``compression.json`` (what is being compressed and how: a fingerprint of the input weights and the
spec), one Lightning run directory per fine-tuning phase (``prune/``, ``centroids/``: logs, curves and
epoch checkpoints) and the finished phases' weights (``pruned.safetensors``, ``quantized.safetensors``),
each written atomically. Resuming skips finished phases and continues an unfinished one from its last
epoch checkpoint, after rebuilding the parametrizations (masks, shared weights) that checkpoint holds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from ..common.dist import is_first_process
from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..models import Network, effective_state_dict
from ..train.layout import LAST_CKPT, RUN_FILE
from ..weights import load_weights, save_weights

STATE_FILE = "compression.json"
RESULTS = {"prune": "pruned.safetensors", "centroids": "quantized.safetensors"}  # each phase's finished weights


def weights_fingerprint(model: Network) -> str:
    """sha256 over the model's tensors (names, shapes, bytes): tells whether a resume continues the same input."""
    digest = hashlib.sha256()
    for name, tensor in sorted(effective_state_dict(model).items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class CompressionWorkDir:
    """One compression's work directory: claimed at the start, then read phase by phase."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def claim(self, model: Network, spec: dict[str, Any], data: str, *, resume: bool) -> None:
        """Record what this run does; refuse to mix it with another compression's files. Under torchrun only
        rank 0 owns the directory (the other ranks would find rank 0's file and refuse)."""
        if not is_first_process():
            return
        state: dict[str, Any] = {"weights_sha256": weights_fingerprint(model), "spec": spec, "data": data}
        file = self.path / STATE_FILE
        if file.is_file():
            if not resume:
                done = self.result("centroids").is_file()
                raise SqueezeNetError(f"{self.path} holds {'a finished' if done else 'an unfinished'} compression; pass "
                                 f"resume=True to {'reuse' if done else 'continue'} it, or choose another work_dir=")
            earlier: dict[str, Any] = json.loads(file.read_text())
            if earlier.get("weights_sha256") != state["weights_sha256"]:
                raise SqueezeNetError(f"{self.path}: the compression there started from other weights; "
                                 "resume it with the same weights, or choose another work_dir=")
            changed = sorted(k for k in {**earlier.get("spec", {}), **state["spec"]}
                             if earlier.get("spec", {}).get(k) != state["spec"].get(k))
            if earlier.get("data") != data:
                changed.append("data")
            if changed:
                raise SqueezeNetError(f"{self.path}: the compression there used other settings ({', '.join(changed)}); "
                                 "resume it with the same options, or choose another work_dir=")
            return
        if resume:
            raise SqueezeNetError(f"{self.path}: nothing to resume (no {STATE_FILE})")
        if self.path.exists() and any(self.path.iterdir()):
            raise SqueezeNetError(f"{self.path} exists and is not a compression work directory; choose another work_dir=")
        self.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp:
            tmp.write_text(json.dumps(state, indent=2))

    def run_dir(self, phase: str) -> Path:
        return self.path / phase

    def checkpoint(self, phase: str) -> Path | None:
        """The phase's last epoch checkpoint, or None. A phase killed before its first checkpoint is cleared
        (it has nothing worth keeping, and its run.json would block a fresh start)."""
        ckpt = self.run_dir(phase) / LAST_CKPT
        if ckpt.is_file():
            return ckpt
        if (self.run_dir(phase) / RUN_FILE).is_file() and is_first_process():
            shutil.rmtree(self.run_dir(phase))
        return None

    def result(self, phase: str) -> Path:
        return self.path / RESULTS[phase]

    def save_result(self, phase: str, model: Network) -> None:
        save_weights(model, self.result(phase), source=f"squeezenet compress: after {phase}")

    def load_result(self, phase: str) -> Network | None:
        path = self.result(phase)
        return load_weights(path) if path.is_file() else None

    def metrics(self, phase: str) -> dict | None:
        path = self.run_dir(phase) / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None


def parametrized_layers(checkpoint: Path, prefix: str = "model.") -> dict[str, set[str]]:
    """Module path -> names of the parametrization buffers/parameters a Lightning checkpoint holds for it
    (``{'mask'}`` for pruning masks; ``{'codebook', 'codes', 'mask'}`` for shared weights)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    layers: dict[str, set[str]] = {}
    for key in state:
        if not key.startswith(prefix) or ".parametrizations.weight.0." not in key:
            continue
        path, leaf = key[len(prefix):].split(".parametrizations.weight.0.")
        layers.setdefault(path, set()).add(leaf)
    return layers
