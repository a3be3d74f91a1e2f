"""Compression to a byte budget, with calibration images (repair) or without (side data only).

Without images, the only freedom that cannot change an answer is the precision of the side data
(codebooks and biases, see :mod:`.side_grid`): the finest grid whose file fits is used, and if even the
coarsest one does not fit, weight sharing by k-means with fewer bits is tried (which does change answers).
With images, :mod:`.grid_plan` picks a grid per layer and :mod:`.reconstruct` repairs the model on them.
Either way the file's size is measured, not predicted, before the model is handed back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import SqueezeNetError
from ..models import Network
from ..models.layers import prunable_layers
from .grid_plan import RATE, BudgetPlan, allocate, measure_sensitivity, plan_layers
from .kmeans import kmeans_1d
from .quantize import quantize, remove_sharing
from .reconstruct import all_input_statistics, reconstruct, uniform_grid
from .side_grid import DEFAULT_WEIGHT_BITS, snap_side_values

logger = logging.getLogger(__name__)
SENSITIVITY_IMAGES = 50  # KL per layer measured on this many calibration images (the rest only for H)
ATTEMPTS = 4  # allocations tried when the written file overshoots the prediction
HEADER_SLACK = 256  # bytes kept free for what the caller adds to the metadata (its source line)

Size = Callable[[Network], int]
Layout = Callable[[Network], tuple[int, dict[str, float]]]  # file size, bytes of each tensor's values


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit_without_data(model: Network, max_bytes: int, size: Size) -> tuple[str, int]:
    """The most faithful data-free compression that fits: the model as it is, then side data on the finest
    grid that fits (answers kept), then k-means sharing with the most bits that fit. Changes ``model`` in
    place; returns what it did and the size. Sizes fall with coarser settings, so each is a bisection."""
    original = _state(model)
    limit = max_bytes - HEADER_SLACK

    def shared(bits: int) -> int:
        model.load_state_dict(original)
        quantize(model, dict.fromkeys(prunable_layers(model), bits), init="optimal")
        remove_sharing(model)
        snap_side_values(model, weight_bits=DEFAULT_WEIGHT_BITS)
        return size(model)

    if (bytes_now := size(model)) <= limit:  # cheapest first: most files asked for fit as they are or snapped
        return "unchanged (bit-exact)", bytes_now
    distinct = max(int(torch.unique(m.weight).numel()) for m in prunable_layers(model).values())
    if distinct <= 1 << 12:  # weight-shared already: the side data's precision is all there is to spend
        fitted = fit_side_data(model, max_bytes, size)
        if fitted is not None:
            return fitted
    bits, smallest = _finest(shared, 2, 8, limit)
    if bits is None:
        raise SqueezeNetError(f"max_bytes={max_bytes:,} is out of reach without calibration images: 2-bit sharing "
                              f"gives {smallest + HEADER_SLACK:,} bytes")
    return f"k-means weight sharing, {bits} bits (no calibration images: answers change)", shared(bits)


def fit_side_data(model: Network, max_bytes: int, size: Size) -> tuple[str, int] | None:
    """Codebooks and biases of a weight-shared ``model`` on the finest grid (8 to 23 binary places) whose file
    fits ``max_bytes``, in place; None (and ``model`` unchanged) if even the coarsest does not fit."""
    original = _state(model)

    def snapped(bits: int) -> int:
        model.load_state_dict(original)
        snap_side_values(model, weight_bits=bits, first_layer_extra=min(3, 23 - bits))
        return size(model)

    bits, _ = _finest(snapped, 8, 23, max_bytes - HEADER_SLACK)
    if bits is None:
        model.load_state_dict(original)
        return None
    return f"side data on a grid of {bits} binary places", snapped(bits)


def _grid_quantizer(grids: dict[str, float | None]) -> Callable[[str, torch.Tensor], torch.Tensor | None]:
    def grid(path: str, weight: torch.Tensor) -> torch.Tensor | None:
        step = grids.get(path)
        return None if step is None else uniform_grid(weight, step)
    return grid


def _finest(size_at: Callable[[int], int], low: int, high: int, limit: int) -> tuple[int | None, int]:
    """The largest setting in [low, high] whose size fits ``limit`` (sizes grow with the setting), or None;
    and the size at ``low`` (what the caller reports when nothing fits)."""
    smallest = size_at(low)
    if smallest > limit:
        return None, smallest
    while low < high:
        mid = (low + high + 1) // 2
        if size_at(mid) <= limit:
            low = mid
        else:
            high = mid - 1
    return low, smallest


def kmeans_reconstruction(model: Network, images: torch.Tensor, bits: dict[str, int], *,
                          progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """k-means codebooks (least-squares optimal, per layer), weights assigned by output-error reconstruction."""
    def codebook(path: str, weight: torch.Tensor) -> torch.Tensor | None:
        if path not in bits:
            return None
        kept = weight[weight != 0].double().cpu().numpy()
        return torch.from_numpy(kmeans_1d(kept, 2 ** bits[path], "optimal").astype(np.float64))

    errors = reconstruct(model, images, codebook, progress=progress)
    snap_side_values(model, skip_weights=list(bits))
    return errors


def fit_with_data(model: Network, images: torch.Tensor, max_bytes: int, layout: Layout, *, rate: float = RATE,
                  progress: Callable[[str], None] | None = None) -> tuple[BudgetPlan, int]:
    """Per-layer grids chosen for ``max_bytes`` by measured sensitivity, then sequential reconstruction on
    ``images``; the returned size is the measured one (always <= ``max_bytes - HEADER_SLACK``)."""
    say = progress or (lambda message: None)
    original = _state(model)
    say("input statistics of every layer")
    statistics = all_input_statistics(model, images)
    say("bytes and output error of every layer at every step")
    plans = plan_layers(model, statistics, rate)
    say(f"sensitivity of every layer ({min(len(images), SENSITIVITY_IMAGES)} images)")
    measure_sensitivity(model, images[:SENSITIVITY_IMAGES], plans, statistics, rate=rate)
    snap_side_values(model)
    unchanged, per_tensor = layout(model)  # every layer as it is, side data on the grid: where choices start
    # (per-tensor bytes include masks: so do the options', and what is left is fixed whatever is chosen)
    for lp in plans:
        lp.options[0].bytes = per_tensor[f"{lp.path}.weight"]  # measured, not estimated
    model.load_state_dict(original)
    fixed = unchanged - sum(lp.options[0].bytes for lp in plans)
    target = float(max_bytes - HEADER_SLACK)
    for attempt in range(ATTEMPTS):
        plan = allocate(plans, fixed, target)
        say(f"reconstruction for a predicted {plan.predicted_bytes:,.0f} bytes (attempt {attempt + 1})")
        grids = plan.grids()
        model.load_state_dict(original)
        reconstruct(model, images, _grid_quantizer(grids), reference=statistics, rate=rate, masks=plan.masks())
        snap_side_values(model, skip_weights=[p for p, s in grids.items() if s is not None])
        measured = layout(model)[0]
        if measured <= max_bytes - HEADER_SLACK:
            return plan, measured
        logger.info(f"the file came out at {measured:,} bytes, {measured - plan.predicted_bytes:+,.0f} from the "
                    "prediction; allocating again")
        target -= (measured - (max_bytes - HEADER_SLACK)) + 0.002 * max_bytes
    raise SqueezeNetError(f"max_bytes={max_bytes:,}: no allocation fitted after {ATTEMPTS} attempts "
                          f"(last {measured:,} bytes)")
