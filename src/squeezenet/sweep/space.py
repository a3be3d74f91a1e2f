"""A design-space file: which metaparameters a sweep varies, over which values, and what it holds fixed.

```yaml
model: squeezenet_design            # a registered model; its options can be swept (default squeezenet_design)
recipe: cifar10                      # the training recipe every trial starts from
fixed: {small_stem: true, stem_pool: true, batch_norm: true}   # model options or recipe keys held fixed
sr: [0.125, 0.25, 0.5, 0.75]         # a grid: every value is tried (with every value of the other grids)
pct3x3: {low: 0.1, high: 0.9}        # a range (search studies only); log: true, step: 0.1 where wanted
bypass: [none, simple, complex]
optimizer.lr: {low: 0.02, high: 0.4, log: true}   # recipe keys too, dotted
```

Every name is checked before anything runs: a model option (the model's registered options, as
``squeezenet models --options`` lists them) or a recipe field (``epochs``, ``optimizer.lr``...).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SqueezeNetError, brief
from ..models import get_model_entry

RESERVED = ("model", "recipe", "fixed")
MAX_GRID = 10_000


@dataclass(frozen=True)
class Param:
    """One swept metaparameter: a grid (``choices``) or a range (``low``..``high``, for search studies)."""

    name: str
    target: str  # "model" (a builder option) or "recipe" (a dotted recipe field)
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial takes (an enqueued trial gets its fixed value back)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,  # type: ignore[arg-type]
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Space:
    """What a study varies (``params``) and holds (``model``, ``recipe``, ``fixed``)."""

    params: tuple[Param, ...]
    model: str = "squeezenet_design"
    recipe: str = "cifar10"
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return all(p.choices is not None for p in self.params)

    def grid(self) -> list[dict[str, Any]]:
        """Every point of the grid (the cartesian product of the choices)."""
        ranges = [p.name for p in self.params if p.choices is None]
        if ranges:
            raise SqueezeNetError(f"a grid study needs lists of values; {', '.join(ranges)} is a range "
                                  "(use --mode search, or list its values)")
        names = [p.name for p in self.params]
        return [dict(zip(names, values)) for values in itertools.product(*(p.choices or () for p in self.params))]

    def split(self, point: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A point's model options and recipe overrides (the fixed ones included)."""
        targets = {p.name: p.target for p in self.params}
        model: dict[str, Any] = {}
        recipe: dict[str, Any] = {}
        for name, value in {**self.fixed, **point}.items():
            (model if targets.get(name, _target(self.model, name)) == "model" else recipe)[name] = value
        return model, recipe

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "recipe": self.recipe, "fixed": dict(self.fixed)}
        for p in self.params:
            out[p.name] = list(p.choices) if p.choices is not None else {
                "low": p.low, "high": p.high, "log": p.log, "step": p.step}
        return out


def point_key(point: Mapping[str, Any]) -> str:
    """A readable, unique folder name for a point: ``sr0.25-bypass_simple-1a2b3c4d``."""
    text = "-".join(f"{k.replace('.', '_')}{_short(v)}" for k, v in sorted(point.items()))
    digest = hashlib.sha256(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{text[:80]}-{digest}" if text else digest


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return f"_{value}"
    return str(value)


def _target(model: str, name: str) -> str:
    """Where a name goes: a builder option of ``model`` or a recipe field; ``SqueezeNetError`` for neither."""
    from ..train.recipe import Recipe

    if name in ("num_classes", "model", "model_options"):
        raise SqueezeNetError(f"{name} cannot be swept (the data sets the classes; the space file names the model)")
    options = get_model_entry(model).options()
    if name in options:
        return "model"
    node: Any = Recipe().to_dict()
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SqueezeNetError(f"unknown metaparameter {brief(name, 40)}: neither an option of {model} "
                                  f"({', '.join(options)}) nor a recipe field (epochs, optimizer.lr, data.workers...)")
        node = node[part]
    return "recipe"


def _param(model: str, name: str, spec: Any, where: str) -> Param:
    target = _target(model, name)
    if isinstance(spec, list):
        if not spec:
            raise SqueezeNetError(f"{where}: {name} has an empty list of values")
        if len(spec) > MAX_GRID:
            raise SqueezeNetError(f"{where}: {name} lists {len(spec):,} values (at most {MAX_GRID:,})")
        if len({json.dumps(v, sort_keys=True, default=str) for v in spec}) != len(spec):
            raise SqueezeNetError(f"{where}: {name} lists a value twice")
        return Param(name, target, choices=tuple(spec))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"low", "high", "log", "step"}
        low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
        numbers = [v for v in (low, high, step) if v is not None]
        if unknown or low is None or high is None or not isinstance(log, bool) or \
                any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
            raise SqueezeNetError(f"{where}: {name} must be a list of values or {{low: L, high: H[, log: true]"
                                  f"[, step: S]}}, got {brief(dict(spec))}")
        if not low < high or (log and low <= 0) or (step is not None and step <= 0):
            raise SqueezeNetError(f"{where}: {name} needs low < high (and low > 0 with log, step > 0), got {brief(dict(spec))}")
        integer = all(isinstance(v, int) for v in numbers)
        return Param(name, target, low=low, high=high, log=log, step=step, integer=integer)
    raise SqueezeNetError(f"{where}: {name} must be a list of values or a range {{low, high}}, got {brief(spec)}")


def parse_space(data: Any, where: str) -> Space:
    """A :class:`Space` from the parsed YAML of a space file."""
    if not isinstance(data, Mapping):
        raise SqueezeNetError(f"{where}: a space file is a mapping of metaparameters to values")
    model = data.get("model", "squeezenet_design")
    recipe = data.get("recipe", "cifar10")
    fixed = data.get("fixed") or {}
    if not isinstance(model, str) or not isinstance(recipe, str) or not isinstance(fixed, Mapping):
        raise SqueezeNetError(f"{where}: model and recipe must be names, fixed a mapping")
    get_model_entry(model)
    for name in fixed:
        _target(model, str(name))
    params = tuple(_param(model, str(k), v, where) for k, v in data.items() if k not in RESERVED)
    if not params:
        raise SqueezeNetError(f"{where}: names no metaparameter to vary (e.g. sr: [0.125, 0.25, 0.5])")
    clash = [p.name for p in params if p.name in fixed]
    if clash:
        raise SqueezeNetError(f"{where}: {', '.join(clash)} is both fixed and swept")
    return Space(params, model, recipe, dict(fixed))


def load_space(path: str | Path) -> Space:
    """Read and check a space file (YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SqueezeNetError(f"{path}: no such space file")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as exc:
        raise SqueezeNetError(f"{path}: invalid YAML ({' '.join(str(exc).split())[:120]})") from None
    return parse_space(data, str(path))
