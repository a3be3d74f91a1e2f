"""What a study found: a table per trial, the Pareto front of accuracy against size, CSV/JSON and plots in the
style of the paper's Fig. 3 (accuracy and model size against SR or pct3x3) and Table 3 (bypass variants)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..common.io import atomic_path
from .space import Space


@dataclass
class TrialRow:
    """One trial as a person reads it."""

    number: int
    state: str  # complete, pruned, running, failed, waiting
    point: dict[str, Any]
    params: int | None  # network parameters
    fp32_bytes: int | None
    macs: int | None  # at the recipe's image size
    top1: float | None
    top5: float | None
    top1_ci: float | None  # half-width of top-1's 95% interval from the number of validation images (not seeds)
    time_s: float | None  # training time
    epochs: int | None  # how many epochs it trained (a time budget may end a trial early: compare like with like)
    run_dir: str | None
    pareto: bool = False
    note: str = ""


def _architecture(space: Space, point: dict[str, Any], num_classes: int, size: int) -> tuple[int, int, int]:
    from ..report import architecture_report

    model_options, _ = space.split(point)
    report = architecture_report(space.model, input_size=size, **{**model_options, "num_classes": num_classes})
    return report.params, report.size_bytes, report.macs


def _val_images(study_dir: Path | None, run_dir: Any) -> int | None:
    """How many images a trial was validated on, from its run folder's metrics.json (trials recorded before the
    study kept the count; on another machine's trials the folder is not here and the interval stays unknown)."""
    if study_dir is None or not isinstance(run_dir, str):
        return None
    from ..common.jsonsafe import parse_json

    try:
        value = parse_json((study_dir / run_dir / "metrics.json").read_text(), run_dir).get("val_images")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def collect(study: Any, space: Space, num_classes: int, image_size: int, study_dir: Path | None = None) -> list[TrialRow]:
    """Rows for every trial that trained or is training (duplicates of a point taken twice are left out)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "duplicate_of" in t.user_attrs or (t.state.name == "FAIL" and "run_dir" not in t.user_attrs):
            continue
        point = {p.name: t.params[p.name] for p in space.params if p.name in t.params}
        if len(point) != len(space.params):
            continue  # a trial that never got its point (taken when none was left)
        params, size, macs = _architecture(space, point, num_classes, image_size)
        note = t.user_attrs.get("violates") or t.user_attrs.get("failure") or ""
        top1, run_dir = t.user_attrs.get("top1"), t.user_attrs.get("run_dir")
        images = t.user_attrs.get("val_images") or (_val_images(study_dir, run_dir) if top1 is not None else None)
        rows.append(TrialRow(t.number, t.state.name.lower(), point, params, size, macs, top1, t.user_attrs.get("top5"),
                             interval_half_width(top1, images), t.user_attrs.get("train_time_s"), t.user_attrs.get("epochs"),
                             run_dir, note=note))
    _mark_pareto(rows)
    return rows


def interval_half_width(accuracy: float | None, images: int | None) -> float | None:
    """Half-width of the 95% Wilson interval of an accuracy measured on ``images`` images: how far apart two
    trials' top-1 must be before the validation set can tell them apart (seed-to-seed variation comes on top)."""
    if accuracy is None or not images or math.isnan(accuracy):
        return None
    z = 1.959964
    return z * math.sqrt(accuracy * (1 - accuracy) / images + z * z / (4 * images * images)) / (1 + z * z / images)


def _mark_pareto(rows: list[TrialRow]) -> None:
    """Complete trials no other complete trial beats on both top-1 (higher) and parameters (fewer)."""
    done = [r for r in rows if r.state == "complete" and r.top1 is not None and r.params is not None]
    for r in done:
        r.pareto = not any(o is not r and o.top1 >= r.top1 and o.params <= r.params  # type: ignore[operator]
                           and (o.top1 > r.top1 or o.params < r.params) for o in done)  # type: ignore[operator]


def table_lines(rows: list[TrialRow], space: Space) -> list[str]:
    names = [p.name for p in space.params]
    head = ["trial", "state", *names, "params", "fp32 KB", "MMACs", "top-1", "+-95%", "top-5", "epochs", "time s", "front"]
    body = [_cells(r, names) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in (head, *body)]


