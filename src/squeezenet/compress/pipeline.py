"""Deep Compression end to end: prune -> fine-tune -> fold batch-norm -> share weights -> fine-tune centroids.

:func:`compress_model` takes a typed method (:mod:`.methods`): its type picks the pipeline, each a function of its
own below. The result is a plain model whose layers hold at most ``2**bits`` distinct non-zero values each;
saving it as ``.sqz`` adds the entropy coding (see :mod:`squeezenet.weights.sqz`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..common.extras import require_extra
from ..data.boxes import resolve_boxes
from ..data.masks import resolve_masks
from ..data.training import resolve_data
from ..errors import SqueezeNetError
from ..models import Network, prunable_layers
from .fold import fold_batch_norm
from .methods import FineTune, Method, PostTraining, Reconstruct, SideDataOnly
from .prune import apply_counts, current_mask, keep_counts, parse_targets, prune, remove_masks, set_mask
from .quantize import LayerQuantization, parse_bits, quantize, remove_sharing, share_values
from .side_grid import snap_side_values
from .workdir import CompressionWorkDir, parametrized_layers

if TYPE_CHECKING:
    import lightning as L

logger = logging.getLogger(__name__)


@dataclass
class CompressionLog:
    """What happened, phase by phase (for the CLI and the demo)."""

    densities: dict[str, float] = field(default_factory=dict)
    quantization: list[LayerQuantization] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    method: str = ""  # how the weights were shared, in words
    budget: list[dict] = field(default_factory=list)  # per-layer choices of a byte budget, and why


def compress_model(model: Network, method: Method, *, work_dir: str | Path | None = None,
                   progress_bar: bool | None = None, resume: bool = False) -> tuple[Network, CompressionLog]:
    """Compress ``model`` (from :func:`squeezenet.weights.load_weights`) by ``method`` (:class:`PostTraining`,
    :class:`SideDataOnly`, :class:`Reconstruct` or :class:`FineTune`); returns the compressed model, whose ``meta``
    is the input's (but for ``batch_norm``, which is folded away), and what was done. Progress is logged
    (``logging.getLogger("squeezenet")``). ``model`` is changed in place.

    Methods that train (:class:`FineTune`; :class:`Reconstruct` with ``centroid_epochs``) write each phase's run
    (logs, curves, epoch checkpoints) and its finished weights under ``work_dir``; ``resume`` continues a killed
    compression there (finished phases are skipped, an unfinished one continues from its last epoch checkpoint).
    """
    if isinstance(method, FineTune):
        return _fine_tune(model, method, _work_dir(model, method, work_dir, resume), progress_bar)
    if isinstance(method, Reconstruct) and method.centroid_epochs:
        return _reconstruct(model, method, _work_dir(model, method, work_dir, resume), progress_bar)
    if resume:
        raise SqueezeNetError("only a compression that trains (fine-tuning on data, or centroid epochs on calibration "
                              "images) has anything to resume")
    if isinstance(method, Reconstruct):
        return _reconstruct(model, method, None, progress_bar)
    if isinstance(method, SideDataOnly):
        return _side_data_only(model, method)
    if isinstance(method, PostTraining):
        return _post_training(model, method)
    raise TypeError(f"not a compression method: {type(method).__name__} (PostTraining, SideDataOnly, Reconstruct, "
                    "FineTune)")


def _work_dir(model: Network, method: FineTune | Reconstruct, work_dir: str | Path | None,
              resume: bool) -> CompressionWorkDir:
    """The claimed work directory of a method that trains; what fine-tuning would refuse is refused first."""
    if work_dir is None:
        raise SqueezeNetError("compression that trains needs a work directory (work_dir=) for its runs")
    require_extra("train", "fine-tuning during compression")
    from .finetune import finetune_recipe

    dense = model.meta.task in ("detect", "segment")  # trained on boxes or masks, never distilled
    if isinstance(method, FineTune):
        if dense and method.distill:
            raise SqueezeNetError("distillation is for classifiers; a detector or segmenter fine-tunes on its boxes "
                                  "or masks alone")
        finetune_recipe(model, epochs=max(1, method.finetune_epochs), lr=method.lr, base=method.recipe,
                        overrides=method.overrides)
        if dense:  # a bad label is one line now, not after pruning
            (resolve_boxes if model.meta.task == "detect" else resolve_masks)(method.data)
        elif method.data != "cifar10":  # (cifar10 may still be downloaded)
            resolve_data(method.data, method.data_root, download=False)
        described = method.data
    else:
        if dense:
            raise SqueezeNetError("distillation is for classifiers; with calibration images alone a detector's or "
                                  "segmenter's weights are reconstructed without centroid epochs")
        finetune_recipe(model, epochs=1, base=method.recipe, overrides=method.overrides, unlabelled=True)
        described = f"calibration {method.calibration}"
    work = CompressionWorkDir(work_dir)
    work.claim(model, method.record(), described, resume=resume)
    return work


def _prune_now(model: Network, method: Method) -> None:
    """Magnitude pruning without fine-tuning (the methods without labels)."""
    if method.pruning is not None:
        prune(model, parse_targets(*method.pruning, model))
        remove_masks(model)


def _post_training(model: Network, method: PostTraining) -> tuple[Network, CompressionLog]:
    _prune_now(model, method)
    plain = fold_batch_norm(model)
    bits = parse_bits(method.bits, plain)
    logger.info(f"weight sharing: k-means ({method.init} initialisation)")
    record = CompressionLog(quantization=quantize(plain, bits, init=method.init), method=f"k-means ({method.init})")
    remove_sharing(plain)
    return _finish(plain, bits, record)


def _side_data_only(model: Network, method: SideDataOnly) -> tuple[Network, CompressionLog]:
    from ..weights import sqz_size
    from .byte_budget import fit_without_data

    _prune_now(model, method)
    plain = fold_batch_norm(model)
    parse_bits(method.bits, plain)  # checked, though the budget decides the sharing
    record = CompressionLog()
    record.method, _ = fit_without_data(plain, method.max_bytes, sqz_size)
    return _finish(plain, _shared_bits(plain), record)


def _reconstruct(model: Network, method: Reconstruct, work: CompressionWorkDir | None,
                 progress_bar: bool | None) -> tuple[Network, CompressionLog]:
    """Weights chosen for each layer's output on the calibration images (read once: the tensor every step uses);
    with centroid epochs, codebooks and biases then distilled on the input model's outputs."""
    from ..inference.preloaded import unlabelled_images
    from ..weights import sqz_tensor_bytes
    from .byte_budget import fit_with_data, kmeans_reconstruction
    from .grid_plan import step_bits

    record = CompressionLog()
    finished = work.load_result("centroids") if work is not None else None
    if work is not None and finished is not None:
        logger.info(f"resuming: {work.result('centroids')} holds the finished compression")
        record.phases = [m for m in (work.metrics("centroids"),) if m]
        return _finish(finished, _shared_bits(finished), record)
    teacher = copy.deepcopy(model).eval() if work is not None else None  # copied before any change
    _prune_now(model, method)
    plain = fold_batch_norm(model)
    bits = parse_bits(method.bits, plain)
    images = unlabelled_images(plain.meta, method.calibration)
    if method.max_bytes is None:
        logger.info(f"weight sharing: k-means, weights assigned by reconstruction on {len(images)} images")
        kmeans_reconstruction(plain, images, bits, progress=lambda path: None)
        record.method = "k-means codebooks, reconstruction"
    else:
        plan, _ = fit_with_data(plain, images, method.max_bytes, sqz_tensor_bytes, progress=logger.info)
        record.method = "per-layer uniform grids (byte budget), reconstruction"
        layers = prunable_layers(plain)
        record.budget = [{"layer": lp.name, "path": lp.path, "step": lp.choice.step,
                          "levels_bits": step_bits(layers[lp.path].weight, lp.choice.step),
                          "prune": lp.choice.prune, "bytes": lp.choice.bytes, "output_error": lp.choice.error,
                          "sensitivity": lp.sensitivity, "kl": lp.choice.kl} for lp in plan.layers]
    if work is not None and teacher is not None:
        _distil_on_calibration(plain, teacher, method, len(images), work, progress_bar, record)
        work.save_result("centroids", plain)
    return _finish(plain, _shared_bits(plain), record)


