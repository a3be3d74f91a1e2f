"""Loss and accuracy curves of a run, from Lightning's CSV log."""

from __future__ import annotations

import csv
from pathlib import Path

from ..common.io import atomic_path


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


def align_final_validation(series: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """Validation logged after the last trained epoch belongs to that epoch.

    A time budget stops training mid-epoch; Lightning then counts the epoch as done, and the validation of
    the final weights (``train()`` runs it) is logged under the next epoch number, which no training ever
    reached: plotted as is, the curves would show a phantom extra epoch.
    """
    trained = [e for key in ("train/loss", "train/acc") for e in series.get(key, {})]
    if not trained:
        return series
    last = max(trained)
    return {key: {min(e, last) if key.startswith("val/") else e: v for e, v in sorted(values.items())}
            for key, values in series.items()}


def plot_curves(csv_path: Path, out: Path, title: str) -> Path:
    """A three-panel PNG per epoch: train/val loss, the validation scores of the task (top-1/top-5, mAP, mIoU and
    pixel accuracy), and the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    s = align_final_validation(read_epoch_metrics(csv_path))
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for key, label, ax in [("train/loss", "train loss", ax_loss), ("val/loss", "val loss", ax_loss),
                           ("train/acc", "train top-1", ax_acc), ("val/top1", "val top-1", ax_acc),
                           ("val/top5", "val top-5", ax_acc), ("val/map50", "val mAP@.5", ax_acc),
                           ("val/map", "val mAP@[.5:.95]", ax_acc), ("val/miou", "val mIoU", ax_acc),
                           ("val/pixel_acc", "val pixel accuracy", ax_acc), ("lr", "learning rate (end of epoch)", ax_lr)]:
        if key in s:
            epochs = sorted(s[key])
            ax.plot([e + 1 for e in epochs], [s[key][e] for e in epochs], marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="score", title="validation scores", ylim=(0, 1))
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if ax.lines:
            ax.legend()
    fig.suptitle(title)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
