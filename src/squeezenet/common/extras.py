"""Optional dependencies: which extra provides what, checked without importing it."""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import MissingExtraError

DISTRIBUTION = "squeezenet-toolkit"

#: extra -> the top-level modules it installs (checked with find_spec, which imports nothing)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("lightning", "tensorboard", "matplotlib", "yaml"),
    "deploy": ("onnx", "onnxruntime", "onnxscript"),
    "openvino": ("openvino",),
    "executorch": ("executorch", "torchao"),
    "litert": ("litert_torch", "ai_edge_litert"),
    "sweep": ("optuna", "lightning", "tensorboard", "matplotlib", "yaml"),
}


#: where a module's pip name differs from its import name
PIP_NAMES = {"yaml": "pyyaml"}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed."""
    return [m for m in EXTRAS[extra] if find_spec(m) is None]


def require_extra(extra: str, feature: str) -> None:
    """``MissingExtraError`` naming the pip command unless ``extra`` is fully installed."""
    absent = missing(extra)
    if absent:
        names = ", ".join(PIP_NAMES.get(m, m) for m in absent)
        raise MissingExtraError(f"{feature} needs the [{extra}] extra ({names} not installed): "
                                f"pip install '{DISTRIBUTION}[{extra}]'")