def _fine_tune(model: Network, method: FineTune, work: CompressionWorkDir,
               progress_bar: bool | None) -> tuple[Network, CompressionLog]:
    """Han et al.: pruning during fine-tuning on the labels (gradual or one-shot), k-means, centroids fine-tuned."""
    from .finetune import finetune, finetune_recipe

    record = CompressionLog()
    quantized = work.load_result("centroids")
    if quantized is not None:
        logger.info(f"resuming: {work.result('centroids')} holds the finished compression")
        record.phases = [m for m in (work.metrics("prune"), work.metrics("centroids")) if m]
        return _finish(quantized, parse_bits(method.bits, quantized), record)
    # the uncompressed model, whose outputs the compressed one learns to match (copied before any change to it)
    teacher = copy.deepcopy(model).eval() if method.distill > 0 else None
    pruned = work.load_result("prune")
    if pruned is not None:
        logger.info(f"resuming: pruned weights from {work.result('prune')}")
        model.load_state_dict(pruned.state_dict())
        record.phases.append({"phase": "prune", **(work.metrics("prune") or {})})
    elif method.pruning is not None:
        targets = parse_targets(*method.pruning, model)
        final = keep_counts(model, targets)
        if method.finetune_epochs:
            _prune_with_finetuning(model, method, final, targets, work, progress_bar, record, teacher)
        else:
            prune(model, targets)
        remove_masks(model)
        work.save_result("prune", model)
    plain = fold_batch_norm(model)
    bits = parse_bits(method.bits, plain)
    logger.info(f"weight sharing: k-means ({method.init} initialisation)")
    record.quantization = quantize(plain, bits, init=method.init)
    if method.centroid_epochs:
        recipe = finetune_recipe(plain, epochs=method.centroid_epochs, lr=method.centroid_lr, base=method.recipe,
                                 optimizer="adamw", weight_decay=0.0, time_budget_s=method.budget_s,
                                 distill=method.distill, overrides=method.overrides)
        checkpoint = work.checkpoint("centroids")
        logger.info(f"{'resuming' if checkpoint else 'fine-tuning'} the centroids for {method.centroid_epochs} "
                    "epoch(s)")
        metrics = finetune(plain, method.data, work.run_dir("centroids"), recipe, data_root=method.data_root,
                           progress_bar=progress_bar, resume=checkpoint is not None, teacher=teacher)
        record.phases.append({"phase": "centroids", **metrics})
    remove_sharing(plain)
    work.save_result("centroids", plain)
    return _finish(plain, bits, record)


