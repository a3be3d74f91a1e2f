"""``squeezenet demo``: the README's main job, end to end on CIFAR-10.

Train the ``cifar10`` recipe on whatever hardware is present, re-load the exported weights file the way
a user would, evaluate it on the test images, and print a summary table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .data.training import default_data_root
from .inference import evaluate
from .train import load_recipe, train
from .weights import load_weights


@dataclass
class DemoResult:
    model: str
    params: int
    fp32_bytes: int
    top1: float
    top5: float
    test_images: int
    train_time_s: float
    device: str
    run_dir: Path


def run_demo(run_dir: str | Path, *, epochs: int | None = None, data_root: str | Path | None = None,
             quiet: bool = False, overrides: dict | None = None) -> DemoResult:
    overrides = dict(overrides or {})
    if epochs:
        overrides["epochs"] = epochs
    recipe = load_recipe("cifar10", overrides)
    run_dir = Path(run_dir)
    start = time.perf_counter()
    metrics = train(recipe, "cifar10", run_dir, data_root=data_root, quiet=quiet).metrics
    train_time = time.perf_counter() - start
    model = load_weights(run_dir / "best.safetensors")
    test_dir = Path(data_root or default_data_root()) / "cifar10" / "test"
    if test_dir.is_dir():
        result = evaluate(model, test_dir, batch_size=500, progress=not quiet)
        top1, top5, n = result.top1, result.top5, result.n
    else:  # torchvision's binary CIFAR-10: the training run's own test-set evaluation
        top1, top5, n = metrics["best_top1"], float("nan"), metrics["val_images"]
    params = sum(p.numel() for p in model.parameters())
    floats = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    return DemoResult(recipe.model, params, 4 * floats, top1, top5, n, train_time, metrics["device"], run_dir)


def print_demo(result: DemoResult) -> None:
    from rich import box
    from rich.table import Table

    from .report.render import console_for_output, human_bytes

    table = Table(title="squeezenet demo: CIFAR-10", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "params", "fp32 size", "test top-1", "test top-5", "test images", "train time", "device"):
        table.add_column(col, justify="left" if col in ("model", "device") else "right")
    table.add_row(result.model, f"{result.params:,}", human_bytes(result.fp32_bytes), f"{result.top1:.4f}",
                  f"{result.top5:.4f}", f"{result.test_images:,}", f"{result.train_time_s:.0f} s", result.device)
    console = console_for_output()
    console.print(table)
    console.print(f"run directory: {result.run_dir} (best.safetensors, metrics.json, curves.png, logs/)")
