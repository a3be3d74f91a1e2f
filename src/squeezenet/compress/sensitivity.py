"""Per-layer pruning sensitivity (Han et al. 2015, Fig. 6): accuracy when only one layer is pruned.

Each layer in turn is masked to each density with no fine-tuning while every other layer stays
intact; the curves show which layers tolerate pruning and guide per-layer ``--density`` targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from .layers import paper_layer_names, prunable_layers
from .prune import magnitude_mask, set_mask


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
        raise ValueError(f"densities must be in (0, 1], got {list(densities)}")
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
    """Accuracy vs density, one line per layer (Han et al.'s Fig. 6), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..weights import atomic_path

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    cmap = plt.get_cmap("viridis", max(2, len(result.top1)))
    for i, (name, scores) in enumerate(result.top1.items()):
        ax.plot(result.densities, scores, marker="o", markersize=3, color=cmap(i), label=name)
    ax.axhline(result.baseline, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("density (fraction of weights kept, this layer only)")
    ax.set_ylabel(f"top-1 on {result.images} images")
    ax.set_title(title)
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
