"""Model registry: named builders (``create_model``) and config-based rebuilding (``model_from_config``).

Builders declare their keyword options once, in :func:`register_model` (timm's small ``@register_model``
entry points, with options as data): the registry checks names and fills defaults before a builder runs,
gives the builder a real signature for ``help()`` and IDEs, and lists the options for ``squeezenet models``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from ..errors import SqueezeNetError, brief
from .archs import arch_builder, config_from_dict
from .features import FeatureExtractor
from .meta import Network

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder and what a user needs to know before calling it."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """The builder's keyword options with their defaults."""
        return dict(self.defaults)


_MODELS: dict[str, ModelEntry] = {}
def register_model(input_size: int = 224, **options: Any) -> Callable[[F], F]:
    """Decorator adding a builder to the registry under its function name.

    ``input_size`` is the image side the model is meant for (reports use it); ``options`` are the keyword
    options the builder accepts, with their defaults. The builder is called with every option resolved; an
    unknown option is a ``SqueezeNetError`` listing the known ones.
    """

    def wrap(fn: F) -> F:
        name = fn.__name__

        @functools.wraps(fn)
        def builder(**kwargs: Any) -> nn.Module:
            unknown = [k for k in kwargs if k not in options]
            if unknown:
                raise SqueezeNetError(f"{name} has no option {brief(unknown[0], 40)}; its options are: {', '.join(options)}")
            for key, value in kwargs.items():
                if not _same_kind(value, options[key]):
                    raise SqueezeNetError(f"{name}: option {key} must be {_KINDS[type(options[key])]}, got {brief(value)}")
            return fn(**{**options, **kwargs})

        builder.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in options.items()])
        doc = inspect.getdoc(fn) or ""
        _MODELS[name] = ModelEntry(name, builder, input_size, doc.splitlines()[0] if doc else "", dict(options))
        return builder  # type: ignore[return-value]

    return wrap


_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace ``default`` (options come from YAML and the command line: ``true`` is not
    a number, ``2.5`` is not a count, ``"maybe"`` is not a flag)."""
    if type(default) not in _KINDS:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style pattern, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; a ``SqueezeNetError`` naming the closest matches if there is none."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; available: {', '.join(list_models())}"
        raise SqueezeNetError(f"unknown model {brief(name)}{hint}") from None


def create_model(
    name: str,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> Any:
    """Build a registered model by name, freshly initialised (``squeezenet.create_model`` also loads weights).

    Args:
        name: one of :func:`list_models`.
        features_only: return a :class:`FeatureExtractor` giving one feature map per stride instead
            of a classifier (for detection/segmentation heads).
        out_indices: which of those maps to return (default all; negative indices count from the end).
        **kwargs: the builder's options, e.g. ``num_classes``, ``batch_norm``, ``small_stem``.

    Returns a :class:`~squeezenet.models.Network` (typed ``Any``: with ``features_only`` a
    :class:`FeatureExtractor`).
    """
    model = get_model_entry(name).builder(**kwargs)
    if features_only:
        return FeatureExtractor(model.features, model.feature_info, out_indices)  # type: ignore[arg-type]
    return model


def model_task(name: str, **options: Any) -> str:
    """``classify`` or ``detect``: what a registered model's outputs mean (built on the meta device: nothing allocated)."""
    import torch

    with torch.device("meta"):
        return str(create_model(name, **options).meta.task)


def model_from_config(config: Any) -> Network:
    """Rebuild a model from its config, or from the ``config.to_dict()`` stored in a file."""
    if isinstance(config, Mapping):
        config = config_from_dict(config)
    model = arch_builder(getattr(config, "arch", None))(config)
    if not isinstance(model, Network):
        raise TypeError(f"the builder of {config.arch!r} made a {type(model).__name__}, not a Network")
    return model
