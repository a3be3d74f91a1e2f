"""A byte budget: per-layer quantization chosen by measured sensitivity per byte saved.

Each layer may stay as it is or move to a uniform grid with step ``2**e`` or ``1.5 * 2**e`` (such
steps keep every grid value an exact float32 with a short integer, which the ``.sqz`` writer stores
in a few bits). For every layer and step the plan knows two numbers:

- **bytes**: the entropy of the layer's code symbols after :func:`~.reconstruct.gptq` on the unchanged
  model's inputs (the ANS coder lands within a fraction of a percent of it), plus its small tables and its
  mask's entropy (a layer stored raw has none: moving it to a grid adds one);
- **loss**: the predicted KL(original || compressed) on the calibration images. The layer's output error
  ``tr(D H D^T)`` is computed for every step; one measurement per layer -- the KL with that layer alone
  quantized at a reference step -- turns output error into KL (``kl = sensitivity * error``), so a layer
  whose errors the rest of the network amplifies pays for it (HAWQ measures this with Hessian traces,
  HAQ with a search; a direct measurement is both cheaper here and closer to the goal).

The allocation is greedy on the ratio ``extra KL / bytes saved`` (the Lagrangian path of a
multiple-choice knapsack when the curves are convex, and a good one when they are not), from every
layer unchanged down to the budget. Errors of different layers are assumed to add, which the final,
sequential reconstruction does not need: it re-quantizes every chosen layer on the activations of the
already-compressed layers before it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import SqueezeNetError
from ..models.layers import paper_layer_names, prunable_layers
from .reconstruct import InputStatistics, gptq, gptq_grids, output_error, prune_mask, stages, uniform_grid

logger = logging.getLogger(__name__)
FINEST, COARSEST = 8.0, 1.0  # steps from rms / 2**8 to rms / 2 of the layer's kept weights
REFERENCE_SHIFT = 3.0  # the sensitivity is measured at step rms / 2**3: a change the KL can resolve
# rate-aware rounding (gptq's ``rate``): off. At the theoretical slope 2 ln 2 / 12 the published model at 400,000
# bytes came out with KL 0.0082 against 0.0075 without it (its lower bytes per step do not pay for the error
# it adds, which GPTQ then spreads over the other weights); see docs/compression.md
RATE = 0.0
PRUNE = (0.15, 0.3)  # shares of a layer's kept weights it may also prune (its other weights compensate)


@dataclass
class Option:
    step: float | None  # None: the layer as it is
    bytes: float
    error: float  # output error (mean squared, on the unchanged model's inputs)
    kl: float = 0.0  # predicted KL contribution
    prune: float = 0.0  # share of the kept weights pruned besides (by saliency; the mask's bytes change too)


@dataclass
class LayerPlan:
    path: str
    name: str
    options: list[Option]
    sensitivity: float = 0.0  # KL per unit of output error
    chosen: int = 0
    masks: dict[float, torch.Tensor] = field(default_factory=dict)  # the mask of each extra pruning share

    @property
    def choice(self) -> Option:
        return self.options[self.chosen]


@dataclass
class BudgetPlan:
    layers: list[LayerPlan]
    fixed_bytes: float = 0.0  # everything the choices do not change (header, biases, side data)
    steps: list[str] = field(default_factory=list)  # what the greedy search did, for the report

    @property
    def predicted_bytes(self) -> float:
        return self.fixed_bytes + sum(lp.choice.bytes for lp in self.layers)

    @property
    def predicted_kl(self) -> float:
        return sum(lp.choice.kl for lp in self.layers)

    def grids(self) -> dict[str, float | None]:
        return {lp.path: lp.choice.step for lp in self.layers}

    def masks(self) -> dict[str, torch.Tensor]:
        """The layers pruned further, and their masks."""
        return {lp.path: lp.masks[lp.choice.prune] for lp in self.layers if lp.choice.prune}


def short_step(step: float) -> float:
    """The nearest value ``2**e`` or ``1.5 * 2**e`` at or below ``step``."""
    e = math.floor(math.log2(step))
    return 1.5 * 2.0**e if step >= 1.5 * 2.0**e else 2.0**e


def candidate_steps(weight: torch.Tensor) -> list[float]:
    kept = weight[weight != 0].double()
    if kept.numel() == 0:
        return []
    rms = float(kept.pow(2).mean().sqrt())
    steps: list[float] = []
    s = FINEST
    while s >= COARSEST:
        step = short_step(rms / 2**s)
        if not steps or step > steps[-1]:
            steps.append(step)
        s -= 0.5
    return steps


def symbol_bytes(values: torch.Tensor) -> float:
    """Bytes to code the non-zero ``values`` as indices into their sorted distinct set: order-0 entropy,
    a frequency table (~1 byte per symbol used) and the codebook."""
    kept = values[values != 0]
    if kept.numel() == 0:
        return 0.0
    _, counts = torch.unique(kept, return_counts=True)
    p = counts.double() / counts.sum()
    entropy_bits = float(-(counts.double() * torch.log2(p)).sum())
    return entropy_bits / 8 + 1.5 * counts.numel()


def mask_bytes(mask: torch.Tensor) -> float:
    """Order-0 entropy of a keep/prune mask, in bytes (what the .sqz mask stream costs, within ~1%)."""
    n, kept = mask.numel(), int(mask.sum())
    if kept in (0, n):
        return 0.0
    d = kept / n
    return -n * (d * math.log2(d) + (1 - d) * math.log2(1 - d)) / 8


def plan_layers(model: nn.Module, statistics: dict[str, InputStatistics], rate: float = RATE,
                prune: tuple[float, ...] = PRUNE) -> list[LayerPlan]:
    """Every layer's options: as it is, or on each candidate grid after GPTQ (bytes and output error), also with
    a share ``prune`` of its kept weights pruned (SparseGPT-style: the others compensate)."""
    names = paper_layer_names(model)
    plans = []
    for path, layer in prunable_layers(model).items():
        weight = layer.weight.detach()
        hessian = statistics[path].hessian
        # (an estimate: the caller replaces it with the measured bytes, which differ for a layer stored raw)
        keep_bytes = symbol_bytes(weight) + 2.5 * torch.unique(weight[weight != 0]).numel() + mask_bytes(weight != 0)
        plan = LayerPlan(path, names.get(path, path), [Option(None, keep_bytes, 0.0)])
        for share in (0.0, *prune):
            mask = prune_mask(weight, share) if share else None
            if mask is not None:
                plan.masks[share] = mask
            steps = candidate_steps(weight)
            grids = [uniform_grid(weight, step) for step in steps]
            solved = (gptq_grids(weight, hessian, grids, mask=mask) if rate == 0 else
                      [gptq(weight, hessian, grid, mask=mask, rate=rate) for grid in grids])
            for step, q in zip(steps, solved, strict=True):
                # the mask stream codes q's zeros: pruned ones and any the grid rounded to zero
                plan.options.append(Option(step, symbol_bytes(q) + mask_bytes(q != 0), output_error(q - weight, hessian),
                                           prune=share))
        plans.append(plan)
    return plans


@torch.no_grad()
def measure_sensitivity(model: nn.Module, images: torch.Tensor, plans: list[LayerPlan],
                        statistics: dict[str, InputStatistics], batch_size: int = 25, rate: float = RATE) -> None:
    """Fill each plan's ``sensitivity`` (KL per unit output error) and every option's predicted ``kl``:
    the layer alone quantized at the reference step, the rest of the network run from cached activations."""
    chain = stages(model)
    layers = prunable_layers(model)
    stage_of = {id(m): i for i, stage in enumerate(chain) for m in stage.modules()}
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    inputs: list[list[torch.Tensor]] = []  # the input of every stage, per batch
    x = [b for b in batches]
    for stage in chain:
        inputs.append([t.clone() for t in x])
        x = [stage(t) for t in x]
    reference = [t.double().log_softmax(1) for t in x]
    for plan in plans:
        layer = layers[plan.path]
        weight = layer.weight.detach().clone()
        step = short_step(float(weight[weight != 0].double().pow(2).mean().sqrt()) / 2**REFERENCE_SHIFT)
        q = gptq(weight, statistics[plan.path].hessian, uniform_grid(weight, step), rate=rate)
        error = output_error(q - weight, statistics[plan.path].hessian)
        layer.weight.copy_(q)
        try:
            first = stage_of[id(layer)]
            kl = 0.0
            for b, ref in zip(inputs[first], reference):
                out = b.clone()
                for stage in chain[first:]:
                    out = stage(out)
                lc = out.double().log_softmax(1)
                kl += float((ref.exp() * (ref - lc)).sum())
        finally:
            layer.weight.copy_(weight)
        plan.sensitivity = kl / len(images) / error if error > 0 else 0.0
        for option in plan.options:
            option.kl = plan.sensitivity * option.error


def allocate(plans: list[LayerPlan], fixed_bytes: float, max_bytes: float) -> BudgetPlan:
    """Greedy by least predicted KL per byte saved, from every layer at its least-loss option."""
    plan = BudgetPlan(plans, fixed_bytes)
    for lp in plans:
        lp.chosen = min(range(len(lp.options)), key=lambda j: (lp.options[j].kl, -lp.options[j].bytes))
    while plan.predicted_bytes > max_bytes:
        best: tuple[float, LayerPlan, int] | None = None
        for lp in plans:
            current = lp.choice
            for j, option in enumerate(lp.options):
                saved = current.bytes - option.bytes
                if saved > 0:
                    ratio = max(0.0, option.kl - current.kl) / saved
                    if best is None or ratio < best[0]:
                        best = (ratio, lp, j)
        if best is None:
            raise SqueezeNetError(f"max_bytes={int(max_bytes):,} is out of reach: the coarsest grids give about "
                                  f"{plan.predicted_bytes:,.0f} bytes")
        _, lp, j = best
        lp.chosen = j
    while True:  # the last step may have saved more than needed: spend the rest where it lowers the KL most
        room = max_bytes - plan.predicted_bytes
        upgrades = [((lp.choice.kl - option.kl) / max(1e-9, option.bytes - lp.choice.bytes), lp, j)
                    for lp in plans for j, option in enumerate(lp.options)
                    if option.kl < lp.choice.kl and option.bytes - lp.choice.bytes <= room]
        if not upgrades:
            return plan
        _, lp, j = max(upgrades, key=lambda u: u[0])
        lp.chosen = j


def step_bits(weight: torch.Tensor, step: float | None) -> float:
    """log2 of the number of grid points spanning the layer's weights (what a fixed-length code would need)."""
    if step is None:
        return float("nan")
    w = weight.detach().double()
    return float(np.log2(max(2.0, float((w.max() - w.min()) / step) + 1)))
