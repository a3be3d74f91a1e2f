"""int8 that keeps the model's answers: static QDQ quantization, checked against the fp32 model.

onnxruntime's tools write the file (per-channel int8 weights, uint8 activations); this module chooses what goes
in it. Weights: GPTQ (the compression's reconstruction, :mod:`squeezenet.compress.reconstruct`) picks each
weight's rounding on the per-channel int8 grid for the layer's *output* on the calibration images -- on the
published model that alone cuts the weights' share of the error 7x (KL 0.0068 -> 0.0009 with fp32
activations, ``benchmarks/int8_ceiling.py``). Activation ranges: the clip with the least squared rounding error
per tensor ("mse", the default), or onnxruntime's minmax/percentile/entropy. Layers: the whole-int8 file is
tried first; when it
fails its gate (agreement and logit SNR against the fp32 model on the calibration images), the
convolutions whose quantization alone moves the outputs most (logit SNR against fp32, each measured on its own) stay in
fp32, as few of them as reach the target (a doubling search, then bisection). When none does, the file is
refused unless forced: an int8 file that silently changes one answer in ten is worse than none.

The target is a :class:`~squeezenet.inference.fidelity.FidelityGate`: top-1 agreement *and* logit SNR. Agreement
alone passed a garbage file (KL 5.4) of a random network that answers one class for every input.

Why the calibration images themselves: a held-out split of 60 images could not resolve 0.98 (one
image is 1.7 points). It reads high -- the ranges, the layer choice and (with GPTQ) the roundings are fitted to
those images: 0.968 there against 0.952 on 250 held-out images for the published model (``docs/deployment.md``)
-- so treat the gate as a gate and report the final file with ``squeezenet eval --reference`` on other
images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SqueezeNetError
from ..inference.fidelity import DEFAULT_GATE, SNR_LIMIT_DB, Fidelity, FidelityGate, fidelity
from ..models import Network
from ..models.layers import prunable_layers
from .ort import INPUT_NAME, ort_session, run_onnx

logger = logging.getLogger(__name__)
METHODS = ("mse", "percentile", "minmax", "entropy")
WEIGHT_METHODS = ("gptq", "nearest")
CLIP_POINTS = torch.logspace(0, -1.5, 48)  # fractions of the observed range the MSE search tries (1 .. 0.03)
HISTOGRAM_BINS = 1 << 15  # per activation tensor, over its whole observed range: finer than the finest grid tried
SENSITIVITY_IMAGES = 64  # images for ranking layers (the agreement check uses all)
MIN_CALIBRATION = 16


@dataclass
class Int8Check:
    """How an int8 file compares with its fp32 model on the calibration images."""

    agreement: float  # same top-1 class as fp32
    kl: float  # mean KL(fp32 || int8)
    images: int
    method: str  # activation range calibration
    snr_db: float = SNR_LIMIT_DB  # input-dependent logit SNR against fp32 (squeezenet.inference.fidelity)
    weights: str = "nearest"  # int8 weight rounding: "gptq" (chosen for each layer's output) or "nearest"
    fp32_layers: list[str] = field(default_factory=list)  # convolutions left in fp32 (weight names without .weight)
    tried: list[dict] = field(default_factory=list)  # every candidate measured: fp32 layer count, agreement, SNR, KL

    @classmethod
    def of(cls, f: Fidelity, method: str, **kwargs: object) -> Int8Check:
        return cls(f.agreement, f.kl, f.images, method, f.snr_db, **kwargs)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)


def fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """``x`` rounded to the asymmetric ``bits``-bit grid on [lo, hi] (lo <= 0 <= hi, broadcastable): what a
    QuantizeLinear -> DequantizeLinear pair with onnxruntime's uint8 scale and zero point computes."""
    levels = 2 ** bits - 1
    scale = (hi - lo).clamp_min(1e-12) / levels
    zero = torch.round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale


