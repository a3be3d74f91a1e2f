"""Model registry: named builders (``create_model``) and config-based rebuilding (``model_from_config``)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .features import FeatureExtractor


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder and what a user needs to know before calling it."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    description: str

    def options(self) -> dict[str, Any]:
        """The builder's keyword options with their defaults."""
        return {
            p.name: p.default
            for p in inspect.signature(self.builder).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


_MODELS: dict[str, ModelEntry] = {}
_ARCHS: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Callable[[Any], nn.Module]]] = {}


def register_model(input_size: int = 224) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder to the registry under its function name.

    ``input_size`` is the image side the model is meant for (used as the default by reports).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = inspect.getdoc(fn) or ""
        _MODELS[fn.__name__] = ModelEntry(fn.__name__, fn, input_size, doc.splitlines()[0] if doc else "")
        return fn

    return wrap


def register_arch(arch: str, config_from_dict: Callable[[Mapping[str, Any]], Any], model_cls: Callable[[Any], nn.Module]) -> None:
    """Tell :func:`model_from_config` how to rebuild models whose config says ``arch``."""
    _ARCHS[arch] = (config_from_dict, model_cls)


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; a ``ValueError`` naming the closest matches if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; available: {', '.join(list_models())}"
        raise ValueError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models`.
        features_only: return a :class:`FeatureExtractor` giving one feature map per stride instead
            of a classifier (for detection/segmentation heads).
        out_indices: which of those maps to return (default all; negative indices count from the end).
        **kwargs: the builder's options, e.g. ``num_classes``, ``batch_norm``, ``small_stem``.
    """
    entry = get_model_entry(name)
    options = entry.options()
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        raise ValueError(f"{name} has no option {unknown[0]!r}; its options are: {', '.join(options)}")
    model = entry.builder(**kwargs)
    if features_only:
        return FeatureExtractor(model.features, model.feature_info, out_indices)
    return model


def model_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from the ``config.to_dict()`` stored in a file."""
    arch = config.get("arch") if isinstance(config, Mapping) else None
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture {arch!r} in model config (known: {', '.join(sorted(_ARCHS))})")
    from_dict, model_cls = _ARCHS[arch]
    return model_cls(from_dict(config))