def _cells(r: TrialRow, names: list[str]) -> list[str]:
    return [str(r.number), r.state, *(_fmt(r.point.get(n)) for n in names), f"{r.params:,}" if r.params else "-",
            f"{r.fp32_bytes / 1000:,.0f}" if r.fp32_bytes else "-", f"{r.macs / 1e6:,.1f}" if r.macs else "-",
            _fmt(r.top1, ".4f"), _fmt(r.top1_ci, ".4f"), _fmt(r.top5, ".4f"), _fmt(r.epochs), _fmt(r.time_s, ".0f"),
            "*" if r.pareto else ""]


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return "nan" if math.isnan(value) else format(value, spec)
    return format(value, ".4g") if isinstance(value, float) else str(value)


def write_files(study_dir: Path, rows: list[TrialRow], space: Space) -> list[Path]:
    """``report.csv``, ``report.json`` and the plots; returns the paths written."""
    written = []
    with atomic_path(study_dir / "report.json") as tmp:
        tmp.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    written.append(study_dir / "report.json")
    names = [p.name for p in space.params]
    with atomic_path(study_dir / "report.csv") as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", *names, "params", "fp32_bytes", "macs", "top1", "top1_ci95", "top5", "epochs",
                         "time_s", "pareto", "run_dir", "note"])
        for r in rows:
            writer.writerow([r.number, r.state, *(r.point.get(n) for n in names), r.params, r.fp32_bytes, r.macs,
                             r.top1, r.top1_ci, r.top5, r.epochs, r.time_s, int(r.pareto), r.run_dir, r.note])
    written.append(study_dir / "report.csv")
    return written + _plots(study_dir, rows, space)


def _plots(study_dir: Path, rows: list[TrialRow], space: Space) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.state == "complete" and r.top1 is not None]
    if not done:
        return []
    written = []
    numeric = [p.name for p in space.params if p.choices is None or all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.choices)]
    for name in numeric:  # Fig. 3a/3b: accuracy (left) and model size (right) against one metaparameter
        if len({r.point[name] for r in done}) < 2:
            continue
        others = [n for n in space.params if n.name != name]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        size_ax = ax.twinx()
        groups: dict[str, list[TrialRow]] = {}
        for r in done:
            groups.setdefault(", ".join(f"{o.name}={_fmt(r.point[o.name])}" for o in others), []).append(r)
        for label, group in sorted(groups.items()):
            group.sort(key=lambda r: r.point[name])
            xs = [r.point[name] for r in group]
            ax.errorbar(xs, [100 * r.top1 for r in group], yerr=[100 * (r.top1_ci or 0) for r in group],  # type: ignore[operator]
                        fmt="o-", capsize=3, label=label or "top-1")
            size_ax.plot(xs, [r.fp32_bytes / 1e6 for r in group], "s--", alpha=0.4, color="gray")  # type: ignore[operator]
        ax.set_xlabel(name)
        ax.set_ylabel("top-1 accuracy (%; bars: 95% interval)")
        size_ax.set_ylabel("model size, fp32 (MB; dashed)")
        ax.set_title(f"top-1 and model size against {name}")
        if len(groups) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = study_dir / f"plot_{name.replace('.', '_')}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    if any(p.name == "bypass" for p in space.params):  # Table 3: the bypass variants side by side
        by: dict[str, list[TrialRow]] = {}
        for r in done:
            by.setdefault(str(r.point["bypass"]), []).append(r)
        order = [b for b in ("none", "simple", "complex") if b in by]
        fig, ax = plt.subplots(figsize=(5, 3.8))
        means = [sum(100 * (r.top1 or 0) for r in by[b]) / len(by[b]) for b in order]
        bars = [sum(100 * (r.top1_ci or 0) for r in by[b]) / len(by[b]) for b in order]  # (one trial each: its own)
        ax.bar(order, means, yerr=bars, capsize=4, color=["#999", "#4a7", "#47a"][:len(order)])
        for i, m in enumerate(means):
            ax.text(i, m + bars[i], f"{m:.1f}%", ha="center", va="bottom")
        ax.set_ylabel("top-1 accuracy (%; bars: 95% interval)")
        ax.set_title("bypass variants (paper's Table 3)")
        ax.set_ylim(min(means) - 5, max(means) + 3)
        fig.tight_layout()
        path = study_dir / "plot_bypass.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))  # the Pareto front: accuracy against parameters
    ax.scatter([r.params or 0 for r in done], [100 * (r.top1 or 0) for r in done], c="#bbb", label="trials")
    front = sorted((r for r in done if r.pareto), key=lambda r: r.params or 0)
    ax.plot([r.params or 0 for r in front], [100 * (r.top1 or 0) for r in front], "o-", color="#c33", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend()
    fig.tight_layout()
    path = study_dir / "plot_pareto.png"
    _save(fig, path)
    plt.close(fig)
    return [*written, path]


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
