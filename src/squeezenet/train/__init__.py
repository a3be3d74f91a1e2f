"""Training with Lightning: recipes, data, exact resume, DDP via torchrun. Builds on weights and data.

Needs the ``[train]`` extra; its names load on first use, so a missing extra is one clear
``MissingExtraError`` naming it rather than an ``ImportError`` from deep inside.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..common.extras import require_extra

_EXPORTS = {
    "Recipe": ".recipe", "apply_overrides": ".recipe", "list_recipes": ".recipe", "load_recipe": ".recipe",
    "TrainResult": ".run", "load_run": ".run", "train": ".run",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .recipe import Recipe, apply_overrides, list_recipes, load_recipe  # noqa: F401
    from .run import TrainResult, load_run, train  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        require_extra("train", "squeezenet.train")
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'squeezenet.train' has no attribute {name!r}")