def int8_weight_scale(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel int8 scale, max|w| / 127: the rule onnxruntime and OpenVINO apply."""
    return w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp_min(1e-30) / 127


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded to its nearest per-channel int8 value (what an int8 convolution multiplies)."""
    scale = int8_weight_scale(w)
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def mse_range(values: torch.Tensor, bits: int = 8, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``values`` (rows x samples, or histogram bin centres with their ``counts``): the range
    [lo, hi], the observed one scaled by one of ``CLIP_POINTS``, whose ``bits``-bit grid has the least squared
    error. Clipping a few large values buys resolution for all the others."""
    lo0, hi0 = values.amin(1).clamp(max=0), values.amax(1).clamp(min=0)
    weight = torch.ones_like(values) if counts is None else counts.to(values.dtype)
    best = torch.full_like(lo0, float("inf"))
    lo, hi = lo0.clone(), hi0.clone()
    for f in CLIP_POINTS.to(values.dtype):
        err = (weight * (fake_quant(values, (lo0 * f)[:, None], (hi0 * f)[:, None], bits) - values) ** 2).sum(1)
        better = err < best
        best, lo, hi = torch.where(better, err, best), torch.where(better, lo0 * f, lo), torch.where(better, hi0 * f, hi)
    return lo, hi


@torch.no_grad()
def gptq_int8_weights(model: Network, images: torch.Tensor) -> Network:
    """A copy of ``model`` whose convolution weights already lie on the per-channel int8 grid (scale max|w|/127),
    each rounding chosen by GPTQ to keep the layer's output on ``images`` rather than the weight itself.
    Batch-norm is folded first, as the runtimes' graph optimisers fold it before quantizing: the weights rounded
    are the ones the int8 convolution multiplies.

    The runtime's quantizer computes the scale again from the weights it is given, so every channel keeps its
    largest weight exactly (GPTQ may have moved it by a step; it is put back): the file then holds exactly these
    integers. Pruned (zero) weights may take values: int8 kernels are dense, and the freedom lowers the output
    error. Grouped convolutions and linear layers are left to the quantizer's nearest rounding."""
    from ..compress.fold import fold_batch_norm
    from ..compress.reconstruct import all_input_statistics, gptq

    folded = fold_batch_norm(model)
    copy = deepcopy(folded).eval() if folded is model else folded
    stats = all_input_statistics(copy, images)
    grid = torch.arange(-127, 128, dtype=torch.float64)
    for path, layer in prunable_layers(copy).items():
        if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or path not in stats:
            continue
        w = layer.weight.detach()
        scale = int8_weight_scale(w)
        q = gptq(w / scale, stats[path].hessian, grid, mask=torch.ones_like(w, dtype=torch.bool)) * scale
        rows, flat = q.reshape(len(q), -1), w.reshape(len(w), -1)
        peak = flat.abs().argmax(1)
        rows[torch.arange(len(rows)), peak] = flat[torch.arange(len(flat)), peak]  # the channel's scale, exactly
        layer.weight.copy_(rows.reshape(w.shape))
    return copy


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a tensor of preprocessed images."""

    def __init__(self, images: torch.Tensor, input_name: str):
        size = min(16, len(images))  # equal batches: histogram calibrators stack them
        self.batches = [images[i:i + size].numpy() for i in range(0, len(images) - size + 1, size)]
        self.input_name, self.index, self.end = input_name, 0, len(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """onnxruntime's strided calibration: collect (and free) one batch at a time. Without it the histogram
        calibrators keep every activation of every image: 15 GB peak for 250 ImageNet images."""
        self.index, self.end = start_index, min(end_index, len(self.batches))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= self.end:
            return None
        self.index += 1
        return {self.input_name: self.batches[self.index - 1]}

    def rewind(self) -> None:
        self.index = 0


def conv_weights(path: str | Path) -> dict[str, str]:
    """Conv node name -> the name of its weight (``features.3.squeeze.weight``), in graph order."""
    import onnx

    return {n.name: n.input[1] for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"}


class _Quantizer:
    """Quantizes one prepared fp32 file again and again with different layers left out; ranges are calibrated
    once (onnxruntime's calibration cache)."""

    def __init__(self, fp32: Path, work: Path, calibration: torch.Tensor, method: str, input_name: str):
        from onnxruntime.quantization import quant_pre_process

        self.prepared, self.cache, self.work = work / "prepared.onnx", work / "ranges.json", work
        quant_pre_process(str(fp32), str(self.prepared), skip_symbolic_shape=True)
        self.calibration, self.method, self.input_name, self.count = calibration, method, input_name, 0
        if method == "mse":  # onnxruntime names the tensors (a minmax pass fills the cache); we set their ranges
            self()
            self._mse_ranges()

    def _mse_ranges(self) -> None:
        """Replace every range in the calibration cache (each tensor's minimum and maximum over all calibration
        images) by :func:`mse_range` of a histogram of all its values. (A random sample of values misses the rare
        large ones the choice depends on: sampled ranges varied by 30% from one run to the next.)"""
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, load_tensors_data, save_tensors_data

        observed = load_tensors_data(self.cache)
        names = sorted(observed.keys())
        bounds = {n: (min(float(np.min(observed[n].lowest)), 0.0), max(float(np.max(observed[n].highest)), 0.0)) for n in names}
        graph = onnx.load(str(self.prepared))
        known = {o.name for o in graph.graph.output}
        graph.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                                  for n in names if n not in known)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        counts = {n: np.zeros(HISTOGRAM_BINS, np.int64) for n in names}
        for batch in _Batches(self.calibration, self.input_name).batches:
            for name, value in zip(names, session.run(names, {self.input_name: batch}), strict=True):
                lo, hi = bounds[name]
                if hi > lo:
                    counts[name] += np.histogram(value, bins=HISTOGRAM_BINS, range=(lo, hi))[0]
        ranges = {}
        for name in names:
            lo, hi = bounds[name]
            if hi > lo:
                centres = lo + (np.arange(HISTOGRAM_BINS) + 0.5) * (hi - lo) / HISTOGRAM_BINS
                low, high = mse_range(torch.from_numpy(centres)[None], counts=torch.from_numpy(counts[name])[None])
                lo, hi = low.item(), high.item()
            ranges[name] = TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), self.cache)

    def __call__(self, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None) -> Path:
        self.count += 1
        out = self.work / f"candidate{self.count}.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            self._quantize_static(out, exclude, only)
        return out

    def _quantize_static(self, out: Path, exclude: Sequence[str], only: Sequence[str] | None) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        quantize_static(str(self.prepared), str(out), _Batches(self.calibration, self.input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "mse": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[self.method],
                        nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only is not None else None,
                        calibration_cache_path=str(self.cache), extra_options={"CalibStridedMinMax": 1})


def _restore_weights(path: Path, original: Path, names: Sequence[str]) -> None:
    """Put the ``original`` file's values back into ``path`` for the weights ``names`` (convolutions kept in
    fp32: grid-rounded weights would only cost them precision)."""
    import onnx

    source = {t.name: t for t in onnx.load(str(original)).graph.initializer if t.name in set(names)}
    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.name in source:
            if list(tensor.dims) != list(source[tensor.name].dims):  # not the same network: a bug, not bad input
                raise RuntimeError(f"{tensor.name}: {list(tensor.dims)} in the int8 file, "
                                   f"{list(source[tensor.name].dims)} in fp32")
            tensor.CopyFrom(source[tensor.name])
    onnx.save(model, str(path))


def quantize_checked(fp32: str | Path, out: str | Path, calibration: torch.Tensor, *, gate: FidelityGate = DEFAULT_GATE,
                     method: str = "mse", force: bool = False, threads: int | None = None,
                     progress: Callable[[str], None] | None = None, source: str | Path | None = None,
                     weights: str = "nearest") -> Int8Check:
    """Write to ``out`` the int8 version of the fp32 ONNX file ``fp32`` with the fewest fp32 layers that passes
    ``gate`` against ``fp32`` on ``calibration`` (preprocessed images, unlabelled).
    ``source``: the fp32 file to quantize when it is not ``fp32`` itself (one whose weights already lie on the
    int8 grid, :func:`gptq_int8_weights`; ``weights`` says how they were rounded, for the record); the comparison
    is always with ``fp32``.

    ``SqueezeNetError`` when no choice passes, unless ``force`` (then the most faithful file measured is
    written). ``progress`` receives one line per step."""
    if method not in METHODS:
        raise SqueezeNetError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if weights not in WEIGHT_METHODS:
        raise SqueezeNetError(f"unknown int8 weight rounding {weights!r}; choose from {', '.join(WEIGHT_METHODS)}")
    if len(calibration) < MIN_CALIBRATION:
        raise SqueezeNetError(f"int8 needs at least {MIN_CALIBRATION} calibration images to measure agreement, "
                              f"got {len(calibration)}")
    say = progress or (lambda line: logger.info(line))
    fp32, out = Path(fp32), Path(out)
    reference = torch.from_numpy(run_onnx(ort_session(fp32, threads), calibration))
    quantized = Path(source) if source is not None else fp32
    conv_weight = conv_weights(quantized)
    nodes = list(conv_weight)
    tried: list[dict] = []

    def measure(path: Path, images: int | None = None) -> Fidelity:
        x = calibration if images is None else calibration[:images]
        return fidelity(reference[:len(x)], torch.from_numpy(run_onnx(ort_session(path, threads), x)))

    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as tmp:
        quantize = _Quantizer(quantized, Path(tmp), calibration, method, INPUT_NAME)
        candidates: dict[int, tuple[Path, Fidelity]] = {}
        order: list[str] = []

        def passes(k: int) -> bool:
            path = quantize(exclude=order[:k])
            if quantized != fp32 and k:
                _restore_weights(path, fp32, [conv_weight[n] for n in order[:k]])
            f = measure(path)
            candidates[k] = (path, f)
            tried.append({"fp32_layers": k, "agreement": f.agreement, "snr_db": f.snr_db, "kl": f.kl})
            say(f"int8 with {k} of {len(nodes)} convolutions in fp32: {f.summary()}")
            return gate.passes(f)

        if not passes(0) and nodes:
            say(f"ranking the {len(nodes)} convolutions by how much their quantization alone changes the outputs")
            # by SNR, not KL: KL is ~0 for every layer of a model whose softmax is nearly uniform, SNR is scale-free
            sensitivity = {node: measure(quantize(only=[node]), SENSITIVITY_IMAGES).snr_db for node in nodes}
            order = sorted(nodes, key=lambda n: sensitivity[n])
            low, k = 0, 1
            while k < len(nodes) and not passes(k):
                low, k = k, min(2 * k, len(nodes))
            if k < len(nodes):  # candidate k passed and candidate low did not: bisect between them
                high = k
                while high - low > 1:
                    mid = (low + high) // 2
                    if passes(mid):
                        high = mid
                    else:
                        low = mid
        passing = [k for k, (_, f) in candidates.items() if gate.passes(f)]
        if passing:
            chosen = min(passing)
        else:  # the most faithful: fewest shortfalls, then the highest SNR, then agreement
            chosen = min(candidates, key=lambda k: (len(gate.shortfalls(candidates[k][1])), -candidates[k][1].snr_db,
                                                    -candidates[k][1].agreement))
            f = candidates[chosen][1]
            if not force:
                raise SqueezeNetError(
                    f"no int8 file passes {gate.describe()} on the {len(calibration)} calibration images; the best "
                    f"({chosen} of {len(nodes)} convolutions fp32) has {'; '.join(gate.shortfalls(f))}; not written "
                    "(--force writes it)")
        path, f = candidates[chosen]
        out.write_bytes(path.read_bytes())
    layers = [conv_weight[n].removesuffix(".weight") for n in order[:chosen]]
    return Int8Check.of(f, method, weights=weights, fp32_layers=layers, tried=tried)
