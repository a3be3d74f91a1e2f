"""Post-training repair from unlabelled images: each layer's quantized weights chosen for its *output*.

Rounding each weight to its nearest grid point (or centroid) minimises the weights' own error; what the
network needs is the layer's output ``W x`` to stay the same on real inputs. With ``H = E[x x^T]`` over
calibration activations, the output error of a change ``D`` is ``tr(D H D^T)``, and GPTQ (Frantar et al.
2023, after Optimal Brain Quantization) minimises it greedily: quantize one input column at a time and
move the not-yet-quantized columns to absorb the error, ``W[:, j:] -= err * Hinv[i, j:] / Hinv[i, i]``
with the Cholesky factor of ``H^-1`` (as in the authors' ``gptq.py``: dampening, columns in order of
decreasing ``diag(H)``, lazy block updates). Adapted here to Deep Compression:

- the quantizer is any sorted set of values: a k-means codebook or a uniform grid (entropy-coded, the
  grid is the better rate-distortion trade at the same bytes: measured in ``docs/compression.md``);
- pruned weights stay exactly zero: a masked entry is "quantized" to 0 and its error is passed on like
  any other (as SparseGPT does for the weights it prunes);
- layers are repaired in network order on the activations of the already-quantized layers before them,
  so later layers also absorb the earlier ones' error (GPTQ's sequential mode), and each bias takes the
  change in the mean output (bias correction, Nagel et al. 2019).

BRECQ/AdaRound optimise the rounding by gradient descent per block; on 2 CPU cores that is minutes per
layer, where this is a fraction of a second, and GPTQ is within a few percent of them on the
reconstruction error they report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SqueezeNetError
from ..models.layers import prunable_layers

logger = logging.getLogger(__name__)
DAMPING = 0.01  # of the mean diagonal of H, added to it (GPTQ's percdamp)
BLOCK = 128  # columns per lazy batch update


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def input_columns(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of its weight's inputs: im2col patches for a conv, feature rows for a linear."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise SqueezeNetError("grouped convolutions are not supported by reconstruction")
        if isinstance(layer.padding, str):
            raise SqueezeNetError("convolutions with padding='same'/'valid' are not supported by reconstruction")
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


@dataclass
class InputStatistics:
    """Second moment ``H = E[x x^T]`` and mean of a layer's inputs (as weight columns), in float64."""

    hessian: torch.Tensor
    mean: torch.Tensor
    count: int

    @classmethod
    def of(cls, layer: nn.Module, batches: Sequence[torch.Tensor]) -> InputStatistics:
        stats: InputStatistics | None = None
        for x in batches:
            stats = cls.accumulate(stats, input_columns(layer, x))
        if stats is None:
            raise SqueezeNetError("no calibration batches")
        return stats.normalized()

    @staticmethod
    def accumulate(stats: InputStatistics | None, cols: torch.Tensor) -> InputStatistics:
        c = cols.double()
        h, s = c.T @ c, c.sum(0)
        if stats is None:
            return InputStatistics(h, s, c.shape[0])
        return InputStatistics(stats.hessian + h, stats.mean + s, stats.count + c.shape[0])

    def normalized(self) -> InputStatistics:
        return InputStatistics(self.hessian / self.count, self.mean / self.count, -1)


def output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    """Mean squared change of the layer's outputs for a weight change ``delta`` (rows = outputs): ``tr(D H D^T)``
    divided by the number of outputs."""
    d = delta.double().reshape(delta.shape[0], -1)
    return float(((d @ hessian) * d).sum() / d.shape[0])


