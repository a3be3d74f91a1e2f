"""Studies over the design space on Optuna: storage, samplers, pruners and Pareto fronts are Optuna's.

A study lives in STUDY_DIR: ``sweep.json`` (the space, data, recipe, objective: what ``--resume`` and every
worker read), ``study.journal`` (Optuna's journal-file storage: several processes on one machine share it
through its file lock; ``--storage postgresql://...`` puts the study in a database instead, for workers on many
machines) and ``trials/POINT/``, one ordinary ``train`` run directory per point of the space.

Why our own worker loop over ``ask``/``tell`` rather than ``study.optimize``: a grid must be run exactly once
however many workers start at the same moment, and a trial killed mid-run must be retried where it stopped.
Grid points are enqueued as waiting trials (a worker takes one atomically from the storage); a point enqueued
twice by two workers starting together is noticed when taken (the lower trial number wins, the other is marked
a duplicate and never trains). A RUNNING trial whose trainer died on this machine (its run folder's lock is
free) is marked failed and its point enqueued again; the retry resumes the dead trial's checkpoint. On a
database, workers also send Optuna heartbeats, so a machine that vanished has its trials failed after the
grace period and retried elsewhere.

A trial on several GPUs or nodes: start the worker under ``torchrun``. Rank 0 is the worker (it talks to the
study, holds the locks and records results) and hands each trial's point to the other ranks over the default
process group, which it creates first; Lightning's DDP reuses that group, so all ranks train the trial together
and a pruning decision is broadcast so that every rank stops at the same epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from ..common.dist import is_first_process
from ..common.io import FolderLock, atomic_path
from ..errors import SqueezeNetError
from ..models import create_model
from ..train import load_recipe, train
from ..train.layout import RUN_FILE
from .space import Space, parse_space, point_key

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "study.journal"
STUDY_NAME = "squeezenet-sweep"
HEARTBEAT_S, GRACE_S = 30, 300  # database studies: a worker silent for 5 minutes is gone
# search: points above max_params are refused when sampled (counted on the meta device, milliseconds, never
# trained). On sweeps/cifar10-search.yaml at 500k, 8 of 116 sampled points fit, so 100 in a row happen by chance
MAX_REJECTED = 2000
STORAGE_ATTEMPTS = 3  # a database that fails this often (about a second apart) is unreachable


@dataclass(frozen=True)
class SweepSpec:
    """Everything a worker needs to run trials of a study (stored in ``sweep.json``)."""

    space: Space
    data: str
    data_root: str | None = None
    mode: str = "grid"  # "grid" or "search"
    trials: int | None = None  # search: how many finished trials the study wants
    trial_budget_s: float | None = None  # each trial's training time budget
    max_params: int | None = None  # constraint: trials above this many parameters are never trained
    prune: bool = False  # stop trials whose per-epoch accuracy is clearly worse (median pruner)
    seed: int = 0
    num_classes: int = 10  # the data's, found when the study is created (parameter counts depend on it)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space.to_dict(), "data": self.data, "data_root": self.data_root, "mode": self.mode,
                "trials": self.trials, "trial_budget_s": self.trial_budget_s, "max_params": self.max_params,
                "prune": self.prune, "seed": self.seed, "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> SweepSpec:
        return cls(parse_space(d["space"], where), d["data"], d.get("data_root"), d["mode"], d.get("trials"),
                   d.get("trial_budget_s"), d.get("max_params"), bool(d.get("prune")), int(d.get("seed", 0)),
                   int(d.get("num_classes", 10)))

    @property
    def multi_objective(self) -> bool:
        return self.mode == "search"


def trial_params(spec: SweepSpec, point: dict[str, Any]) -> int:
    """Parameters of the network a point builds, counted on the meta device (nothing allocated)."""
    import torch

    model_options, _ = spec.space.split(point)
    with torch.device("meta"):
        net = create_model(spec.space.model, **{**model_options, "num_classes": spec.num_classes})
    return int(net.config.num_parameters())


def _storage(study_dir: Path, url: str | None) -> Any:
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL_FILE)))
    _quiet_optuna()
    where = url.split("@")[-1]  # (no credentials in messages)
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                              engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:  # noqa: BLE001  (SQLAlchemy's and the drivers' errors have no common base)
            reason = " ".join(str(exc).split())
            if "import" in reason.lower():
                raise SqueezeNetError(f"--storage {where}: the database's Python driver is not installed (PostgreSQL: "
                                      "pip install 'psycopg[binary]'; MySQL: pip install pymysql)") from None
            if attempt + 1 == STORAGE_ATTEMPTS:
                raise SqueezeNetError(f"--storage {where}: cannot open the study database ({reason[:160]})") from None
            # workers starting together on a new database race to create Optuna's tables: the loser tries again
            time.sleep(1.0 + random.random())
    raise AssertionError("unreachable")


def _quiet_optuna() -> None:
    """Optuna's warnings about features we use on purpose (database heartbeats, experimental, and outside
    ``study.optimize``: our own loop calls ``fail_stale_trials``) would reach users as raw Python warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")
    warnings.filterwarnings("ignore", message=".*(heartbeat_interval|grace_period|fail_stale_trials).*experimental.*",
                            category=optuna.exceptions.ExperimentalWarning)


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    if spec.mode == "grid":
        return optuna.samplers.RandomSampler(seed=spec.seed)  # unused: every grid trial is enqueued
    return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=max(4, min(20, (spec.trials or 8) // 2)))


def study_name(spec: SweepSpec, storage: str | None) -> str:
    """The study's name in its storage. A journal file holds one study; a database holds many, so there the name
    is derived from the study's definition without its local paths (``data`` may be a folder that lives elsewhere
    on another machine): the same command joins the same study on any machine, a different space never does."""
    if storage is None:
        return STUDY_NAME
    definition = {k: v for k, v in spec.to_dict().items() if k not in ("data", "data_root")}
    return f"{STUDY_NAME}-{hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]}"


def open_study(study_dir: Path, spec: SweepSpec, storage: str | None) -> Any:
    """The Optuna study behind STUDY_DIR (created on first use; every worker loads the same one)."""
    import optuna

    _quiet_optuna()
    directions: list[Any] = ["maximize", "minimize"] if spec.multi_objective else ["maximize"]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if spec.prune else optuna.pruners.NopPruner()
    return optuna.create_study(storage=_storage(study_dir, storage), study_name=study_name(spec, storage),
                               directions=directions, sampler=_sampler(spec), pruner=pruner, load_if_exists=True)


def write_spec(study_dir: Path, spec: SweepSpec, storage: str | None) -> None:
    with atomic_path(study_dir / SWEEP_FILE) as tmp:
        tmp.write_text(json.dumps({**spec.to_dict(), "storage": storage}, indent=2))


def read_spec(study_dir: Path) -> tuple[SweepSpec, str | None]:
    from ..common.jsonsafe import parse_json

    path = study_dir / SWEEP_FILE
    if not path.is_file():
        raise SqueezeNetError(f"{study_dir}: not a study folder (no {SWEEP_FILE})")
    d = parse_json(path.read_text(), str(path))
    return SweepSpec.from_dict(d, str(path)), d.get("storage")


class ReportToTrial(L.Callback):
    """Per-epoch validation top-1 to the Optuna trial; raises ``TrialPruned`` when the pruner says so.

    Under torchrun only rank 0 holds the trial (``trial=None`` elsewhere); its decision is broadcast, so that all
    ranks leave the epoch loop together instead of the others waiting in DDP for a rank that stopped."""

    def __init__(self, trial: Any | None):
        self.trial = trial

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import optuna

        if trainer.sanity_checking or "val/top1" not in trainer.callback_metrics:
            return
        prune = False
        if self.trial is not None:
            self.trial.report(float(trainer.callback_metrics["val/top1"]), trainer.current_epoch)
            prune = self.trial.should_prune()
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch + 1}: below the median of earlier trials")


def _heartbeat(storage: Any, trial_id: int) -> Callable[[], None]:
    """Send Optuna heartbeats for a trial from a thread (database storages); returns the stopper."""
    if not hasattr(storage, "record_heartbeat"):
        return lambda: None
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            stop.wait(HEARTBEAT_S)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return stop.set


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def claim_worker(study_dir: Path) -> FolderLock:
    """This worker's lock (``workers/HOST-PID.lock``), held while it lives: how others tell it is alive."""
    return FolderLock(study_dir / "workers", "a sweep worker", f"{worker_name()}.lock").acquire()


def _worker_dead(study_dir: Path, name: str) -> bool:
    """Whether a worker of this machine is gone (its lock file is free); pid reuse cannot fool a lock."""
    path = study_dir / "workers" / f"{name}.lock"
    if name == worker_name() or not path.exists():
        return False
    try:
        FolderLock(path.parent, "a sweep worker", path.name).acquire().release()
    except SqueezeNetError:
        return False
    return True


def reap_dead_trials(study: Any, study_dir: Path) -> int:
    """Mark RUNNING trials whose worker died on this machine as failed (their points are enqueued again);
    database heartbeats do the same for other machines. Returns how many were failed here."""
    import optuna
    from optuna.trial import TrialState

    if hasattr(study._storage, "record_heartbeat"):
        optuna.storages.fail_stale_trials(study)
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name = t.user_attrs.get("worker")
        if not isinstance(name, str) or not name.startswith(f"{socket.gethostname()}-") or not _worker_dead(study_dir, name):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "failure", "its worker died; the point is retried")
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        logger.warning(f"trial {t.number} ({t.user_attrs.get('run_dir')}) lost its worker: marked failed, "
                       "its point will be retried")
        failed += 1
    return failed


