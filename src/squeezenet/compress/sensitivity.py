"""Per-layer pruning sensitivity (Han et al. 2015, Fig. 6): accuracy when only one layer is pruned.

Each layer in turn is masked to each density with no fine-tuning while every other layer stays
intact; the grid shows which layers tolerate pruning and guides per-layer ``--density`` targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import SqueezeNetError
from ..models import paper_layer_names, prunable_layers
from .prune import magnitude_mask, set_mask

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_path(path: str | Path) -> None:
    """``ValueError`` unless matplotlib will write ``path`` in the format its suffix names."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise SqueezeNetError(f"{path}: the plot is written as {', '.join(PLOT_SUFFIXES)}; name the file accordingly")


@dataclass
class Sensitivity:
    densities: list[float]
    baseline: float  # top-1 of the unpruned model
    top1: dict[str, list[float]]  # paper layer name -> top-1 at each density
    params: dict[str, int]
    images: int

    def to_dict(self) -> dict:
        return {"densities": self.densities, "baseline": self.baseline, "top1": self.top1, "params": self.params,
                "images": self.images}


@torch.inference_mode()
def _top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> float:
    correct = 0
    for i in range(0, len(images), batch):
        correct += int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(images)


def sensitivity(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, densities: Sequence[float],
                progress: bool = True) -> Sensitivity:
    """Top-1 on ``images`` (already preprocessed) for every (layer, density) pair; the model is left unchanged."""
    if not densities or any(not 0 < d <= 1 for d in densities):
        raise SqueezeNetError(f"densities must be in (0, 1], got {list(densities)}")
    model.eval()
    names = paper_layer_names(model)
    layers = prunable_layers(model)
    result = Sensitivity(list(densities), _top1(model, images, labels), {}, {}, len(images))
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("sensitivity", total=len(layers) * len(densities))
        for path, layer in layers.items():
            scores = []
            for d in densities:
                with torch.no_grad():
                    set_mask(layer, magnitude_mask(layer.weight, max(1, round(d * layer.weight.numel()))))
                scores.append(_top1(model, images, labels))
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)  # original weights back
                bar.advance(task)
            result.top1[names[path]] = scores
            result.params[names[path]] = layer.weight.numel()
    return result


def plot_sensitivity(result: Sensitivity, path: str | Path, title: str = "pruning sensitivity") -> Path:
    """A layer x density heat map of the top-1 lost when only that layer is pruned, written atomically
    (PNG, SVG or PDF by the file's suffix).

    Han et al.'s Fig. 6 draws one line per layer; with SqueezeNet's 26 prunable layers such lines cannot
    be told apart, so each cell is coloured and labelled by the loss: points of top-1 below the unpruned model
    (the table and JSON give the top-1 itself).
    """
    check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..common.io import atomic_path

    names = list(result.top1)
    top1 = np.array([result.top1[n] for n in names], dtype=float).reshape(len(names), len(result.densities))
    loss = np.clip((result.baseline - top1) * 100, 0, None)
    vmax = max(1.0, float(loss.max()))
    fig, ax = plt.subplots(figsize=(3.4 + 0.75 * len(result.densities), 1.6 + 0.28 * len(names)), dpi=120)
    image = ax.imshow(loss, cmap="YlOrRd", vmin=0, vmax=vmax, aspect="auto")
    for (row, col), value in np.ndenumerate(loss):
        ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                color="white" if value > 0.6 * vmax else "black")
    ax.set_xticks(range(len(result.densities)), [f"{d:g}" for d in result.densities])
    ax.set_yticks(range(len(names)), [f"{n} ({result.params.get(n, 0):,})" for n in names], fontsize=7)
    ax.set_xlabel("density (fraction of this layer's weights kept)")
    ax.set_title(f"{title}\ntop-1 points lost on {result.images} images\n(unpruned top-1 {result.baseline:.3f})", fontsize=9)
    fig.colorbar(image, ax=ax, label="top-1 lost (points)", shrink=0.8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lower().lstrip("."))
    plt.close(fig)
    return path
