"""Per-layer settings (``0.3,conv1=1,*/squeeze=0.25``) resolved to the layers compression acts on."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from torch import nn

from ..errors import SqueezeNetError
from ..models.layers import paper_layer_names, prunable_layers


def layer_values(spec: str | float | Mapping[str, float], model: nn.Module, option: str) -> dict[str, float | None]:
    """Per-layer numbers from ``0.33``, a mapping, or ``"0.33,conv1=1,fire9=0.5,fire2/expand3x3=0.4"``.

    Keys are module paths, the paper's names (``fire9`` covers the three convs of that Fire) or
    shell patterns over either (``*/squeeze``); an exact name wins over a Fire name, a Fire name over a
    pattern (the first that matches), a pattern over the bare number, the default. Unset layers map to ``None``.
    """
    entries: dict[str, float] = {}
    if isinstance(spec, (int, float)):
        entries["*"] = float(spec)
    elif isinstance(spec, Mapping):
        entries = {str(k): float(v) for k, v in spec.items()}
    else:
        for part in (p.strip() for p in str(spec).split(",") if p.strip()):
            key, _, value = part.rpartition("=")
            try:
                entries[key.strip() or "*"] = float(value)
            except ValueError:
                raise SqueezeNetError(f"{option}={spec!r}: {part!r} is not NUMBER or LAYER=NUMBER") from None
    paper = paper_layer_names(model)
    used: set[str] = set()
    values: dict[str, float | None] = {}
    for path in prunable_layers(model):
        name = paper[path]
        values[path] = None
        patterns = [k for k in entries if k != "*" and any(c in k for c in "*?[")
                    and (fnmatch.fnmatchcase(name, k) or fnmatch.fnmatchcase(path, k))]
        for key in (path, name, name.split("/")[0], *patterns, "*"):
            if key in entries:
                values[path] = entries[key]
                used.add(key)
                break
    unknown = set(entries) - used - {"*"}
    if unknown:
        raise SqueezeNetError(f"{option}=: no layer called {', '.join(sorted(unknown))} "
                         f"(layers: {', '.join(dict.fromkeys(n.split('/')[0] for n in paper.values()))})")
    return values