def enqueue_missing_points(study: Any, points: list[dict[str, Any]]) -> int:
    """Enqueue the grid points no trial covers yet (finished, pruned, running or waiting); failed ones again."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    covered = {t.user_attrs.get("point") for t in study.get_trials(deepcopy=False, states=live)}
    missing = [p for p in points if point_key(p) not in covered]
    for point in missing:
        study.enqueue_trial(point, user_attrs={"point": point_key(point)})
    return len(missing)


def _duplicate_of(study: Any, trial: Any, key: str) -> int | None:
    """Another trial of the same point that is done or was taken first (then this one must not train)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        if t.user_attrs.get("point") == key and t.number != trial.number and \
                (t.state != TrialState.RUNNING or t.number < trial.number):
            return t.number
    return None


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _join_process_group() -> None:
    """Under torchrun: the default process group, created before the first trial so that rank 0 can send each
    point to the others (Lightning's DDP finds it initialised and trains on it)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")


def _from_first_process(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (itself when not under torchrun)."""
    if not _distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_trial(study_dir: Path, spec: SweepSpec, trial: Any | None, point: dict[str, Any], resume: bool,
              progress_bar: bool) -> Any:
    """Train one point into ``trials/POINT`` (resuming a dead attempt's checkpoint) and return its objective.
    ``trial`` is None on torchrun ranks other than the first (they only help train)."""
    model_options, overrides = spec.space.split(point)
    recipe_overrides = {**overrides, "model": spec.space.model, "model_options": model_options, "seed": spec.seed}
    if spec.trial_budget_s is not None:
        recipe_overrides["time_budget_s"] = spec.trial_budget_s
    recipe = load_recipe(spec.space.recipe, recipe_overrides)
    run_dir = study_dir / "trials" / point_key(point)
    params = trial_params(spec, point)
    if trial is not None:
        trial.set_user_attr("params_count", params)
    metrics = train(recipe, spec.data, run_dir, data_root=spec.data_root, resume=resume,
                    progress_bar=progress_bar,  # (Optuna prunes single-objective studies only)
                    callbacks=[] if spec.multi_objective else [ReportToTrial(trial)]).metrics
    if trial is not None:
        for key in ("top1", "top5", "best_top1", "epochs", "train_time_s", "fit_time_s", "stopped_by", "val_images"):
            trial.set_user_attr(key, metrics[key])
    return (metrics["top1"], params) if spec.multi_objective else metrics["top1"]


