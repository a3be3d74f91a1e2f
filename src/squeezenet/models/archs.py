"""Architectures by name: how a config stored in a file (``{"arch": "squeezenet", ...}``) is read back, and which
class builds a model from it. It sits below both ``meta`` (which reads configs out of files) and ``registry``
(which builds models), so that neither has to import the other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..errors import SqueezeNetError, brief

ConfigReader = Callable[[Mapping[str, Any], str], Any]

_ARCHS: dict[str, tuple[ConfigReader, Callable[[Any], nn.Module]]] = {}


def register_arch(arch: str, config_from_dict: ConfigReader, model_cls: Callable[[Any], nn.Module]) -> None:
    """Tell :func:`config_from_dict` and :func:`squeezenet.models.model_from_config` how to read and rebuild
    models whose config says ``arch``."""
    _ARCHS[arch] = (config_from_dict, model_cls)


def _known(arch: Any, where: str) -> str:
    if not isinstance(arch, str) or arch not in _ARCHS:
        raise SqueezeNetError(f"{where}unknown architecture {brief(arch)} (known: {', '.join(sorted(_ARCHS))})")
    return arch


def config_from_dict(data: Any, where: str = "model config") -> Any:
    """The typed architecture config of a ``config.to_dict()`` (``SqueezeNetConfig``, ``DetectorConfig``, ...)."""
    arch = _known(data.get("arch") if isinstance(data, Mapping) else None, f"{where}: ")
    return _ARCHS[arch][0](data, where)


def arch_builder(arch: Any) -> Callable[[Any], nn.Module]:
    """The class (or function) that builds a model of architecture ``arch`` from its config."""
    return _ARCHS[_known(arch, "")][1]
