"""Rich tables for reports: what people read in a terminal."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from .architecture import ArchitectureReport


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _mmacs(macs: int) -> str:
    return f"{macs / 1e6:,.1f}"


def console_for_output() -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a pipe or file."""
    console = Console()
    return console if console.is_terminal else Console(width=140)


def human_bytes(n: int) -> str:
    """1,234,567 -> '1.23 MB' (decimal units, as the paper's sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def architecture_table(report: ArchitectureReport) -> Table:
    """The per-layer table, with a totals row."""
    has_bypass = any(r.shortcut for r in report.layers)
    table = Table(title=f"{report.model} at {report.input_size}x{report.input_size}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output (CxHxW)", justify="right")
    for col in ("s1x1", "e1x1", "e3x3"):
        table.add_column(col, justify="right")
    if has_bypass:
        table.add_column("bypass")
    table.add_column("params", justify="right")
    table.add_column("MMACs", justify="right")
    for r in report.layers:
        cells = [r.name, r.type, "x".join(map(str, r.out_shape)), _n(r.squeeze), _n(r.expand1x1), _n(r.expand3x3)]
        if has_bypass:
            cells.append(r.shortcut or "")
        table.add_row(*cells, _n(r.params), _mmacs(r.macs))
    table.add_section()
    blanks = [""] * (4 + has_bypass)
    table.add_row("total", "", *blanks, _n(report.params), _mmacs(report.macs), style="bold")
    return table


def print_architecture(report: ArchitectureReport, console: Console | None = None) -> None:
    console = console or console_for_output()
    console.print(architecture_table(report))
    console.print(
        f"parameters {report.params:,}   MACs {report.macs / 1e9:.3f} G   "
        f"fp32 size {report.size_bytes:,} bytes ({human_bytes(report.size_bytes)})"
    )


#: a reference whose most frequent answer covers more of the images than this makes agreement uninformative
ONE_ANSWER_SHARE = 0.5


def paired_lines(r: Any) -> list[str]:
    """A :class:`~squeezenet.inference.PairedResult` as three lines (four when the reference answers mostly one
    class, so that agreement says little): both accuracies, agreement, the difference."""
    lines = [f"candidate top-1 {r.top1:.4f}   top-5 {r.top5:.4f}   reference top-1 {r.reference_top1:.4f}   "
             f"top-5 {r.reference_top5:.4f}   images {r.n:,}   skipped {r.skipped:,}",
             f"top-1 agreement {r.agreement:.4f}   logit SNR {r.snr_db:.1f} dB   mean KL(reference || candidate) {r.kl:.4f}",
             f"top-1 difference {100 * r.top1_diff:+.2f} pt, 95% interval [{100 * r.top1_diff_low:+.2f}, "
             f"{100 * r.top1_diff_high:+.2f}] (paired, Agresti-Min)   McNemar p {r.mcnemar_p:.3g} "
             f"({r.only_candidate_right} only candidate right, {r.only_reference_right} only reference right)"]
    if r.reference_top_share > ONE_ANSWER_SHARE:
        lines.append(f"note: the reference gives one class for {r.reference_top_share:.0%} of the images "
                     f"({r.reference_classes} distinct answers), so agreement says little: read the logit SNR")
    return lines


def file_line(info: dict) -> str:
    """The line under ``squeezenet info FILE``'s table."""
    extra = (f"precision {info['precision']}" if "precision" in info else
             f"non-zero weights {info['nonzero_weights']:,} of {info['weights']:,} "
             f"({info['nonzero_weights'] / max(info['weights'], 1):.1%})")
    return (f"file {info['file']} ({human_bytes(info['bytes'])})   preprocessing {info['preprocessing']}, "
            f"{info['crop']} crop   {info['classes']} classes   {extra}")
