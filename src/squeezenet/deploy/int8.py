"""int8 that keeps the model's answers: static QDQ quantization, checked against the fp32 model.

onnxruntime's tools quantize (per-channel int8 weights, uint8 activations, ranges calibrated on unlabelled
images); this module decides *what* to quantize by measurement. The whole-int8 file is tried first; when it
changes more top-1 answers of the fp32 model than ``min_agreement`` allows on the calibration images, the
convolutions whose quantization alone moves the outputs most (KL to fp32, each measured on its own) stay in
fp32, as few of them as reach the target (a doubling search, then bisection). When none does, the file is
refused unless forced: an int8 file that silently changes one answer in ten is worse than none.

Why agreement on the calibration images themselves: the only things fitted to them are two numbers per
activation tensor (its range) and the choice of layers, so the in-sample agreement is close to held-out
(measured in ``docs/deployment.md``); and a held-out split of 60 images could not resolve 0.98 (one image is
1.7 points). Report the final file with ``squeezenet eval --reference`` on other images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import SqueezeNetError
from ..inference.paired import agreement_and_kl

logger = logging.getLogger(__name__)
METHODS = ("minmax", "percentile", "entropy")
SENSITIVITY_IMAGES = 64  # images for ranking layers (the agreement check uses all)
MIN_CALIBRATION = 16


@dataclass
class Int8Check:
    """How an int8 file compares with its fp32 model on the calibration images."""

    agreement: float  # same top-1 class as fp32
    kl: float  # mean KL(fp32 || int8)
    images: int
    method: str  # activation range calibration
    fp32_layers: list[str] = field(default_factory=list)  # convolutions left in fp32 (weight names without .weight)
    tried: list[dict] = field(default_factory=list)  # every candidate measured: fp32 layer count, agreement, KL

    def to_dict(self) -> dict:
        return asdict(self)


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
                        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[self.method],
                        nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only is not None else None,
                        calibration_cache_path=str(self.cache), extra_options={"CalibStridedMinMax": 1})


def quantize_checked(fp32: str | Path, out: str | Path, calibration: torch.Tensor, *, min_agreement: float = 0.98,
                     method: str = "minmax", force: bool = False, threads: int | None = None,
                     progress: Callable[[str], None] | None = None) -> Int8Check:
    """Write to ``out`` the int8 version of the fp32 ONNX file ``fp32`` with the fewest fp32 layers whose top-1
    agreement with ``fp32`` on ``calibration`` (preprocessed images, unlabelled) is at least ``min_agreement``.

    ``SqueezeNetError`` when no choice reaches it, unless ``force`` (then the most faithful file measured is
    written). ``progress`` receives one line per step."""
    from .onnx import INPUT_NAME, ort_session, run_onnx

    if method not in METHODS:
        raise SqueezeNetError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if not 0.0 <= min_agreement <= 1.0:
        raise SqueezeNetError(f"min_agreement={min_agreement} must lie in [0, 1]")
    if len(calibration) < MIN_CALIBRATION:
        raise SqueezeNetError(f"int8 needs at least {MIN_CALIBRATION} calibration images to measure agreement, "
                              f"got {len(calibration)}")
    say = progress or (lambda line: logger.info(line))
    fp32, out = Path(fp32), Path(out)
    reference = torch.from_numpy(run_onnx(ort_session(fp32, threads), calibration))
    weights = conv_weights(fp32)
    nodes = list(weights)
    tried: list[dict] = []

    def measure(path: Path, images: int | None = None) -> tuple[float, float]:
        x = calibration if images is None else calibration[:images]
        got = torch.from_numpy(run_onnx(ort_session(path, threads), x))
        return agreement_and_kl(reference[:len(x)], got)

    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as tmp:
        quantize = _Quantizer(fp32, Path(tmp), calibration, method, INPUT_NAME)
        candidates: dict[int, tuple[Path, float, float]] = {}
        order: list[str] = []

        def candidate(k: int) -> tuple[float, float]:
            path = quantize(exclude=order[:k])
            agreement, kl = measure(path)
            candidates[k] = (path, agreement, kl)
            tried.append({"fp32_layers": k, "agreement": agreement, "kl": kl})
            say(f"int8 with {k} of {len(nodes)} convolutions in fp32: agreement {agreement:.3f}, KL {kl:.4f}")
            return agreement, kl

        if candidate(0)[0] < min_agreement and nodes:
            say(f"ranking the {len(nodes)} convolutions by how much their quantization alone changes the outputs")
            sensitivity = {node: measure(quantize(only=[node]), SENSITIVITY_IMAGES)[1] for node in nodes}
            order = sorted(nodes, key=lambda n: -sensitivity[n])
            low, k = 0, 1
            while k < len(nodes) and candidate(k)[0] < min_agreement:
                low, k = k, min(2 * k, len(nodes))
            if k < len(nodes):  # candidate(k) passed and candidate(low) did not: bisect between them
                high = k
                while high - low > 1:
                    mid = (low + high) // 2
                    if candidate(mid)[0] >= min_agreement:
                        high = mid
                    else:
                        low = mid
        passing = [k for k, (_, a, _) in candidates.items() if a >= min_agreement]
        if passing:
            chosen = min(passing)
        else:
            best = max(candidates, key=lambda k: (candidates[k][1], -candidates[k][2]))
            a, kl = candidates[best][1], candidates[best][2]
            if not force:
                raise SqueezeNetError(
                    f"no int8 file reaches top-1 agreement {min_agreement:g} with fp32 on the {len(calibration)} calibration "
                    f"images (best: {a:.3f}, KL {kl:.4f}, with {best} of {len(nodes)} convolutions in fp32); not written. "
                    "Lower --min-agreement, try another --calibration-method, or --force to write the best one")
            chosen = best
        path, agreement, kl = candidates[chosen]
        out.write_bytes(path.read_bytes())
    layers = [weights[n].removesuffix(".weight") for n in order[:chosen]]
    return Int8Check(agreement, kl, len(calibration), method, layers, tried)
