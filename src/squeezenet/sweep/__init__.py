"""Design-space sweeps (the paper's sections 5-6 as a tool) on Optuna: ``squeezenet sweep``.

>>> start_sweep("sweeps/cifar10-sr.yaml", "cifar10", "studies/sr", trial_budget_s=120)   # grid: every point once
>>> resume_sweep("studies/sr")                     # continue after a kill, or join as another worker
>>> rows, lines, files = sweep_report("studies/sr")  # table, Pareto front, CSV/JSON, Fig. 3-style plots

Needs the ``[sweep]`` extra (Optuna and the training dependencies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.dist import is_first_process
from ..common.extras import require_extra
from ..errors import SqueezeNetError
from .space import Param, Space, load_space, parse_space, point_key

__all__ = ["Param", "Space", "load_space", "parse_space", "point_key", "resume_sweep", "start_sweep", "sweep_report"]


def start_sweep(space: Space | str | Path, data: str, study_dir: str | Path, *, data_root: str | None = None,
                mode: str = "grid", trials: int | None = None, trial_budget_s: float | None = None,
                max_params: int | None = None, prune: bool = False, storage: str | None = None, seed: int = 0,
                progress_bar: bool = False) -> int:
    """Create the study in ``study_dir`` (or continue it, when it holds the same study) and run trials as one
    worker; returns how many this worker finished. Everything is checked before anything is written."""
    require_extra("sweep", "sweeps")
    from ..data.training import resolve_data
    from .study import SWEEP_FILE, SweepSpec, open_study, read_spec, run_worker, trial_params, write_spec

    space = space if isinstance(space, Space) else load_space(space)
    if mode not in ("grid", "search"):
        raise SqueezeNetError(f"mode must be grid or search, got {mode!r}")
    if mode == "search" and not trials:
        raise SqueezeNetError("a search study needs trials= (how many trials to run)")
    if mode == "grid" and trials:
        raise SqueezeNetError("trials= is for search studies; a grid study runs every point once")
    if prune and mode == "search":
        raise SqueezeNetError("prune=True needs a single objective: a search study weighs top-1 against size (use a grid)")
    if trial_budget_s is not None and trial_budget_s <= 0:
        raise SqueezeNetError(f"trial_budget_s must be > 0, got {trial_budget_s}")
    source = resolve_data(data, data_root)
    spec = SweepSpec(space, data, data_root, mode, trials, trial_budget_s, max_params, prune, seed, len(source.classes))
    if mode == "grid":
        points = space.grid()
        if max_params is not None and not any(trial_params(spec, p) <= max_params for p in points):
            smallest = min(trial_params(spec, p) for p in points)
            raise SqueezeNetError(f"every one of the {len(points)} points exceeds max_params={max_params:,} "
                                  f"(the smallest has {smallest:,} parameters)")
    study_dir = Path(study_dir)
    if not is_first_process():  # torchrun: rank 0 creates the study and sends the other ranks its points
        return run_worker(study_dir, spec, storage, progress_bar)

    def same_study_here() -> bool:
        """Whether the folder already holds this study (``SqueezeNetError`` if it holds another one)."""
        if not (study_dir / SWEEP_FILE).is_file():
            return False
        earlier, _ = read_spec(study_dir)
        if earlier.to_dict() != spec.to_dict():
            raise SqueezeNetError(f"{study_dir} holds a different study; resume it with resume=True (--resume) or "
                                  "choose another folder")
        return True

    if not same_study_here() and study_dir.exists():
        others = [p for p in study_dir.iterdir()
                  if p.name not in ("workers", "study.journal", SWEEP_FILE) and not p.name.startswith(".")]
        # a worker started at the same moment may have written its sweep.json since the first look: look again
        if others and not same_study_here():
            raise SqueezeNetError(f"{study_dir} exists and is not a study folder; choose a new one")
    if storage is not None:
        from .study import _storage

        _storage(study_dir, storage)  # reachable, before anything is written
    study_dir.mkdir(parents=True, exist_ok=True)
    write_spec(study_dir, spec, storage)
    open_study(study_dir, spec, storage)
    return run_worker(study_dir, spec, storage, progress_bar)


def resume_sweep(study_dir: str | Path, *, storage: str | None = None, progress_bar: bool = False,
                 max_trials: int | None = None) -> int:
    """Continue the study in ``study_dir`` as one more worker (after a kill, or beside other workers):
    finished trials are kept, trials whose worker died are retried from their last checkpoint."""
    require_extra("sweep", "sweeps")
    from .study import read_spec, run_worker

    spec, stored = read_spec(Path(study_dir))
    return run_worker(Path(study_dir), spec, storage or stored, progress_bar, max_trials)


def sweep_report(study_dir: str | Path, *, storage: str | None = None) -> tuple[list[Any], list[str], list[Path]]:
    """The study's rows (one per trial), the table's lines, and the files written beside it (report.csv,
    report.json, plot_*.png)."""
    require_extra("sweep", "sweep reports")
    from ..train import load_recipe
    from .report import collect, table_lines, write_files
    from .study import open_study, read_spec

    study_dir = Path(study_dir)
    spec, stored = read_spec(study_dir)
    study = open_study(study_dir, spec, storage or stored)
    image_size = load_recipe(spec.space.recipe).data.image_size
    rows = collect(study, spec.space, spec.num_classes, image_size, study_dir)
    if not rows:
        raise SqueezeNetError(f"{study_dir}: no trial has started yet")
    return rows, table_lines(rows, spec.space), write_files(study_dir, rows, spec.space)
