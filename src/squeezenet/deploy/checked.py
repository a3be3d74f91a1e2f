"""A runtime's file written only after it is judged: the check every program export (ExecuTorch, LiteRT) shares."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..inference.fidelity import FidelityGate, fidelity
from ..models import Network
from .int8 import Int8Check
from .metadata import FileModel
from .onnx import ExportCheck


def export_target(model: Network, path: str | Path, suffix: str, files: str, int8: bool,
                  calibration: torch.Tensor | None, min_calibration: int = 1) -> Path:
    """``path`` as a Path once the arguments every program export takes are valid: one of the toolkit's networks,
    the runtime's file suffix (``files`` names them: "LiteRT models"), and for ``int8`` at least
    ``min_calibration`` calibration images; ``SqueezeNetError`` before any work otherwise."""
    if not isinstance(model, Network):
        raise SqueezeNetError(f"export needs one of the toolkit's networks (with a meta), got {type(model).__name__}")
    if int8 and (calibration is None or len(calibration) < min_calibration):
        raise SqueezeNetError(f"int8 export needs at least {min_calibration} calibration images (calibration=)")
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise SqueezeNetError(f"{path}: {files} are named *{suffix}")
    return path


def write_checked(data: bytes, path: Path, model: Network, load: Callable[[Path], FileModel], *,
                  check_images: torch.Tensor, calibration: torch.Tensor | None, gate: FidelityGate, force: bool,
                  tolerance: float, what: str, method: str, weights: str = "nearest") -> ExportCheck:
    """Load ``data`` (the exported file's bytes) with ``load`` from a temporary file beside ``path`` and write it to
    ``path`` only when it passes: fp32 within ``tolerance`` of ``model`` on ``check_images``; int8 (``calibration``
    given) passing ``gate`` against ``model`` on the calibration images unless ``force``. ``what`` names the file
    in errors ("the LiteRT model"), ``method`` and ``weights`` (their rounding) the int8 recipe in the returned check."""
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.is_dir() else None) as tmp:
        candidate = Path(tmp) / f"model{path.suffix}"
        candidate.write_bytes(data)
        loaded = load(candidate)
        with torch.no_grad():
            reference, got = model(check_images), loaded(check_images)
        check = ExportCheck(len(check_images), float((got - reference).abs().max()), fidelity(reference, got).agreement)
        if calibration is None and check.max_abs_diff > tolerance:
            raise SqueezeNetError(f"{what} differs from PyTorch by {check.max_abs_diff:.3g} on {check.images} images "
                                  f"(tolerance {tolerance:g}); not written")
        if calibration is not None:
            with torch.no_grad():
                f = fidelity(model(calibration), loaded(calibration))
            check.int8 = Int8Check.of(f, method, weights=weights)
            if not gate.passes(f) and not force:
                raise SqueezeNetError(f"{what} in int8 against fp32 on the {len(calibration)} calibration images: "
                                      f"{'; '.join(gate.shortfalls(f))} (KL {f.kl:.4f}); not written. "
                                      "Lower --min-agreement/--min-snr or --force")
        del loaded  # (its runtime may hold the temporary file open)
        with atomic_path(path) as out:
            out.write_bytes(data)
    return check