def nearest(values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Each value rounded to the nearest entry of the sorted ``grid``."""
    if grid.numel() == 1:
        return grid.expand_as(values).clone()
    return grid[torch.bucketize(values.contiguous(), (grid[1:] + grid[:-1]) / 2)]


def symbol_costs(weight: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bits each grid entry would cost in an order-0 code of the kept weights rounded to it (add-one smoothed)."""
    kept = weight[weight != 0].double()
    counts = torch.bincount(torch.bucketize(kept.contiguous(), (grid[1:] + grid[:-1]) / 2), minlength=grid.numel())
    p = (counts.double() + 1) / (counts.sum() + grid.numel())
    return -torch.log2(p)


def rate_aware_nearest(values: torch.Tensor, grid: torch.Tensor, bits: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Of the two grid entries around each value, the one with the least ``(v - q)**2 + lam * bits(q)``."""
    upper = torch.bucketize(values.contiguous(), grid).clamp(1, grid.numel() - 1)
    lower = upper - 1
    cost_low = (values - grid[lower]) ** 2 + lam * bits[lower]
    cost_high = (values - grid[upper]) ** 2 + lam * bits[upper]
    return torch.where(cost_low <= cost_high, grid[lower], grid[upper])


def _gptq_setup(weight: torch.Tensor, hessian: torch.Tensor, mask: torch.Tensor | None,
                damping: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``weight`` and its keep-mask as (outputs x inputs) float64 in GPTQ's column order (largest input moment
    first), the upper Cholesky factor of the damped inverse moment, and that order."""
    shape = weight.shape
    w = weight.detach().double().reshape(shape[0], -1).clone()
    keep = (w != 0) if mask is None else mask.reshape(shape[0], -1).clone()
    cols = w.shape[1]
    if hessian.shape != (cols, cols):
        raise SqueezeNetError(f"a {tuple(hessian.shape)} input moment for a layer with {cols} inputs")
    h = hessian.double().clone()
    dead = torch.diag(h) == 0  # inputs that are never non-zero: their weights cannot matter
    h[dead, dead] = 1.0
    order = torch.argsort(torch.diag(h), descending=True)
    w, keep, h = w[:, order], keep[:, order], h[order][:, order]
    h += damping * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    return w, keep, hinv, order


def _gptq_columns(w: torch.Tensor, keep: torch.Tensor, hinv: torch.Tensor,
                  rounding: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """GPTQ's pass over the columns (lazy batch updates of ``BLOCK`` columns): each column rounded, its error
    spread over the columns not yet rounded. Rows are independent, so callers may stack several problems."""
    cols = w.shape[1]
    q = torch.zeros_like(w)
    zero = torch.zeros((), dtype=w.dtype)
    for i1 in range(0, cols, BLOCK):
        i2 = min(i1 + BLOCK, cols)
        block, errors, hb = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1, dtype=w.dtype), hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            column = block[:, i]
            chosen = torch.where(keep[:, i1 + i], rounding(column), zero)
            q[:, i1 + i] = chosen
            err = (column - chosen) / hb[i, i]
            block[:, i:] -= err[:, None] * hb[i, i:][None, :]
            errors[:, i] = err
        w[:, i2:] -= errors @ hinv[i1:i2, i2:]
    return q


def gptq(weight: torch.Tensor, hessian: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor | None = None,
         damping: float = DAMPING, rate: float = 0.0) -> torch.Tensor:
    """Quantize ``weight`` (outputs x inputs, any trailing kernel dims) to values of ``grid`` (entries where
    ``mask`` is False to exactly 0) minimising the output error on inputs with second moment ``hessian``.

    ``rate`` > 0 rounds rate-aware: each weight takes the neighbouring grid value that minimises squared
    error plus ``rate * gap**2`` times its code length in bits (``gap``: the mean grid spacing). For a
    uniform quantizer at high rate the distortion-rate slope gives ``rate = 2 ln 2 / 12 = 0.1155``
    (RDO quantisation as in video and neural-network codecs, e.g. NNCodec's)."""
    w, keep, hinv, order = _gptq_setup(weight, hessian, mask, damping)
    g = grid.double().sort().values
    if rate > 0 and g.numel() > 1:
        bits = symbol_costs(w, g)
        lam = torch.tensor(rate * float((g[-1] - g[0]) / (g.numel() - 1)) ** 2, dtype=w.dtype)

        def rounding(column: torch.Tensor) -> torch.Tensor:
            return rate_aware_nearest(column, g, bits, lam)
    else:
        def rounding(column: torch.Tensor) -> torch.Tensor:
            return nearest(column, g)
    q = _gptq_columns(w, keep, hinv, rounding)
    return q[:, torch.argsort(order)].reshape(weight.shape).to(weight.dtype)


def _stacked_nearest(table: torch.Tensor, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rounding for a column of stacked problems: block ``j`` (``rows`` values) to its nearest entry of grid
    ``table[j]`` (sorted, padded with inf, which no value rounds to); ties go down, as in :func:`nearest`."""
    mids = ((table[:, 1:] + table[:, :-1]) / 2).contiguous()

    def rounding(column: torch.Tensor) -> torch.Tensor:
        values = column.reshape(len(table), rows)
        if mids.shape[1] == 0:
            return table[:, :1].expand_as(values).reshape(-1)
        return table.gather(1, torch.searchsorted(mids, values.contiguous())).reshape(-1)
    return rounding


GPTQ_STACK_BYTES = 64 << 20  # float64 rows of stacked problems solved in one pass (bounds memory on wide layers)


def gptq_grids(weight: torch.Tensor, hessian: torch.Tensor, grids: Sequence[torch.Tensor],
               mask: torch.Tensor | None = None, damping: float = DAMPING) -> list[torch.Tensor]:
    """:func:`gptq` (nearest rounding) of one layer onto each of ``grids``, equal to calling it once per grid but
    in one pass over the columns: the problems share the moment, its factorisation and the mask, and GPTQ's rows
    are independent, so the copies are stacked (the budget tries ~15 grids per layer; the Python loop over
    columns, not the arithmetic, was its cost)."""
    w, keep, hinv, order = _gptq_setup(weight, hessian, mask, damping)
    rows = w.shape[0]
    per_chunk = max(1, GPTQ_STACK_BYTES // (8 * w.numel()))
    back = torch.argsort(order)
    out: list[torch.Tensor] = []
    for start in range(0, len(grids), per_chunk):
        chunk = [g.double().sort().values for g in grids[start:start + per_chunk]]
        table = torch.full((len(chunk), max(g.numel() for g in chunk)), math.inf, dtype=torch.float64)
        for j, g in enumerate(chunk):
            table[j, :g.numel()] = g
        q = _gptq_columns(w.repeat(len(chunk), 1), keep.repeat(len(chunk), 1), hinv, _stacked_nearest(table, rows))
        out += [q[j * rows:(j + 1) * rows][:, back].reshape(weight.shape).to(weight.dtype) for j in range(len(chunk))]
    return out


def prune_mask(weight: torch.Tensor, prune: float) -> torch.Tensor:
    """The kept weights less a share ``prune`` of them, the smallest in magnitude (Han et al.'s criterion;
    :func:`gptq` given this mask lets the others compensate). OBS-style saliencies (``w**2 / [H^-1]_jj``,
    SparseGPT's in GPTQ's column order) chosen once for the whole layer left more output error after
    compensation than magnitude on a test layer, so the simple rule stays."""
    keep = weight.detach() != 0
    drop = int(round(prune * int(keep.sum())))
    if drop > 0:
        magnitude = torch.where(keep, weight.detach().abs(), torch.full_like(weight, float("inf"), dtype=weight.dtype))
        keep = keep.clone()
        keep.view(-1)[torch.topk(magnitude.view(-1), drop, largest=False).indices] = False
    return keep


def uniform_grid(weight: torch.Tensor, step: float) -> torch.Tensor:
    """Every multiple of ``step`` from below the smallest to above the largest weight (the coder only pays
    for the ones used)."""
    top = int(torch.ceil(weight.detach().abs().max().double() / step)) + 1
    return torch.arange(-top, top + 1, dtype=torch.float64) * step


def stages(model: nn.Module) -> list[nn.Module]:
    """The model as a chain of modules whose composition is its forward pass (``features`` then
    ``classifier`` children, then a flatten), so activations can be carried from stage to stage."""
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if isinstance(features, nn.Sequential) and isinstance(classifier, nn.Sequential) and not hasattr(model, "avgpool"):
        return [*features, *classifier, nn.Flatten(1)]
    return [model]


def capture_inputs(stage: nn.Module, layer: nn.Module, batches: Sequence[torch.Tensor]) -> InputStatistics:
    """Input statistics of ``layer`` when ``stage`` runs on each batch (the pass stops at the layer)."""
    stats: InputStatistics | None = None

    def hook(module: nn.Module, args: tuple) -> None:
        nonlocal stats
        stats = InputStatistics.accumulate(stats, input_columns(layer, args[0]))
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        for x in batches:
            try:
                stage(x.clone())  # a stage may work in place (ReLU(inplace=True)); its input is reused
            except _Stop:
                pass
    finally:
        handle.remove()
    if stats is None:
        raise SqueezeNetError("the layer was not reached by its stage")
    return stats.normalized()


def all_input_statistics(model: nn.Module, images: torch.Tensor, batch_size: int = 25) -> dict[str, InputStatistics]:
    """Input statistics of every prunable layer of the unchanged model, in one pass."""
    layers = prunable_layers(model)
    acc: dict[str, InputStatistics | None] = dict.fromkeys(layers)
    handles = []
    for path, layer in layers.items():
        def hook(module: nn.Module, args: tuple, path: str = path) -> None:
            acc[path] = InputStatistics.accumulate(acc[path], input_columns(module, args[0]))
        handles.append(layer.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return {p: s.normalized() for p, s in acc.items() if s is not None}


Quantizer = Callable[[str, torch.Tensor], torch.Tensor | None]  # (layer path, weight) -> grid, or None to keep it


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, quantizer: Quantizer, *,
                reference: Mapping[str, InputStatistics] | None = None, batch_size: int = 25,
                bias_correction: bool = True, rate: float = 0.0, masks: Mapping[str, torch.Tensor] | None = None,
                progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Quantize ``model`` in place, layer by layer in network order, by :func:`gptq` on the activations of the
    already-quantized layers; returns each changed layer's output error (mean squared, on those inputs).

    ``quantizer`` gives each layer's grid (``None``: leave the layer as it is). ``reference``: the unchanged
    model's input statistics (:func:`all_input_statistics`), for bias correction; computed if not given.
    ``masks``: layers pruned further than they are (weights outside the mask go to 0, their error passed on)."""
    model.eval()
    if bias_correction and reference is None:
        reference = all_input_statistics(model, images, batch_size)
    chain = stages(model)
    paths = {id(m): p for p, m in prunable_layers(model).items()}
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    errors: dict[str, float] = {}
    for stage in chain:
        for module in (m for m in stage.modules() if id(m) in paths):
            layer: nn.Conv2d | nn.Linear = module  # type: ignore[assignment]
            path = paths[id(layer)]
            grid = quantizer(path, layer.weight)
            if grid is None:
                continue
            stats = capture_inputs(stage, layer, batches)
            before = layer.weight.detach().clone()
            quantized = gptq(before, stats.hessian, grid, mask=(masks or {}).get(path), rate=rate)
            errors[path] = output_error(quantized - before, stats.hessian)
            layer.weight.copy_(quantized)
            if bias_correction and layer.bias is not None and reference is not None:
                # the outputs' mean on these inputs moves back to the unchanged model's
                shift = before.double().reshape(before.shape[0], -1) @ reference[path].mean \
                    - quantized.double().reshape(before.shape[0], -1) @ stats.mean
                layer.bias.add_(shift.to(layer.bias.dtype))
            if progress is not None:
                progress(path)
        batches = [stage(x) for x in batches]
    return errors
