"""``train()``: one call from a recipe and a dataset to a run directory.

RUN_DIR holds ``run.json`` (what was asked), ``checkpoints/last.ckpt`` (every epoch, and where SIGTERM or Ctrl-C
stopped it; written through a temporary file in the same folder, fsync, rename: see ``checkpoint_io``; the best
epoch beside it), ``logs/`` (CSV and TensorBoard, kept whole across ``--resume``), ``best.safetensors``,
``metrics.json`` and ``curves.png``. The folder is claimed by one process at a time (``.train.lock``).
Several GPUs or nodes: launch the same command with ``torchrun``; the world size comes from its
environment and Lightning's DDP takes over (no process management of ours).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, DistributedSampler

from ..common.dist import is_first_process
from ..common.io import FolderLock, atomic_path
from ..data import ImageDataset, collate_images
from ..data.detection import collate_detections
from ..data.segmentation import collate_masks
from ..data.training import DataSource, make_dataset, resolve_data
from ..errors import Interrupted, SqueezeNetError
from ..models import Network, Preprocessing, create_model, default_classes, model_task
from .callbacks import BestWeights, EpochLine, MidEpochPosition, RNGState
from .checkpoint_io import AtomicCheckpointIO, SaveOnSignal
from .detection import DetectorModule, detection_setup
from .layout import LAST_CKPT, RUN_FILE, RUN_LOCK
from .logs import ResumableCSVLogger
from .module import ClassifierModule, RecipeModule
from .plots import plot_curves
from .recipe import Recipe
from .segmentation import SegmenterModule, segmentation_setup
from .weight_init import init_head_bias, init_weights

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What ``train()`` returns: the final metrics (as in metrics.json) and the trained model (this process's copy)."""

    metrics: dict[str, Any]
    model: torch.nn.Module


