"""Deep Compression end to end: prune -> fine-tune -> fold batch-norm -> share weights -> fine-tune centroids.

The result is a plain model whose layers hold at most ``2**bits`` distinct non-zero values each;
saving it as ``.sqz`` adds the entropy coding (see :mod:`squeezenet.weights.sqz`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from ..common.extras import require_extra
from ..data.boxes import resolve_boxes
from ..data.images import expand_image_paths
from ..data.masks import resolve_masks
from ..data.training import resolve_data
from ..errors import SqueezeNetError
from ..models import Network, prunable_layers
from .fold import fold_batch_norm
from .kmeans import Init
from .prune import apply_counts, current_mask, keep_counts, parse_targets, prune, remove_masks, set_mask
from .quantize import LayerQuantization, parse_bits, quantize, remove_sharing, share_values
from .side_grid import snap_side_values
from .workdir import CompressionWorkDir, parametrized_layers

if TYPE_CHECKING:
    import lightning as L

logger = logging.getLogger(__name__)


@dataclass
class CompressionSpec:
    """What to do. Pruning targets are a density or a quality spec (see :func:`parse_targets`), bits a
    bits spec (see :func:`parse_bits`). Fine-tuning needs training data; without it this is
    post-training compression (k-means initialised optimally, which loses the least with no repair)."""

    density: str | float | None = None
    quality: str | float | None = None
    bits: str | int = 6
    schedule: Literal["gradual", "oneshot"] = "gradual"  # with fine-tuning: prune along the way or all at once
    finetune_epochs: int = 0  # after (gradual: during) pruning
    centroid_epochs: int | None = None  # after quantization; default 1 when fine-tuning, else 0
    lr: float | None = None  # peak rate while pruning: SGD 0.02 for classifiers, a detector's recipe's AdamW / 10
    budget_s: float | None = None  # wall-clock limit per fine-tuning phase
    init: Init | None = None  # k-means initialisation; default linear with fine-tuning, optimal without
    recipe: str | None = None  # base recipe for fine-tuning (augmentation, batch size); default by input size
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted recipe keys for both fine-tuning phases
    centroid_lr: float = 1e-4  # Adam: a centroid's gradient sums thousands of members', so SGD steps explode
    max_bytes: int | None = None  # the written .sqz fits this (per-layer choices: see compress.byte_budget)
    distill: float = 0.0  # with data=: the uncompressed model's share of the fine-tuning loss (KL on its outputs)

    def __post_init__(self) -> None:
        if self.density is not None and self.quality is not None:
            raise SqueezeNetError("give a pruning density or a quality, not both")
        if self.finetune_epochs < 0 or (self.centroid_epochs or 0) < 0 or (self.lr or 1) <= 0 or self.centroid_lr <= 0:
            raise SqueezeNetError("fine-tuning epochs must be >= 0 and the learning rate > 0")
        if self.max_bytes is not None and self.max_bytes < 1024:
            raise SqueezeNetError(f"max_bytes={self.max_bytes}: a .sqz file needs more than 1 KB for its header alone")
        if not 0 <= self.distill <= 1:
            raise SqueezeNetError(f"distill={self.distill:g}: the teacher's share of the loss is between 0 and 1")
        if self.schedule not in ("gradual", "oneshot"):
            raise SqueezeNetError(f"schedule must be gradual or oneshot, got {self.schedule!r}")


@dataclass
class CompressionLog:
    """What happened, phase by phase (for the CLI and the demo)."""

    densities: dict[str, float] = field(default_factory=dict)
    quantization: list[LayerQuantization] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    method: str = ""  # how the weights were shared, in words
    budget: list[dict] = field(default_factory=list)  # per-layer choices of a byte budget, and why


def compress_model(model: Network, spec: CompressionSpec, *, data: str | None = None,
                   data_root: str | Path | None = None, work_dir: str | Path | None = None,
                   progress_bar: bool | None = None, resume: bool = False,
                   calibration: str | Path | None = None) -> tuple[Network, CompressionLog]:
    """Compress ``model`` (from :func:`squeezenet.weights.load_weights`); returns the compressed model, whose
    ``meta`` is the input's (but for ``batch_norm``, which is folded away). Progress is logged
    (``logging.getLogger("squeezenet")``).

    ``data`` (a training dataset as ``squeezenet train`` takes it) enables fine-tuning; each phase
    writes a run directory under ``work_dir`` (logs, curves, epoch checkpoints) and its finished weights.
    ``resume``: continue a killed compression from ``work_dir`` (finished phases are skipped, an
    unfinished one continues from its last epoch checkpoint).

    ``calibration`` (a folder of unlabelled images): weights are assigned by output-error reconstruction
    (:mod:`.reconstruct`) instead of nearest-centroid rounding. ``spec.max_bytes``: per-layer grids are chosen
    to fit (:mod:`.byte_budget`); without calibration images only the side data's precision is spent.
    """
    record = CompressionLog()
    post_training = calibration is not None or spec.max_bytes is not None
    if post_training and data is not None:
        raise SqueezeNetError("calibration= and max_bytes= are post-training (with calibration images, centroid "
                              "epochs distil on them); fine-tuning with data= does not combine with them yet")
    if spec.distill and data is None:
        raise SqueezeNetError("distill= mixes the input model's outputs into fine-tuning on data=; with calibration "
                              "images alone, centroid epochs distil from it anyway")
    dense = model.meta.task in ("detect", "segment")  # trained on boxes or masks, never distilled
    tune = data is not None and spec.finetune_epochs > 0
    centroid_epochs = spec.centroid_epochs if spec.centroid_epochs is not None else (1 if tune else 0)
    distil_on_calibration = calibration is not None and centroid_epochs > 0
    if dense and (spec.distill or distil_on_calibration):
        raise SqueezeNetError("distillation is for classifiers; a detector or segmenter fine-tunes on its boxes or "
                              "masks (data=), and with calibration images alone its weights are reconstructed without "
                              "centroid epochs")
    if spec.finetune_epochs and data is None:
        raise SqueezeNetError("fine-tuning while pruning needs training data (data=)")
    if centroid_epochs and data is None and calibration is None:
        raise SqueezeNetError("centroid fine-tuning needs training data (data=) or calibration images to distil on "
                              "(calibration=)")
    if (tune or centroid_epochs) and work_dir is None:
        raise SqueezeNetError("fine-tuning needs a work directory for its runs")
    if data is not None and not (tune or centroid_epochs):
        logger.warning("the training data is only used for fine-tuning; without fine-tuning or centroid epochs "
                       "this is post-training compression")
    if tune or centroid_epochs:  # what fine-tuning will refuse, refused now rather than after pruning
        require_extra("train", "fine-tuning during compression")
        from .finetune import finetune, finetune_recipe
        finetune_recipe(model, epochs=max(1, spec.finetune_epochs), lr=spec.lr, base=spec.recipe, overrides=spec.overrides,
                        unlabelled=distil_on_calibration)
        if data is not None and dense:  # a bad label is one line now, not after pruning
            (resolve_boxes if model.meta.task == "detect" else resolve_masks)(data)
        elif data is not None and data != "cifar10":  # (cifar10 may still be downloaded)
            resolve_data(data, data_root, download=False)
    work = CompressionWorkDir(work_dir) if work_dir is not None and (tune or centroid_epochs) else None
    if work is not None:
        work.claim(model, spec, data if data is not None else f"calibration {calibration}", resume=resume)
    elif resume:
        raise SqueezeNetError("only a compression with fine-tuning (data=, or centroid epochs on calibration images) "
                              "has anything to resume")
    init: Init = spec.init or ("linear" if centroid_epochs else "optimal")

    quantized = work.load_result("centroids") if work is not None else None
    if quantized is not None:
        logger.info(f"resuming: {work.result('centroids')} holds the finished compression")  # type: ignore[union-attr]
        record.phases = [m for m in (work.metrics("prune"), work.metrics("centroids")) if m]  # type: ignore[union-attr]
        return _finish(quantized, _shared_bits(quantized) if post_training else parse_bits(spec.bits, quantized), record)

    # the uncompressed model, whose outputs the compressed one learns to match (copied before any change to it)
    teacher = copy.deepcopy(model).eval() if distil_on_calibration or (spec.distill > 0 and (tune or centroid_epochs)) \
        else None
    target_spec = spec.density if spec.density is not None else spec.quality
    pruned = work.load_result("prune") if work is not None else None
    if pruned is not None:
        logger.info(f"resuming: pruned weights from {work.result('prune')}")  # type: ignore[union-attr]
        model.load_state_dict(pruned.state_dict())
        record.phases.append({"phase": "prune", **(work.metrics("prune") or {})})  # type: ignore[union-attr]
    elif target_spec is not None:
        targets = parse_targets(target_spec, "density" if spec.density is not None else "quality", model)
        final = keep_counts(model, targets)
        if tune:
            _prune_with_finetuning(model, spec, final, targets, data, data_root, work, progress_bar, record,  # type: ignore[arg-type]
                                   teacher)
        else:
            prune(model, targets)
        remove_masks(model)
        if work is not None:
            work.save_result("prune", model)

    plain = fold_batch_norm(model)
    bits = parse_bits(spec.bits, plain)
    if post_training:
        _post_training(plain, spec, bits, calibration, record)
        if distil_on_calibration:
            _distil_on_calibration(plain, teacher, spec, centroid_epochs, calibration, work, progress_bar, record)  # type: ignore[arg-type]
            work.save_result("centroids", plain)  # type: ignore[union-attr]
        return _finish(plain, _shared_bits(plain), record)
    logger.info(f"weight sharing: k-means ({init} initialisation)")
    record.quantization = quantize(plain, bits, init=init)
    if centroid_epochs:
        recipe = finetune_recipe(plain, epochs=centroid_epochs, lr=spec.centroid_lr, base=spec.recipe, optimizer="adamw",
                                 weight_decay=0.0, time_budget_s=spec.budget_s, distill=spec.distill,
                                 overrides=spec.overrides)
        checkpoint = work.checkpoint("centroids")  # type: ignore[union-attr]
        logger.info(f"{'resuming' if checkpoint else 'fine-tuning'} the centroids for {centroid_epochs} epoch(s)")
        metrics = finetune(plain, data, work.run_dir("centroids"), recipe, data_root=data_root,  # type: ignore[arg-type,union-attr]
                           progress_bar=progress_bar, resume=checkpoint is not None, teacher=teacher)
        record.phases.append({"phase": "centroids", **metrics})
    remove_sharing(plain)
    if work is not None:
        work.save_result("centroids", plain)
    return _finish(plain, bits, record)


def _prune_with_finetuning(model: Network, spec: CompressionSpec, final: dict[str, int], targets: dict, data: str,
                           data_root: str | Path | None, work: CompressionWorkDir, progress_bar: bool | None,
                           record: CompressionLog, teacher: nn.Module | None) -> None:
    from .finetune import GradualPruning, finetune, finetune_recipe

    recipe = finetune_recipe(model, epochs=spec.finetune_epochs, lr=spec.lr, base=spec.recipe,
                             time_budget_s=spec.budget_s, distill=spec.distill, overrides=spec.overrides)
    callbacks: list[L.Callback] = []
    checkpoint = work.checkpoint("prune")
    if checkpoint is not None:  # rebuild the masks the checkpoint holds, so its state loads into them
        layers = prunable_layers(model)
        for path in parametrized_layers(checkpoint):
            if path not in layers:
                raise SqueezeNetError(f"{checkpoint}: holds a mask for {path}, which is no prunable layer of this model")
            set_mask(layers[path], torch.ones_like(layers[path].weight, dtype=torch.bool))
    if spec.schedule == "gradual":
        # every mask exists (all ones) before training starts: installing one later swaps a module's class and
        # weight under DDP, which then waits for gradients that never come
        layers = prunable_layers(model)
        for path in final:
            if current_mask(layers[path]) is None:
                set_mask(layers[path], torch.ones_like(layers[path].weight, dtype=torch.bool))
        callbacks.append(GradualPruning({p: m.weight.numel() for p, m in prunable_layers(model).items()}, final))
    elif checkpoint is None:
        prune(model, targets)
    logger.info(f"{'resuming' if checkpoint else 'starting'} pruning ({spec.schedule}) with {spec.finetune_epochs} epochs "
        "of fine-tuning")
    metrics = finetune(model, data, work.run_dir("prune"), recipe, data_root=data_root, callbacks=callbacks,
                       progress_bar=progress_bar, resume=checkpoint is not None, teacher=teacher)
    apply_counts(model, final)  # a budget, or a resume with nothing left to train, may end before the schedule does
    record.phases.append({"phase": "prune", **metrics})


def _post_training(plain: Network, spec: CompressionSpec, bits: dict[str, int], calibration: str | Path | None,
                   record: CompressionLog) -> None:
    from ..weights import sqz_size, sqz_tensor_bytes
    from .byte_budget import fit_with_data, fit_without_data, kmeans_reconstruction
    from .calibration import calibration_images
    from .grid_plan import step_bits

    images = calibration_images(plain.meta, calibration) if calibration is not None else None
    progress = logger.info
    if spec.max_bytes is None:
        logger.info(f"weight sharing: k-means, weights assigned by reconstruction on {len(images)} images")  # type: ignore[arg-type]
        kmeans_reconstruction(plain, images, bits, progress=lambda path: None)  # type: ignore[arg-type]
        record.method = "k-means codebooks, reconstruction"
    elif images is None:
        record.method, _ = fit_without_data(plain, spec.max_bytes, sqz_size)
    else:
        plan, _ = fit_with_data(plain, images, spec.max_bytes, sqz_tensor_bytes, progress=progress)
        record.method = "per-layer uniform grids (byte budget), reconstruction"
        layers = prunable_layers(plain)
        record.budget = [{"layer": lp.name, "path": lp.path, "step": lp.choice.step,
                          "levels_bits": step_bits(layers[lp.path].weight, lp.choice.step),
                          "prune": lp.choice.prune, "bytes": lp.choice.bytes, "output_error": lp.choice.error,
                          "sensitivity": lp.sensitivity, "kl": lp.choice.kl} for lp in plan.layers]


def _distil_on_calibration(plain: Network, teacher: nn.Module, spec: CompressionSpec, epochs: int,
                           calibration: str | Path, work: CompressionWorkDir, progress_bar: bool | None,
                           record: CompressionLog) -> None:
    """Train the shared values (codebooks) and biases chosen by post-training compression to match the
    uncompressed model's outputs on the calibration images (no labels); assignments and masks stay. Then the
    side data goes back on a grid: the finest that fits ``spec.max_bytes`` (codebooks trained off their grid
    cost bytes), or the default one."""
    from ..weights import sqz_size
    from .byte_budget import fit_side_data
    from .finetune import UNLABELLED_BATCH, finetune, finetune_recipe

    share_values(plain)
    images = len(expand_image_paths([calibration]))
    recipe = finetune_recipe(plain, epochs=epochs, lr=spec.centroid_lr, base=spec.recipe, optimizer="adamw",
                             weight_decay=0.0, time_budget_s=spec.budget_s, unlabelled=True,
                             overrides={"batch_size": min(UNLABELLED_BATCH, images), **spec.overrides})
    checkpoint = work.checkpoint("centroids")
    logger.info(f"{'resuming' if checkpoint else 'distilling'}: codebooks and biases for {epochs} epoch(s) on the "
                "uncompressed model's outputs")
    metrics = finetune(plain, str(calibration), work.run_dir("centroids"), recipe, progress_bar=progress_bar,
                       resume=checkpoint is not None, teacher=teacher)
    record.phases.append({"phase": "distillation", **metrics})
    remove_sharing(plain)
    plain.requires_grad_(False)
    if spec.max_bytes is None:
        snap_side_values(plain)
        return
    fitted = fit_side_data(plain, spec.max_bytes, sqz_size)
    if fitted is None:
        raise SqueezeNetError(f"max_bytes={spec.max_bytes:,}: the distilled codebooks no longer fit, even on the "
                              "coarsest grid; distil without a budget or give it a few more KB")
    record.method += f", distilled ({fitted[0]})"


def _shared_bits(plain: Network) -> dict[str, int]:
    shared = {p: max(1, int(torch.unique(m.weight[m.weight != 0]).numel())) for p, m in prunable_layers(plain).items()}
    return {p: max(1, (n - 1).bit_length()) for p, n in shared.items()}


def _finish(plain: Network, bits: dict[str, int], record: CompressionLog) -> tuple[Network, CompressionLog]:
    layers = prunable_layers(plain)
    record.densities = {p: float((m.weight != 0).float().mean()) for p, m in layers.items()}
    if not record.quantization:  # resumed from the finished weights: read the sharing back from them
        record.quantization = [LayerQuantization(p, bits[p], int(torch.unique(w[w != 0]).numel()), int((w != 0).sum()))
                               for p, w in ((p, layers[p].weight.detach()) for p in bits)]
    return plain.eval(), record
