"""Per-layer architecture report in the spirit of the paper's Table 1.

Shapes and multiply-accumulates are measured by running the network on PyTorch's ``meta`` device,
so no weights or activations are allocated whatever the model or input size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..deploy.metadata import FileModel
from ..errors import SqueezeNetError
from ..models import Fire, InferenceModel, create_model, get_model_entry, model_from_config

MAX_INPUT_SIZE = 4096


@dataclass
class LayerRow:
    """One row of the report: a paper-named layer (conv1, fire2, maxpool4, ...)."""

    name: str
    type: str
    out_shape: list[int]
    params: int
    macs: int
    squeeze: int | None = None
    expand1x1: int | None = None
    expand3x3: int | None = None
    shortcut: str | None = None


@dataclass
class ArchitectureReport:
    """Totals and rows. ``size_bytes`` is the fp32 size of the weights (parameters and float buffers)."""

    model: str
    input_size: int
    params: int
    macs: int
    size_bytes: int
    layers: list[LayerRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [{k: v for k, v in row.items() if v is not None} for row in d["layers"]]
        return d


def _layer_type(mods: list[nn.Module]) -> str:
    main = next((m for m in mods if not isinstance(m, (nn.ReLU, nn.Dropout, nn.BatchNorm2d))), mods[0])
    if isinstance(main, nn.Conv2d):
        k, s = main.kernel_size, main.stride
        return f"conv {k[0]}x{k[1]}/{s[0]}"
    if isinstance(main, nn.MaxPool2d):
        return f"maxpool {main.kernel_size}x{main.kernel_size}/{main.stride}"
    if isinstance(main, nn.AdaptiveAvgPool2d):
        return "avgpool (global)" if main.output_size in (1, (1, 1)) else "avgpool"
    if isinstance(main, nn.Linear):
        return "fc"
    return type(main).__name__.lower()


def _last_tensor(out: Any) -> torch.Tensor:
    """A layer's output, or the last of several (a detection body's maps, a head's boxes and class scores)."""
    while isinstance(out, (dict, list, tuple)):
        out = list(out.values())[-1] if isinstance(out, dict) else out[-1]
    return out


def architecture_report(model: str | nn.Module, input_size: int | None = None, **options: Any) -> ArchitectureReport:
    """Measure a model layer by layer at ``input_size`` x ``input_size``.

    ``model`` is a registered name (with builder ``options``), a model of this toolkit or anything with a
    ``meta`` (an ``OnnxModel``); in every case the measured copy is rebuilt on the meta device.
    """
    if isinstance(model, str):
        name = model
        entry = get_model_entry(name)
        input_size = entry.input_size if input_size is None else input_size
        _check_input_size(input_size)
        with torch.device("meta"):
            net = create_model(name, **options)
    else:
        if not isinstance(model, InferenceModel):
            raise SqueezeNetError(f"architecture_report needs a model of this toolkit (with a meta), got {type(model).__name__}")
        config = model.meta.config
        name = config.arch
        input_size = 224 if input_size is None else input_size
        _check_input_size(input_size)
        with torch.device("meta"):
            net = model_from_config(config)
    net.eval()
    in_chans = net.config.in_chans
    modules = dict(net.named_modules())

    shapes: dict[str, torch.Size] = {}
    current = ["input"]
    handles = []
    for row_name, paths in net.layer_names.items():
        for path in paths:
            handles.append(modules[path].register_forward_pre_hook(lambda m, a, n=row_name: current.__setitem__(0, n)))
        handles.append(modules[paths[-1]].register_forward_hook(
            lambda m, a, out, n=row_name: shapes.__setitem__(n, _last_tensor(out).shape)))
    counter = FlopCounterMode(display=False, depth=None)  # type: ignore[arg-type]
    x = torch.empty(1, in_chans, input_size, input_size, device="meta")
    try:
        with counter, torch.no_grad():
            net(x)
    except RuntimeError as exc:
        raise SqueezeNetError(
            f"input size {input_size} is too small for {name}: the feature map vanishes at {current[0]} "
            f"({str(exc).splitlines()[0]})"
        ) from None
    finally:
        for h in handles:
            h.remove()

    flops = counter.get_flop_counts()
    root = type(net).__name__
    rows = []
    for row_name, paths in net.layer_names.items():
        mods = [modules[p] for p in paths]
        params = sum(p.numel() for m in mods for p in m.parameters())
        macs = sum(sum(flops.get(f"{root}.{p}", {}).values()) for p in paths) // 2
        row = LayerRow(row_name, _layer_type(mods), list(shapes[row_name][1:]), params, macs)
        fire = mods[0]
        if isinstance(fire, Fire):
            row.type = "fire"
            row.squeeze = fire.squeeze.out_channels
            row.expand1x1 = fire.expand1x1.out_channels
            row.expand3x3 = fire.expand3x3.out_channels
            if fire.shortcut is not None:
                row.shortcut = "identity" if isinstance(fire.shortcut, nn.Identity) else "conv 1x1"
        rows.append(row)

    params = sum(p.numel() for p in net.parameters())
    floats = params + sum(b.numel() for b in net.buffers() if b.is_floating_point())
    return ArchitectureReport(
        model=name, input_size=input_size, params=params, macs=counter.get_total_flops() // 2,
        size_bytes=4 * floats, layers=rows,
    )


def _check_input_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_INPUT_SIZE:
        raise SqueezeNetError(f"input size must be an integer from 1 to {MAX_INPUT_SIZE}, got {size!r}")


def file_summary(model: InferenceModel, path: str) -> dict[str, Any]:
    """What ``squeezenet info FILE`` says beside the table: size, preprocessing, classes, and the weights
    left after pruning (PyTorch) or the precision (ONNX)."""
    from pathlib import Path

    meta = model.meta
    info: dict[str, Any] = {"file": path, "bytes": Path(path).stat().st_size, "preprocessing": meta.preprocessing.name,
                            "crop": meta.preprocessing.crop, "classes": meta.num_classes}
    if isinstance(model, nn.Module):
        weights = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
        info["weights"] = sum(p.numel() for p in weights)
        info["nonzero_weights"] = sum(int(torch.count_nonzero(p)) for p in weights)
    elif isinstance(model, FileModel):
        info["precision"] = model.precision
    return info