def run_worker(study_dir: Path, spec: SweepSpec, storage: str | None, progress_bar: bool = False,
               max_trials: int | None = None) -> int:
    """Take trials until the study has none left for this worker; returns how many this worker finished.
    Under torchrun, all ranks call this: rank 0 takes the trials, every rank trains them."""
    if _distributed():
        _join_process_group()
    if not is_first_process():
        return _help_train(study_dir, spec, progress_bar)
    study = open_study(study_dir, spec, storage)
    if storage is not None:
        logger.info(f"study {study.study_name} in {storage.split('@')[-1]}")  # (no credentials in logs)
    lock = claim_worker(study_dir)
    try:
        done = _take_trials(study, study_dir, spec, progress_bar, max_trials)
    finally:
        lock.release()  # (on an error the other ranks are not told: torchrun stops them when this one exits)
    _from_first_process(None)  # the other ranks' signal that the study has nothing left
    return done


def _help_train(study_dir: Path, spec: SweepSpec, progress_bar: bool) -> int:
    """A torchrun rank other than the first: train each point rank 0 sends until it sends None."""
    import optuna

    done = 0
    while (order := _from_first_process(None)) is not None:
        try:
            run_trial(study_dir, spec, None, order["point"], order["resume"], progress_bar)
        except optuna.TrialPruned:
            pass
        done += 1
    return done


