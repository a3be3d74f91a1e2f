"""Which torch device a command runs on."""

from __future__ import annotations

import torch

from ..errors import SqueezeNetError


def device_kind(device: str | torch.device) -> str:
    """``cuda`` for ``cuda:1``; a clear error for names torch does not know. Whether it exists is not checked
    (onnxruntime may reach a GPU that this PyTorch build cannot)."""
    try:
        return torch.device(device).type
    except RuntimeError:
        raise SqueezeNetError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here (``auto``: CUDA if present, else CPU); a clear error otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device_kind(device)
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SqueezeNetError(f"device {device!r}: no CUDA GPU is available to PyTorch here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise SqueezeNetError(f"device {device!r}: Apple's MPS is not available here")
    return resolved
