"""Loss and accuracy curves of a run, from Lightning's CSV log."""

from __future__ import annotations

import csv
from pathlib import Path

from ..weights import atomic_path


def read_epoch_metrics(csv_path: Path) -> dict[str, dict[int, float]]:
    """{metric: {epoch: value}} from a CSVLogger ``metrics.csv`` (epoch-level columns only)."""
    series: dict[str, dict[int, float]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            epoch = row.get("epoch")
            if not epoch:
                continue
            for key, value in row.items():
                if key in ("epoch", "step") or not value or key.endswith("_step"):
                    continue
                series.setdefault(key.removesuffix("_epoch"), {})[int(epoch)] = float(value)
    return series


def plot_curves(csv_path: Path, out: Path, title: str) -> Path:
    """A two-panel PNG: train/val loss and train/val accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    s = read_epoch_metrics(csv_path)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for key, label, ax in [("train/loss", "train loss", ax_loss), ("val/loss", "val loss", ax_loss),
                           ("train/acc", "train top-1", ax_acc), ("val/top1", "val top-1", ax_acc),
                           ("val/top5", "val top-5", ax_acc)]:
        if key in s:
            epochs = sorted(s[key])
            ax.plot([e + 1 for e in epochs], [s[key][e] for e in epochs], marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.legend()
    fig.suptitle(title)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