def _next_trial(study: Any, study_dir: Path, spec: SweepSpec, points: list[dict[str, Any]]) -> tuple[Any, dict] | None:
    """The next trial this worker trains and its point, or None when the study has nothing left for it."""
    from optuna.trial import TrialState

    violations = 0
    while True:
        reap_dead_trials(study, study_dir)
        if spec.mode == "grid":
            enqueue_missing_points(study, points)
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                return None
        else:
            finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                        if "violates" not in t.user_attrs]  # points never trained do not count
            if len(finished) >= (spec.trials or 0):
                return None
        trial = study.ask()
        point = {p.name: p.suggest(trial) for p in spec.space.params}
        key = trial.user_attrs.get("point") or point_key(point)
        if spec.mode == "grid" and "point" not in trial.user_attrs:
            study.tell(trial, state=TrialState.FAIL)  # another worker took the last waiting point first
            continue
        duplicate = _duplicate_of(study, trial, key)
        if duplicate is not None:
            trial.set_user_attr("duplicate_of", duplicate)
            study.tell(trial, state=TrialState.FAIL)
            continue
        if spec.max_params is not None and trial_params(spec, point) > spec.max_params:
            trial.set_user_attr("violates", f"more than {spec.max_params:,} parameters")
            study.tell(trial, state=TrialState.PRUNED)
            violations += 1
            if violations >= MAX_REJECTED:
                raise SqueezeNetError(f"{MAX_REJECTED} sampled points in a row exceed max_params={spec.max_params:,}: "
                                      "narrow the space")
            continue
        for name, value in {"worker": worker_name(), "point": key, "run_dir": f"trials/{key}"}.items():
            trial.set_user_attr(name, value)
        return trial, point


def _take_trials(study: Any, study_dir: Path, spec: SweepSpec, progress_bar: bool, max_trials: int | None) -> int:
    import optuna
    from optuna.trial import TrialState

    points = spec.space.grid() if spec.mode == "grid" else []
    if spec.max_params is not None and points:
        points = [p for p in points if trial_params(spec, p) <= spec.max_params]
    done = 0
    while max_trials is None or done < max_trials:
        chosen = _next_trial(study, study_dir, spec, points)
        if chosen is None:
            break
        trial, point = chosen
        resume = (study_dir / "trials" / point_key(point) / RUN_FILE).exists()
        _from_first_process({"point": point, "resume": resume})  # torchrun: the other ranks train it too
        stop_heartbeat = _heartbeat(study._storage, trial._trial_id)
        logger.info(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in point.items())}")
        try:
            value = run_trial(study_dir, spec, trial, point, resume, progress_bar)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            logger.info(f"trial {trial.number} pruned ({exc})")
            done += 1
            continue
        except Exception as exc:  # (SIGTERM included: its checkpoint is saved and the point is retried from it)
            trial.set_user_attr("failure", " ".join(str(exc).split())[:200] or type(exc).__name__)
            study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            stop_heartbeat()
        if isinstance(value, float) and math.isnan(value):
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
            done += 1
    return done
