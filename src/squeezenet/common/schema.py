"""Dataclasses from untrusted mappings (JSON headers, YAML recipes, ``--set`` values), checked against their
type hints: one validator for architecture configs, preprocessing and recipes.

Why not dacite or pydantic: the rules that matter here are specific. JSON and YAML numbers must become
floats where a float is declared (``lr: 1``) but never ints where an int is (``epochs: 2.5``); ``true`` is
not a number; NaN and infinities are refused; and a bad value must produce one line naming its dotted
field. That fits in this module; a dependency would still need most of it as configuration.

Fields declared with ``init=False`` are identity fields (``arch``, ``version``): a mapping may repeat
them and must then agree (a ``version`` may be older, never newer).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from ..errors import SqueezeNetError, brief

T = TypeVar("T")
MAX_ITEMS = 100_000  # no architecture or recipe has this many entries in one list


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown, missing or ill-typed fields are a ``SqueezeNetError``
    naming ``where`` and the dotted field."""
    return _dataclass(cls, data, where, "")


def _dataclass(cls: type[T], data: Any, where: str, path: str) -> T:
    name = path.rstrip(".") or cls.__name__
    if not isinstance(data, Mapping):
        raise SqueezeNetError(f"{where}: {name} must be a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    declared = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k)[:40] for k in data if k not in declared)
    if unknown:
        shown = ", ".join(path + k for k in unknown[:5]) + (f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else "")
        raise SqueezeNetError(f"{where}: unknown field(s) {shown} "
                              f"(known: {', '.join(f for f in declared if declared[f].init)})")
    kwargs: dict[str, Any] = {}
    for key, f in declared.items():
        if not f.init:
            if key in data:
                _check_identity(cls, f, data[key], where, path + key)
            continue
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SqueezeNetError(f"{where}: missing field {path + key}")
            continue
        kwargs[key] = convert(hints[key], data[key], where, path + key)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a __post_init__ that compares values of the wrong kind
        raise SqueezeNetError(f"{where}: {name}: {exc}") from None
    except SqueezeNetError as exc:  # a __post_init__'s own check: say which file or recipe it came from
        raise SqueezeNetError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None


def _check_identity(cls: type, f: dataclasses.Field, value: Any, where: str, path: str) -> None:
    expected = f.default
    if f.name == "version" and isinstance(expected, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SqueezeNetError(f"{where}: {path} must be a whole number >= 1, got {brief(value)}")
        if value > expected:
            raise SqueezeNetError(f"{where}: {cls.__name__} version {brief(value, 20)} was written by a newer squeezenet "
                                  f"(this one reads up to version {expected}); upgrade squeezenet-toolkit")
    elif value != expected:
        raise SqueezeNetError(f"{where}: {path} is {brief(value)}, expected {expected!r} for {cls.__name__}")


def convert(hint: Any, value: Any, where: str, path: str) -> Any:
    """``value`` checked (and where harmless converted: list -> tuple, int -> float) against type ``hint``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, value, where, path + ".")
    if origin is Union or origin is types.UnionType:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return convert(option, value, where, path)
            except SqueezeNetError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise SqueezeNetError(errors[0])
        raise SqueezeNetError(f"{where}: {path} must be {_describe(hint)}, got {brief(value)}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) or value not in choices:
            raise SqueezeNetError(f"{where}: {path} must be one of {', '.join(map(str, choices))}, got {brief(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SqueezeNetError(f"{where}: {path} must be true or false, got {brief(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SqueezeNetError(f"{where}: {path} must be a whole number, got {brief(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 1e300 or not math.isfinite(value):
            raise SqueezeNetError(f"{where}: {path} must be a finite number, got {brief(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SqueezeNetError(f"{where}: {path} must be a string, got {brief(value)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SqueezeNetError(f"{where}: {path} must be a list, got {_kind(value)}")
        if len(value) > MAX_ITEMS:
            raise SqueezeNetError(f"{where}: {path} has {len(value):,} entries (at most {MAX_ITEMS:,})")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SqueezeNetError(f"{where}: {path} must have {len(args)} entries, got {len(value)}")
            return tuple(convert(a, v, where, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [convert(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise SqueezeNetError(f"{where}: {path} must be a mapping, got {_kind(value)}")
        key_hint, value_hint = typing.get_args(hint) or (str, Any)
        return {convert(key_hint, k, where, path): convert(value_hint, v, where, f"{path}.{k}") for k, v in value.items()}
    raise TypeError(f"schema: unsupported type hint {hint!r} for {path}")  # a bug in a dataclass of ours


def _describe(hint: Any) -> str:
    return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in typing.get_args(hint))


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)
