"""``squeezenet bench``: every deployable form of a model side by side on this machine.

For PyTorch eager fp32, ONNX fp32 and ONNX int8 (onnxruntime, static QDQ) of the same weights, plus
AlexNet fp32 as the paper's baseline: file size, top-1/top-5 on an image folder, batch-1 latency
(median ms) and batch-32 throughput (median img/s), all with the same number of threads.
"""

from __future__ import annotations

import copy
import functools
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..common.device import resolve_device
from ..inference.preloaded import load_images
from ..weights import load_weights
from .onnx import export_onnx, ort_session, run_onnx

logger = logging.getLogger(__name__)


@dataclass
class BenchRow:
    format: str
    file: str
    size_bytes: int
    top1: float | None
    top5: float | None
    latency_ms: float  # batch 1, median
    throughput: float  # images/s at batch 32, median

    def to_dict(self) -> dict:
        return asdict(self)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return float((top5[:, 0] == labels).float().mean()), float((top5 == labels[:, None]).any(1).float().mean())


def _synced(out: torch.Tensor) -> torch.Tensor:
    """Wait for the GPU, so that a timing measures the work and not its launch."""
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    return out


def interleaved_medians(runners: dict[str, Callable[[], object]], repeats: int, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each runner, timed in alternating rounds so that a noisy phase of the
    machine hits every format alike (these 2-core machines vary by 2x between minutes). Each runtime keeps
    its default thread behaviour (onnxruntime's workers spin between ops), with a pause between blocks so
    one runtime's spinning threads do not slow the next one down."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():
        for _ in range(3):
            fn()  # warm-up: allocations, kernel selection
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, fn in runners.items():
            time.sleep(0.2)  # let the previous runtime's worker threads stop spinning before timing the next
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def bench(weights: str | Path, data: str | Path, work_dir: str | Path, *, calibration: str | Path | None = None,
          calibration_images: int = 64, threads: int = 2, repeats: int = 50, alexnet: bool = True, limit: int | None = None,
          device: str | None = None) -> list[BenchRow]:
    """Measure the formats; ONNX files are written to ``work_dir`` (kept: they are the deployable artefacts).
    ``device`` runs the PyTorch rows there (``cuda``...); onnxruntime rows run on the CPU."""
    torch.set_num_threads(threads)
    model = load_weights(weights).eval()
    dev = resolve_device(device or "cpu")
    eager = model if dev.type == "cpu" else copy.deepcopy(model).to(dev)
    eager_name = "pytorch fp32" if dev.type == "cpu" else f"pytorch fp32 ({dev})"
    images, labels = load_images(model, data, limit)
    calib = load_images(model, calibration, calibration_images)[0] if calibration else images[:calibration_images]
    work = Path(work_dir)
    one = images[:1]
    batch = images[:32] if len(images) >= 32 else images[:1].repeat(32, 1, 1, 1)
    weights_path = Path(str(weights))
    rows: list[BenchRow] = []
    single: dict[str, Callable[[], object]] = {}
    batched: dict[str, Callable[[], object]] = {}

    with torch.inference_mode():
        logits = torch.cat([model(images[i:i + 50]) for i in range(0, len(images), 50)])
    rows.append(BenchRow(eager_name, weights_path.name, weights_path.stat().st_size if weights_path.is_file() else 0,
                         *_accuracy(logits, labels), 0.0, 0.0))
    one_d, batch_d = one.to(dev), batch.to(dev)
    single[eager_name], batched[eager_name] = (lambda: _synced(eager(one_d))), (lambda: _synced(eager(batch_d)))
    for name, int8 in (("onnx fp32", False), ("onnx int8", True)):
        logger.info(f"exporting {name}")
        path = work / f"{weights_path.stem}{'-int8' if int8 else ''}.onnx"
        export_onnx(model, path, check_images=images[:64], int8=int8, calibration=calib if int8 else None)
        session = ort_session(path, threads)
        top1, top5 = _accuracy(torch.from_numpy(run_onnx(session, images)), labels)
        rows.append(BenchRow(name, path.name, path.stat().st_size, top1, top5, 0.0, 0.0))
        x1, x32 = one.numpy(), batch.numpy()
        single[name] = functools.partial(session.run, None, {"image": x1})
        batched[name] = functools.partial(session.run, None, {"image": x32})
    if alexnet:
        from ..models import create_model

        net = create_model("alexnet").eval().to(dev)  # the paper's baseline architecture; its weights are not needed for speed
        rows.append(BenchRow("alexnet fp32 (pytorch)", "(architecture only)", 4 * sum(p.numel() for p in net.parameters()),
                             None, None, 0.0, 0.0))
        a1, a32 = torch.randn(1, 3, 224, 224, device=dev), torch.randn(32, 3, 224, 224, device=dev)
        single[rows[-1].format], batched[rows[-1].format] = (lambda: _synced(net(a1))), (lambda: _synced(net(a32)))
    logger.info(f"timing batch 1 ({repeats} runs each, interleaved) and batch 32")
    with torch.inference_mode():
        latency = interleaved_medians(single, repeats)
        per_batch = interleaved_medians(batched, max(5, repeats // 5))
    for row in rows:
        row.latency_ms = 1e3 * latency[row.format]
        row.throughput = 32 / per_batch[row.format]
    return rows
