"""State dicts of models that carry ``torch.nn.utils.parametrize`` parametrizations (pruning masks,
shared weights): what the layers actually compute with, under their plain names."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every parametrized tensor replaced by its computed value.

    A pruned or weight-shared model then saves and loads like the plain architecture it describes
    (``features.0.weight``, not ``features.0.parametrizations.weight.original``). The model is not
    touched (no deepcopy either: copies of parametrized modules share their generated class).
    """
    state = model.state_dict()
    computed: dict[str, tuple[str, torch.Tensor]] = {}  # "<prefix>parametrizations.<t>." -> (plain key, value)
    for prefix, module in model.named_modules():
        if parametrize.is_parametrized(module):
            base = f"{prefix}." if prefix else ""
            with torch.no_grad():
                for tensor in module.parametrizations:
                    computed[f"{base}parametrizations.{tensor}."] = (f"{base}{tensor}", getattr(module, tensor).detach())
    if not computed:
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        owner = next((p for p in computed if key.startswith(p)), None)
        if owner is None:
            out[key] = value
        elif key == owner + "original":
            plain, tensor = computed[owner]
            out[plain] = tensor
    return out
