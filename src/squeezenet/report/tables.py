"""Tables of results: predictions, benchmark rows and pruning sensitivity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from .render import human_bytes

if TYPE_CHECKING:
    from ..compress.sensitivity import Sensitivity
    from ..deploy.bench import BenchRow
    from ..inference.predict import Prediction


def predictions_table(results: Sequence[Prediction]) -> Table:
    """One table, a section per readable image: rank, class, index, probability."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (("image", "left"), ("#", "right"), ("class", "left"), ("index", "right"),
                            ("probability", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in (r for r in results if not r.error):
        for rank, (index, name, prob) in enumerate(r.top, 1):
            table.add_row(r.image if rank == 1 else "", str(rank), name, str(index), f"{prob:.4f}",
                          end_section=rank == len(r.top))
    return table


def bench_table(rows: Sequence[BenchRow], title: str) -> Table:
    """Formats side by side; speed-ups relative to the first row."""
    base = rows[0].latency_ms
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("format", "file", "size", "top-1", "top-5", "batch-1 ms", "speed-up", "batch-32 img/s"):
        table.add_column(col, justify="left" if col in ("format", "file") else "right")
    for r in rows:
        acc = (f"{r.top1:.4f}", f"{r.top5:.4f}") if r.top1 is not None and r.top5 is not None else ("-", "-")
        table.add_row(r.format, r.file, human_bytes(r.size_bytes), *acc, f"{r.latency_ms:.2f}",
                      f"{base / r.latency_ms:.2f}x", f"{r.throughput:,.0f}")
    return table


def sensitivity_table(result: Sensitivity) -> Table:
    """Top-1 per layer and density, the unpruned top-1 in the title."""
    table = Table(title=f"top-1 with one layer pruned ({result.images} images, unpruned {result.baseline:.4f})",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer")
    table.add_column("params", justify="right")
    for d in result.densities:
        table.add_column(f"{d:g}", justify="right")
    for name, scores in result.top1.items():
        table.add_row(name, f"{result.params[name]:,}", *[f"{s:.3f}" for s in scores])
    return table
