"""Tables of what the toolkit offers: registered models and named weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Table


def models_table(rows: Sequence[dict[str, Any]], options: bool = False) -> Table:
    """One row per registered model (``name``, ``params``, ``input_size``, ``description``); with ``options``,
    each builder's options and defaults under it."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("model", "left"), ("params", "right"), ("input", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", str(r["input_size"]), r["description"])
        if options:
            opts = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
            table.add_row("", "", "", f"[dim]options: {opts}[/dim]")
    return table


def weights_table(rows: Sequence[dict[str, Any]]) -> Table:
    """One row per named weight set (``name``, ``preprocessing``, ``cached``, ``description``)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("weights", "preprocessing", "cached", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["preprocessing"], "yes" if r["cached"] else "no", r["description"])
    return table
