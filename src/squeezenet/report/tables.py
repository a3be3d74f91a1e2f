"""Tables of results: predictions, detection AP and segmentation IoU per class, benchmark rows and pruning
sensitivity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from .render import human_bytes

if TYPE_CHECKING:
    from ..compress.sensitivity import Sensitivity
    from ..deploy.bench import BenchResult
    from ..inference.detection import DetectionScores
    from ..inference.predict import Prediction
    from ..inference.segmentation import SegmentationScores


def detection_table(scores: DetectionScores) -> Table:
    """Per class: COCO AP@[.5:.95] and AP@.5, best first (classes with objects in the data only)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"COCO AP per class ({scores.images} images)")
    for column, justify in (("class", "left"), ("AP@.5", "right"), ("AP@[.5:.95]", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, ap in sorted(scores.per_class.items(), key=lambda kv: -kv[1]["ap50"]):
        table.add_row(name, f"{ap['ap50']:.3f}", f"{ap['ap']:.3f}")
    return table


def segmentation_table(scores: SegmentationScores) -> Table:
    """Per class: IoU (with its 95% interval when measured) and pixel accuracy, best first (classes present in the
    truth or the predictions only)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"IoU per class ({scores.images} images)")
    for column, justify in (("class", "left"), ("IoU", "right"), ("95%", "right"), ("accuracy", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, row in sorted(scores.per_class.items(), key=lambda kv: -kv[1]["iou"]):
        band = scores.intervals.get(f"iou {name}")
        table.add_row(name, f"{row['iou']:.3f}", f"[{band[0]:.3f}, {band[1]:.3f}]" if band else "",
                      "" if row["accuracy"] != row["accuracy"] else f"{row['accuracy']:.3f}")
    return table


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


def bench_table(result: BenchResult, title: str) -> Table:
    """Runtime x precision rows; speed relative to onnxruntime fp32 at batch 32 (the issue's anchor)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("runtime", "prec.", "file", "size", "gzip", "brotli", "load ms", "RSS MB", "b1 ms", "b32 img/s",
               "vs ORT", "of peak", "agree", "SNR dB", "KL", "top-1", "kernels")
    for col in columns:
        table.add_column(col, justify="left" if col in ("runtime", "prec.", "file", "kernels") else "right")

    def opt(value: float | int | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for r in result.rows:
        table.add_row(r.runtime, r.precision, r.file, human_bytes(r.size_bytes),
                      "-" if r.gzip_bytes is None else human_bytes(r.gzip_bytes),
                      "-" if r.brotli_bytes is None else human_bytes(r.brotli_bytes),
                      opt(r.load_ms, ".0f"), opt(r.peak_rss_mb, ".0f"), f"{r.latency_ms:.2f}", f"{r.throughput:,.0f}",
                      "-" if r.vs_onnxruntime is None else f"{r.vs_onnxruntime:.2f}x", opt(r.of_peak, ".0%"),
                      opt(r.agreement, ".3f"), opt(r.snr_db, ".1f"), opt(r.kl, ".4f"), opt(r.top1, ".3f"), r.kernels)
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
