"""What a ``.sqz`` file holds, layer by layer: the Deep Compression columns of the paper's Table 1."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich import box
from rich.console import Console
from rich.table import Table

from ..inference.detection import PairedDetection
from ..inference.segmentation import PairedSegmentation
from .render import console_for_output, human_bytes

ALEXNET_BYTES = 240_000_000  # the paper's Table 2 baseline: AlexNet, 32-bit, 240 MB


@dataclass
class LayerRow:
    layer: str  # the paper's name, e.g. fire2/expand3x3; the tensor key for non-layer tensors
    key: str
    shape: list[int]
    params: int
    kept: int
    density: float
    centroids: int
    bits: int  # codebook index width; 32 for tensors stored raw
    bytes: float  # file bytes spent on this tensor (its streams and its share of the side data)
    coder: str


@dataclass
class CompressionReport:
    path: str
    rows: list[LayerRow]
    file_bytes: int
    params: int
    kept: int
    fp32_bytes: int
    load_seconds: float

    @property
    def ratio(self) -> float:
        return self.fp32_bytes / self.file_bytes

    def to_dict(self) -> dict:
        return {"path": self.path, "file_bytes": self.file_bytes, "params": self.params, "kept": self.kept,
                "density": self.kept / max(1, self.params), "fp32_bytes": self.fp32_bytes, "ratio": self.ratio,
                "ratio_to_alexnet": ALEXNET_BYTES / self.file_bytes, "load_seconds": self.load_seconds,
                "layers": [asdict(r) for r in self.rows]}


def compression_report(path: str | Path) -> CompressionReport:
    """Decode a ``.sqz`` file (timed) and describe each tensor in it."""
    import time

    from ..models import model_from_config, paper_layer_names
    from ..weights.files import read_sqz

    start = time.perf_counter()
    weights, contents = read_sqz(path)
    seconds = time.perf_counter() - start
    with torch.device("meta"):
        model = model_from_config(weights.meta.config)
    names = {f"{p}.weight": n for p, n in paper_layer_names(model).items()}
    names.update({f"{p}.bias": f"{n} (bias)" for p, n in paper_layer_names(model).items()})
    rows = []
    for r in contents.records:
        kept = r.kept if r.kind == "shared" else r.numel
        rows.append(LayerRow(names.get(r.key, r.key), r.key, list(r.shape), r.numel, kept, kept / max(1, r.numel),
                             r.centroids, r.bits, contents.tensor_bytes(r), "/".join(r.coders) or "lzma"))
    params = sum(r.params for r in rows)
    floats = sum(r.numel for r in contents.records if r.dtype == "float32")
    return CompressionReport(str(path), rows, contents.file_bytes, params, sum(r.kept for r in rows), 4 * floats, seconds)


def compression_table(report: CompressionReport, *, biases: bool = False) -> Table:
    """Per-layer table; biases (stored raw, a few bytes each) are folded into the totals unless asked for."""
    table = Table(title=f"{Path(report.path).name}: {report.file_bytes:,} bytes", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "shape", "params", "density", "bits", "centroids", "bytes", "bits/weight", "coder"):
        table.add_column(col, justify="left" if col in ("layer", "shape", "coder") else "right")
    for r in report.rows:
        if r.bits == 32 and not biases and len(r.shape) <= 1:
            continue
        table.add_row(r.layer, "x".join(map(str, r.shape)), f"{r.params:,}", f"{100 * r.density:.1f}%",
                      str(r.bits), f"{r.centroids:,}" if r.centroids else "", f"{r.bytes:,.0f}",
                      f"{8 * r.bytes / max(1, r.params):.2f}", r.coder)
    table.add_section()
    table.add_row("total", "", f"{report.params:,}", f"{100 * report.kept / max(1, report.params):.1f}%", "", "",
                  f"{report.file_bytes:,}", f"{8 * report.file_bytes / max(1, report.params):.2f}", "", style="bold")
    return table


def print_compression(report: CompressionReport, console: Console | None = None) -> None:
    console = console or console_for_output()
    console.print(compression_table(report))
    console.print(f"file {report.file_bytes:,} bytes ({human_bytes(report.file_bytes)})   fp32 "
                  f"{human_bytes(report.fp32_bytes)}   ratio {report.ratio:.1f}x   vs AlexNet's 240 MB "
                  f"{ALEXNET_BYTES / report.file_bytes:,.0f}x   decoded in {report.load_seconds:.2f} s")


def compression_summary(report: CompressionReport, input_fp32_bytes: int, paired: Any = None,
                        phases: list[dict] | None = None) -> dict[str, Any]:
    """What ``squeezenet compress`` reports: the file, its ratios to the input and to AlexNet, and (when measured)
    the compressed file against the input on the same images (a ``PairedResult``): ``before``/``after`` accuracy and
    the paired statistics."""
    before = after = None
    if isinstance(paired, PairedDetection):
        before = {"map50": paired.reference_map50, "map": paired.reference_map, "n": paired.images}
        after = {"map50": paired.candidate_map50, "map": paired.candidate_map, "n": paired.images}
    elif isinstance(paired, PairedSegmentation):
        before = {"miou": paired.reference_miou, "pixel_accuracy": paired.reference_pixel_accuracy, "n": paired.images}
        after = {"miou": paired.candidate_miou, "pixel_accuracy": paired.candidate_pixel_accuracy, "n": paired.images}
    elif paired is not None:
        before = {"top1": paired.reference_top1, "top5": paired.reference_top5, "n": paired.n, "skipped": paired.skipped}
        after = {"top1": paired.top1, "top5": paired.top5, "n": paired.n, "skipped": paired.skipped}
    return {**report.to_dict(), "input_fp32_bytes": input_fp32_bytes,
            "ratio_to_input": input_fp32_bytes / report.file_bytes, "ratio_to_alexnet": ALEXNET_BYTES / report.file_bytes,
            "before": before, "after": after, "paired": paired.to_dict() if paired is not None else None,
            "phases": phases or []}


def budget_table(rows: list[dict[str, Any]]) -> Table:
    """What a byte budget chose per layer and why: the grid step (or the layer as it was), the share of its kept
    weights it also pruned, the bytes it costs (indices, plus or minus its mask's change),
    the layer's output error, how much the network amplifies it (KL per unit error) and the KL it predicts."""
    table = Table(title="byte budget: per-layer choices (greedy on predicted KL per byte saved)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("layer", "grid step", "levels", "also pruned", "bytes", "output error", "KL per error", "predicted KL"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in rows:
        as_is = r["step"] is None
        table.add_row(r["layer"], "as is" if as_is else f"{r['step']:.3g}", "" if as_is else f"2^{r['levels_bits']:.1f}",
                      f"{r.get('prune', 0.0):.0%}" if r.get("prune") else "", f"{r['bytes']:,.0f}",
                      f"{r['output_error']:.3g}", f"{r['sensitivity']:.3g}", f"{r['kl']:.5f}")
    table.add_section()
    table.add_row("total", "", "", "", f"{sum(r['bytes'] for r in rows):,.0f}", "", "",
                  f"{sum(r['kl'] for r in rows):.4f}", style="bold")
    return table


def print_compression_summary(report: CompressionReport, summary: dict[str, Any], eval_dir: str | None = None,
                              console: Console | None = None) -> None:
    console = console or console_for_output()
    print_compression(report, console)
    if summary.get("budget"):
        console.print(budget_table(summary["budget"]))
    if summary.get("method"):
        console.print(f"weights: {summary['method']}")
    fp32 = summary["input_fp32_bytes"]
    console.print(f"input weights {fp32:,} bytes -> {report.file_bytes:,} bytes: {summary['ratio_to_input']:.1f}x smaller")
    paired = summary["paired"]
    if paired and "map50" in paired:
        low, high = paired["map50_diff_ci95"]
        console.print(f"on the {paired['images']:,} validation images of {eval_dir}: mAP@.5 {paired['reference_map50']:.4f} -> "
                      f"{paired['map50']:.4f} ({paired['map50_diff']:+.4f}, 95% [{low:+.4f}, {high:+.4f}] over "
                      f"{paired['resamples']} resamples)   mAP {paired['reference_map']:.4f} -> {paired['map']:.4f}")
    elif paired and "miou" in paired:
        low, high = paired["miou_diff_ci95"]
        console.print(f"on the {paired['images']:,} validation images of {eval_dir}: mIoU {paired['reference_miou']:.4f} -> "
                      f"{paired['miou']:.4f} ({paired['miou_diff']:+.4f}, 95% [{low:+.4f}, {high:+.4f}] over "
                      f"{paired['resamples']} resamples)   pixel accuracy {paired['reference_pixel_accuracy']:.4f} -> "
                      f"{paired['pixel_accuracy']:.4f}")
    elif paired:
        console.print(f"on {paired['n']:,} images of {eval_dir}: top-1 {paired['reference_top1']:.4f} -> {paired['top1']:.4f} "
                      f"({100 * paired['top1_diff']:+.2f} pt, 95% [{100 * paired['top1_diff_low']:+.2f}, "
                      f"{100 * paired['top1_diff_high']:+.2f}])   top-5 {paired['reference_top5']:.4f} -> {paired['top5']:.4f}   "
                      f"agreement {paired['agreement']:.4f}   logit SNR {paired['snr_db']:.1f} dB   KL {paired['kl']:.4f}")