def _prune_with_finetuning(model: Network, spec: FineTune, final: dict[str, int], targets: dict,
                           work: CompressionWorkDir, progress_bar: bool | None, record: CompressionLog,
                           teacher: nn.Module | None) -> None:
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
    metrics = finetune(model, spec.data, work.run_dir("prune"), recipe, data_root=spec.data_root, callbacks=callbacks,
                       progress_bar=progress_bar, resume=checkpoint is not None, teacher=teacher)
    apply_counts(model, final)  # a budget, or a resume with nothing left to train, may end before the schedule does
    record.phases.append({"phase": "prune", **metrics})


def _distil_on_calibration(plain: Network, teacher: nn.Module, spec: Reconstruct, images: int,
                           work: CompressionWorkDir, progress_bar: bool | None, record: CompressionLog) -> None:
    """Train the shared values (codebooks) and biases chosen by post-training compression to match the
    uncompressed model's outputs on the calibration images (no labels); assignments and masks stay. Then the
    side data goes back on a grid: the finest that fits ``spec.max_bytes`` (codebooks trained off their grid
    cost bytes), or the default one."""
    from ..weights import sqz_size
    from .byte_budget import fit_side_data
    from .finetune import UNLABELLED_BATCH, finetune, finetune_recipe

    share_values(plain)
    epochs = spec.centroid_epochs
    recipe = finetune_recipe(plain, epochs=epochs, lr=spec.centroid_lr, base=spec.recipe, optimizer="adamw",
                             weight_decay=0.0, time_budget_s=spec.budget_s, unlabelled=True,
                             overrides={"batch_size": min(UNLABELLED_BATCH, images), **spec.overrides})
    checkpoint = work.checkpoint("centroids")
    logger.info(f"{'resuming' if checkpoint else 'distilling'}: codebooks and biases for {epochs} epoch(s) on the "
                "uncompressed model's outputs")
    # the training loop reads the folder again: distillation sees augmented crops, not the fixed tensor above
    metrics = finetune(plain, str(spec.calibration), work.run_dir("centroids"), recipe, progress_bar=progress_bar,
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