class EpochSampler(DistributedSampler):
    """DistributedSampler yielding ``(epoch, index)`` so the dataset seeds augmentation per epoch,
    even inside loader workers that hold their own copy of the dataset. A run resumed in the middle of an
    epoch (``position``) leaves out the batches it already trained."""

    def __init__(self, *args: Any, position: MidEpochPosition | None = None, batch_size: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.position, self.batch_size = position, batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip = self.position.batches_to_skip(self.epoch) * self.batch_size if self.position else 0
        for n, i in enumerate(super().__iter__()):
            if n >= skip:
                yield (self.epoch, i)


class _EpochIndexed(torch.utils.data.Dataset):
    def __init__(self, base: Any):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        self.base.set_epoch(epoch)
        return self.base[i]


class DataModule(L.LightningDataModule):
    """Builds loaders once the strategy knows this process's rank and the world size."""

    def __init__(self, train: Any, val: Any, batch_size: int, workers: int, seed: int,
                 position: MidEpochPosition | None = None, collate: Any = collate_images):
        super().__init__()
        self.train_set, self.val_set, self.collate = train, val, collate
        self.batch_size, self.workers, self.seed, self.position = batch_size, workers, seed, position

    def _per_device(self) -> int:
        world = self.trainer.world_size if self.trainer else 1
        if self.batch_size % world:
            raise SqueezeNetError(f"global batch size {self.batch_size} is not divisible by {world} processes")
        return self.batch_size // world

    def _loader(self, dataset, sampler, drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self._per_device(), sampler=sampler, num_workers=self.workers,
                          collate_fn=self.collate, drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                          persistent_workers=False)

    def _world(self) -> tuple[int, int]:
        assert self.trainer is not None  # Lightning asks for loaders only once attached to a trainer
        return self.trainer.world_size, self.trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        sampler = EpochSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True,
                               position=self.position, batch_size=self._per_device())
        return self._loader(_EpochIndexed(self.train_set), sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        world, rank = self._world()
        sampler: DistributedSampler = DistributedSampler(self.val_set, num_replicas=world, rank=rank, shuffle=False,
                                                         drop_last=False)
        return self._loader(self.val_set, sampler, drop_last=False)


@dataclass
class LaunchEnv:
    """What torchrun (or nothing) tells this process."""

    world_size: int
    local_world_size: int
    num_nodes: int

    @classmethod
    def detect(cls) -> LaunchEnv:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        return cls(world, local, max(1, world // max(1, local)))


def _limit(split, n: int | None, seed: int):
    """A fixed random subset of ``n`` samples (folders are sorted by class, so a prefix would be one class)."""
    if n is None or n >= len(split.labels):
        return split
    from dataclasses import replace

    keep = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    return replace(split, labels=[split.labels[i] for i in keep],
                   files=[split.files[i] for i in keep] if split.files else None,
                   arrays=split.arrays[keep] if split.arrays is not None else None)


def uses_memory(recipe: Recipe) -> bool:
    return recipe.data.in_memory if recipe.data.in_memory is not None else recipe.data.image_size <= 64


def build_datasets(recipe: Recipe, source: DataSource) -> tuple[ImageDataset, ImageDataset, list[str]]:
    d = recipe.data
    in_memory = uses_memory(recipe)
    common: dict[str, Any] = dict(size=d.image_size, resize=d.resize, augment=d.augment, in_memory=in_memory,
                                  seed=recipe.seed, resize_mode=d.resize_mode)
    train, skipped_train = make_dataset(_limit(source.train, d.limit_train, recipe.seed), train=True, **common)
    val, skipped_val = make_dataset(_limit(source.val, d.limit_val, recipe.seed), train=False, **common)
    return train, val, skipped_train + skipped_val


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    from ..common.extras import DISTRIBUTION

    return {p: version(p) for p in (DISTRIBUTION, "torch", "torchvision", "lightning")}


def _quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not concern our users."""
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.trainer.connectors.signal_connector",
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*litlogger.*", ".*LeafSpec.*", ".*on_after_batch_transfer.*", ".*log_every_n_steps.*",
                    ".*does not have many workers.*", ".*`max_epochs` was not set.*", ".*treespec.*",
                    ".*Checkpoint directory .* exists and is not empty.*",  # a resumed run's own checkpoints
                    ".*resuming from a checkpoint that ended before the epoch ended.*"):  # MidEpochPosition resumes it
        warnings.filterwarnings("ignore", message=pattern)


def train(
    recipe: Recipe,
    data: str,
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    compile: bool = False,
    progress_bar: bool | None = None,
    model: Network | None = None,
    callbacks: list[L.Callback] | None = None,
    teacher: torch.nn.Module | None = None,
) -> TrainResult:
    """Train ``recipe`` on ``data`` into ``run_dir``; returns the final metrics (also in metrics.json) and the model.

    ``model``: fine-tune this model (its classes must be the data's) instead of building the recipe's;
    ``callbacks``: extra Lightning callbacks (compression schedules use this); ``progress_bar``: a live bar
    (default: when stderr is a terminal), else one log line per epoch (``logging``, logger ``squeezenet``).
    ``teacher``: distil from this model's outputs (``recipe.distill``); then ``data`` may also be a folder of
    unlabelled images, and val/top1 on it is the agreement with the teacher.
    """
    run_dir = Path(run_dir)
    first_process = is_first_process()  # under torchrun only rank 0 owns the run directory
    created = not run_dir.exists()
    lock = FolderLock(run_dir, "another training run", RUN_LOCK).acquire() if first_process else None
    try:
        return _train(recipe, data, run_dir, data_root=data_root, resume=resume, accelerator=accelerator,
                      devices=devices, compile=compile, progress_bar=progress_bar, model=model, callbacks=callbacks,
                      teacher=teacher)
    except SqueezeNetError:
        if lock is not None and created and [p.name for p in run_dir.iterdir()] == [RUN_LOCK]:
            lock.release()  # refused before anything was written (bad data, labels, options): leave no folder behind
            lock = None
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _start_over(run_dir: Path, first_process: bool) -> None:
    """``--resume`` of a run killed before its first checkpoint: start it over (its run.json says how); a
    folder that is not a run is still an error. Only the first process removes the partial logs."""
    if not (run_dir / RUN_FILE).is_file():
        raise SqueezeNetError(f"{run_dir}: nothing to resume (no {LAST_CKPT} and no {RUN_FILE})")
    if first_process:
        logger.warning(f"{run_dir} has no checkpoint yet (it stopped before its first epoch ended): starting it over")
        for partial in ("logs", LAST_CKPT.parent.name):
            shutil.rmtree(run_dir / partial, ignore_errors=True)


def _read_checkpoint(ckpt: Path) -> dict[str, Any]:
    """``ckpt`` read safely (``weights_only``: a pickle payload never runs); a file that cannot be read is one line
    naming it and saying which earlier checkpoint, if any, can take its place."""
    try:
        saved = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a damaged file
        problem = " ".join(str(exc).split())[:80] or type(exc).__name__
        if "weights only load failed" in problem.lower():
            problem = "it holds Python objects besides tensors, which are never loaded"
        earlier = sorted(p for p in ckpt.parent.glob("epoch*.ckpt") if p != ckpt)
        hint = (f"the best epoch's checkpoint {earlier[-1].name} is beside it: copy it over {ckpt.name} to resume "
                "from that epoch" if earlier else "no earlier checkpoint is kept: start a new run")
        raise SqueezeNetError(f"{ckpt}: not a readable checkpoint ({problem}); {hint}") from None
    if not isinstance(saved, dict) or "state_dict" not in saved:
        raise SqueezeNetError(f"{ckpt}: not a Lightning checkpoint (no state_dict)")
    return saved


def _task(recipe: Recipe, model: Network | None) -> str:
    """``classify``, ``detect`` or ``segment``: the model's (or the recipe's model's, built on the meta device) task."""
    return model.meta.task if model is not None else model_task(recipe.model, **recipe.model_options)


def _classification(recipe: Recipe, data: str, data_root: str | Path | None, model: Network | None,
                    teacher: torch.nn.Module | None) -> tuple[Network, RecipeModule, Any, Any, str, list[str]]:
    """The classifier, its LightningModule, both datasets, the data's name and the files skipped while listing."""
    source = resolve_data(data, data_root, unlabelled=teacher is not None)
    train_set, val_set, skipped = build_datasets(recipe, source)
    if len(train_set) < recipe.batch_size:
        raise SqueezeNetError(f"{len(train_set)} training images are fewer than one batch of {recipe.batch_size}")

    if model is None:
        built = create_model(recipe.model, **{**recipe.model_options, "num_classes": len(source.classes)})
        if not isinstance(built, Network):
            raise SqueezeNetError(f"recipe {recipe.name}: {recipe.model} is not a classifier the trainer can train")
        model = built
        init_weights(model, recipe.init)
        if recipe.head_bias:
            init_head_bias(model, recipe.head_bias)
        model.meta = model.meta.replace(
            preprocessing=Preprocessing(recipe.name, resize=recipe.data.resize, crop=recipe.data.image_size,
                                        mean=recipe.data.mean, std=recipe.data.std),
            classes=tuple(source.classes), source=f"squeezenet train {recipe.name} on {source.name}")
    elif source.labelled:
        names = model.meta.classes
        if len(names) != len(source.classes) or (names != tuple(source.classes) and names != default_classes(len(names))):
            raise SqueezeNetError(f"{data}: its {len(source.classes)} classes are not the model's "
                                  f"({len(names)} classes: {', '.join(names[:5])}...)")
    model.train()
    num_classes = len(source.classes) if source.labelled else len(model.meta.classes)
    module = ClassifierModule(model, recipe, num_classes, teacher=teacher,
                              batch_augment=recipe.data.augment == "cifar" and uses_memory(recipe))
    return model, module, train_set, val_set, source.name, skipped


def _train(recipe: Recipe, data: str, run_dir: Path, *, data_root: str | Path | None, resume: bool, accelerator: str,
           devices: int | str, compile: bool, progress_bar: bool | None, model: Network | None,
           callbacks: list[L.Callback] | None, teacher: torch.nn.Module | None) -> TrainResult:
    ckpt = run_dir / LAST_CKPT
    first_process = is_first_process()
    if first_process:  # temporary files of a writer that was killed (we hold the folder's lock: none is live)
        for stale in run_dir.glob(f"{LAST_CKPT.parent.name}/.*.tmp"):
            stale.unlink()
    if resume and not ckpt.is_file():
        _start_over(run_dir, first_process)
        resume = False
    elif first_process and not resume and (run_dir / RUN_FILE).exists():
        raise SqueezeNetError(f"{run_dir} already holds a run; pass resume=True to continue it or choose another run directory")
    saved = _read_checkpoint(ckpt) if resume else None
    if saved is not None and recipe.time_budget_s and float(saved.get("train_seconds", 0.0)) >= recipe.time_budget_s:
        raise SqueezeNetError(f"{run_dir}: its time budget of {recipe.time_budget_s:g} s is spent "
                              f"({float(saved['train_seconds']):.0f} s trained), nothing is left to train; give it more "
                              "with time_budget_s=SECONDS or none with time_budget_s=0")

    _quiet_lightning()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    env = LaunchEnv.detect()
    if teacher is not None and model is None:
        raise SqueezeNetError("distillation needs the student model too (model=)")
    task = _task(recipe, model)
    collate: Any = {"detect": collate_detections, "segment": collate_masks}.get(task, collate_images)
    if task in ("detect", "segment"):
        if teacher is not None:
            raise SqueezeNetError("distillation is for classifiers; a detector trains on boxes, a segmenter on masks")
        setup = (detection_setup if task == "detect" else segmentation_setup)(recipe, data, model)
        model, recipe, train_set, val_set = setup.model, setup.recipe, setup.train, setup.val
        data_name, skipped = setup.name, list[str]()
        if len(train_set) < recipe.batch_size:
            raise SqueezeNetError(f"{len(train_set)} training images are fewer than one batch of {recipe.batch_size}")
        model.train()
        module: RecipeModule = (DetectorModule if task == "detect" else SegmenterModule)(model, recipe)
    else:
        model, module, train_set, val_set, data_name, skipped = _classification(recipe, data, data_root, model, teacher)
    if compile:
        module.model = torch.compile(module.model)  # type: ignore[assignment]

    if first_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            with atomic_path(run_dir / RUN_FILE) as tmp:
                tmp.write_text(json.dumps({"recipe": recipe.to_dict(), "data": data, "data_root": str(data_root or ""),
                                           "versions": _versions()}, indent=2))

    resumed_step = int(saved["global_step"]) if saved is not None else None
    gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    best = BestWeights(run_dir / "best.safetensors", source=f"squeezenet train {recipe.name} on {data_name}",
                       monitor=module.monitor)
    show_bar = progress_bar if progress_bar is not None else os.isatty(2)
    on_signal, position = SaveOnSignal(ckpt), MidEpochPosition()
    all_callbacks: list[L.Callback] = [
        # the best epoch, then the latest one every epoch (save_last=True would only follow the best, skipping
        # epochs that do not improve val/top1); in this order last.ckpt holds the best-checkpoint state too
        ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
                        save_top_k=1, monitor=module.monitor, mode="max"),
        ModelCheckpoint(dirpath=run_dir / LAST_CKPT.parent, filename=LAST_CKPT.stem, save_top_k=1, monitor=None,
                        enable_version_counter=False),
        RNGState(), position, best, on_signal, *(callbacks or []),
    ]
    if not show_bar:
        all_callbacks.append(EpochLine())
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=env.local_world_size if env.world_size > 1 else devices,
        num_nodes=env.num_nodes,
        strategy="ddp" if env.world_size > 1 else "auto",
        precision="bf16-mixed" if gpu else "32-true",
        max_epochs=recipe.epochs,
        gradient_clip_val=recipe.grad_clip_norm,
        gradient_clip_algorithm="norm",
        logger=[ResumableCSVLogger(run_dir, name="logs", version="csv", keep_before_step=resumed_step),
                # purge_step: TensorBoard drops the interrupted epoch's steps that the resumed run logs again
                TensorBoardLogger(run_dir, name="logs", version="tb", purge_step=resumed_step)],
        callbacks=all_callbacks,
        default_root_dir=run_dir,
        enable_progress_bar=show_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        log_every_n_steps=10,
        plugins=[AtomicCheckpointIO()],
    )
    datamodule = DataModule(train_set, val_set, recipe.batch_size, recipe.data.workers, recipe.seed, position,
                            collate=collate)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if resume else None)
    except SystemExit:  # Lightning's answer to SIGTERM (an exception) and to Ctrl-C (sys.exit(1))
        if on_signal.signum is None:
            raise
        name = signal.Signals(on_signal.signum).name
        raise Interrupted(f"{name} at {on_signal.where}: state saved in {ckpt}; `squeezenet train --resume "
                          f"{run_dir}` continues", on_signal.signum) from None
    elapsed = time.perf_counter() - start
    if not trainer.interrupted and (module.monitor not in trainer.callback_metrics or trainer.current_epoch < recipe.epochs):
        # stopped by the time budget mid-epoch, or resumed from the last epoch's checkpoint with nothing left
        # to train: measure the final weights
        trainer.validate(module, datamodule=datamodule, verbose=False)

    m = trainer.callback_metrics
    metrics = {
        "model": recipe.model, "recipe": recipe.name, "data": data_name, "epochs": trainer.current_epoch,
        **{key: float(m.get(name, float("nan"))) for key, name in module.results.items()},
        f"best_{next(iter(module.results))}": best.best,
        "best_epoch": best.best_epoch + 1,
        "params": sum(p.numel() for p in model.parameters()), "train_images": len(train_set),
        "val_images": len(val_set), "skipped_images": len(skipped) + module.skipped_images, "fit_time_s": round(elapsed, 1),
        "train_time_s": round(module.train_seconds, 1),
        "images_per_s": round(trainer.global_step * recipe.batch_size / max(1e-9, module.train_seconds), 1),
        "world_size": trainer.world_size, "stopped_by": "time budget" if module.budget_reached else "epochs",
        "device": torch.cuda.get_device_name() if gpu else f"cpu ({platform.processor() or platform.machine()}, "
                                                            f"{torch.get_num_threads()} threads)",
    }
    if trainer.is_global_zero:
        with atomic_path(run_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2))
        csv_path = run_dir / "logs" / "csv" / "metrics.csv"
        if csv_path.is_file():
            plot_curves(csv_path, run_dir / "curves.png", f"{recipe.model} / {recipe.name} on {data_name}")
    return TrainResult(metrics, model)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """What ``run.json`` says about a run (for --resume)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        if (Path(run_dir) / RUN_LOCK).is_file():  # a trainer that has not written run.json yet: say that, not "no run"
            FolderLock(run_dir, "another training run", RUN_LOCK).acquire().release()
        raise SqueezeNetError(f"{run_dir}: not a run directory (no {RUN_FILE})")
    return json.loads(path.read_text())
