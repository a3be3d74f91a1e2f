"""``squeezenet bench``: every runtime x precision of one model, side by side on this machine.

Rows: PyTorch eager fp32; onnxruntime fp32/int8; OpenVINO true fp32, its default (bf16 where the CPU has it)
and int8; ExecuTorch (XNNPACK) fp32/int8 — each runtime present only when its extra is installed — plus
AlexNet fp32 as the paper's baseline. Columns: the file and what a device downloads (gzip and brotli), load
time and peak RSS of a process that imports only that runtime (no torch, except where the runtime needs it),
batch-1 median latency, batch-32 median throughput and its ratio to onnxruntime fp32, the fraction of this
CPU's measured peak (:mod:`.peak`) and the kernels the runtime reported, and top-1 agreement/KL with the fp32
PyTorch model (plus top-1/top-5 when the images are labelled).

Timings are interleaved in rounds (these 2-core machines vary 2x between minutes) and PyTorch runs with passive
OpenMP waiting (spin-waiting made eager 6x slower on a busy machine): the CLI sets ``OMP_WAIT_POLICY=PASSIVE``
before torch loads, and :func:`bench` warns when it was not set.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..common.cpu import cpu_summary
from ..common.device import resolve_device
from ..common.extras import missing
from ..errors import SqueezeNetError
from ..inference.fidelity import DEFAULT_GATE, fidelity
from ..inference.preloaded import load_images, unlabelled_images
from ..models import InferenceModel
from ..weights import load_weights
from .metadata import FileModel
from .onnx import export_onnx
from .openvino import OpenVinoModel
from .peak import gemm_rate, measured_peaks
from .runtime import open_runtime

logger = logging.getLogger(__name__)
BENCH_RUNTIMES = ("pytorch", "onnxruntime", "openvino", "executorch", "litert")  # each gives the rows of its precisions


@dataclass
class BenchRow:
    runtime: str
    precision: str  # of the file: fp32, int8; "bf16" for OpenVINO's default on an fp32 file
    file: str
    size_bytes: int
    gzip_bytes: int | None = None
    brotli_bytes: int | None = None
    load_ms: float | None = None  # create the session / compile / load the program, in a fresh process
    peak_rss_mb: float | None = None  # that process, after one batch-32 call
    latency_ms: float = 0.0  # batch 1, median
    throughput: float = 0.0  # images/s at batch 32, median
    vs_onnxruntime: float | None = None  # batch-32 throughput / onnxruntime fp32's
    of_peak: float | None = None  # achieved (dense) FLOP/s at batch 32 / the measured peak of its precision
    kernels: str = ""  # what the runtime reports it ran (OpenVINO's oneDNN kernels, PyTorch's CPU capability)
    agreement: float | None = None  # top-1 agreement with PyTorch fp32
    kl: float | None = None
    snr_db: float | None = None  # input-dependent logit SNR against PyTorch fp32 (squeezenet.inference.fidelity)
    top1: float | None = None
    top5: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchResult:
    cpu: str
    threads: int
    images: int
    peaks: dict[str, float]  # measured: fp32 FLOP/s, int8 OP/s (AVX-512 VNNI)
    omp_wait_policy: str
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "threads": self.threads, "images": self.images, "peaks": self.peaks,
                "omp_wait_policy": self.omp_wait_policy, "rows": [r.to_dict() for r in self.rows]}


def transfer_sizes(path: Path, brotli_quality: int = 11) -> tuple[int | None, int | None]:
    """gzip -9 and brotli sizes of a file: what a device downloads over HTTP compression (quality 11: what servers
    precompress static files with; seconds on a file of megabytes)."""
    if not path.is_file():
        return None, None
    data = path.read_bytes()
    try:
        import brotli
    except ImportError:
        return len(gzip.compress(data, 9, mtime=0)), None
    return len(gzip.compress(data, 9, mtime=0)), len(brotli.compress(data, quality=brotli_quality))


def _synced(out: torch.Tensor) -> torch.Tensor:
    """Wait for the GPU, so that a timing measures the work and not its launch."""
    if out.is_cuda:
        torch.cuda.synchronize(out.device)
    return out


def interleaved_medians(runners: dict[str, Callable[[], object]], repeats: int, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each runner, timed in alternating rounds so that a noisy phase of the
    machine hits every runtime alike. Each runtime keeps its default thread behaviour (onnxruntime's workers
    spin between ops), with a pause between blocks so one runtime's spinning threads do not slow the next."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for fn in runners.values():
        for _ in range(3):
            fn()  # warm-up: allocations, kernel selection
    rounds = max(1, min(rounds, repeats))  # never more samples than asked for (3 repeats were 5 rounds of 1)
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, fn in runners.items():
            time.sleep(0.2)
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def runtime_only(runtime: str, path: Path, threads: int, shape: list[int]) -> tuple[float | None, float | None]:
    """(load ms, peak RSS MB) of a fresh process running ``path`` on ``runtime`` once; (None, None) if it fails."""
    if sys.platform == "win32":  # the resource module is POSIX
        return None, None
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    probe = Path(__file__).with_name("probe")  # run by path: the runtime alone is imported (see deploy/probe)
    run = subprocess.run([sys.executable, str(probe), runtime, str(path), str(threads), json.dumps(shape)],
                         capture_output=True, text=True, env=env, timeout=600)
    try:
        out = json.loads(run.stdout.strip().splitlines()[-1])
        return float(out["load_ms"]), float(out["peak_rss_mb"])
    except (IndexError, ValueError, KeyError):
        logger.warning(f"could not measure {runtime} in a separate process: {run.stderr.strip()[-200:]}")
        return None, None


def _kernels(model: InferenceModel, runtime: str) -> str:
    if isinstance(model, OpenVinoModel):
        counts = model.kernels()
        convs = {k: v for k, v in counts.items() if "conv" in k}
        return ", ".join(f"{k} x{v}" for k, v in sorted(convs.items(), key=lambda kv: -kv[1])[:2])
    if runtime == "pytorch":
        return f"ATen {torch.backends.cpu.get_cpu_capability()}"
    return {"onnxruntime": "MLAS (not reported)", "executorch": "XNNPACK (not reported)",
            "litert": "XNNPACK (not reported)"}.get(runtime, "")


def _dense_flops(model: InferenceModel, x: torch.Tensor) -> float | None:
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(model, torch.nn.Module):
        return None
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return float(counter.get_total_flops())


def bench(weights: str | Path, data: str | Path, work_dir: str | Path, *, calibration: str | Path | None = None,
          calibration_images: int = 250, threads: int = 2, repeats: int = 50, alexnet: bool = True,
          limit: int | None = None, runtimes: list[str] | None = None, subprocesses: bool = True,
          device: str | None = None, progress: Callable[[str], None] | None = None,
          brotli_quality: int = 11) -> BenchResult:
    """Export ``weights`` to every installed runtime in ``work_dir`` (kept: they are the deployable artefacts; int8
    files are calibrated on ``calibration``, default 64 of ``data``, and written even when they fail the int8 gate:
    the table shows it) and measure each. ``runtimes`` limits the runtimes (default: all installed). ``device``
    (``cuda``...) adds a PyTorch row on that device."""
    say = progress or (lambda line: logger.info(line))
    policy = os.environ.get("OMP_WAIT_POLICY", "")
    if policy.upper() != "PASSIVE":
        logger.warning("OMP_WAIT_POLICY is not PASSIVE: PyTorch's OpenMP threads spin between ops, which inflates "
                       "every 'vs PyTorch' ratio on a busy machine (the CLI sets it)")
    torch.set_num_threads(threads)
    model = load_weights(weights).eval()
    images, labels = load_images(model, data, limit)
    labelled = bool(labels.numel()) and bool((labels >= 0).all())
    calib = unlabelled_images(model.meta, calibration, calibration_images) if calibration else images[:64]
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    weights_path = Path(str(weights))
    stem = weights_path.stem if weights_path.suffix else str(weights).replace("/", "_")
    installed = {"onnxruntime": not missing("deploy"), "openvino": not missing("openvino"),
                 "executorch": not missing("executorch"), "litert": not missing("litert")}
    wanted = set(runtimes or BENCH_RUNTIMES)
    unknown = wanted - set(BENCH_RUNTIMES)
    if unknown:
        raise SqueezeNetError(f"unknown runtime(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCH_RUNTIMES)}")

    files: dict[str, Path] = {}
    if installed["onnxruntime"] and wanted & {"onnxruntime", "openvino"}:
        say("exporting ONNX fp32")
        files["onnx fp32"] = work / f"{stem}.onnx"
        export_onnx(model, files["onnx fp32"], check_images=images[:16], threads=threads)
        say(f"quantizing ONNX int8 on {len(calib)} calibration images")
        files["onnx int8"] = work / f"{stem}-int8.onnx"
        quality = export_onnx(model, files["onnx int8"], check_images=images[:16], int8=True, calibration=calib,
                              force=True, threads=threads).int8
        if quality is not None and not DEFAULT_GATE.passes(quality):
            logger.warning(f"the int8 ONNX file fails the export gate ({DEFAULT_GATE.describe()}) on the calibration "
                           f"images: agreement {quality.agreement:.3f}, logit SNR {quality.snr_db:.1f} dB; written for "
                           "the benchmark")
    if installed["executorch"] and "executorch" in wanted:
        from .executorch import export_executorch

        say("exporting ExecuTorch fp32 and int8")
        files["pte fp32"], files["pte int8"] = work / f"{stem}.pte", work / f"{stem}-int8.pte"
        export_executorch(model, files["pte fp32"], check_images=images[:8])
        export_executorch(model, files["pte int8"], check_images=images[:8], int8=True, calibration=calib, force=True)

    if installed["litert"] and "litert" in wanted:
        from .litert import export_litert

        say("exporting LiteRT fp32 and int8")
        files["tflite fp32"], files["tflite int8"] = work / f"{stem}.tflite", work / f"{stem}-int8.tflite"
        export_litert(model, files["tflite fp32"], check_images=images[:8])
        export_litert(model, files["tflite int8"], check_images=images[:8], int8=True, calibration=calib, force=True)

    plan: list[tuple[str, str, Path | None]] = []  # (runtime, precision label, file)
    if "pytorch" in wanted:
        plan.append(("pytorch", "fp32", weights_path))
    if "onnx fp32" in files and "onnxruntime" in wanted:
        plan += [("onnxruntime", "fp32", files["onnx fp32"]), ("onnxruntime", "int8", files["onnx int8"])]
    if "onnx fp32" in files and installed["openvino"] and "openvino" in wanted:
        plan += [("openvino-fp32", "fp32", files["onnx fp32"]), ("openvino", "fp32", files["onnx fp32"]),
                 ("openvino", "int8", files["onnx int8"])]
    if "pte fp32" in files:
        plan += [("executorch", "fp32", files["pte fp32"]), ("executorch", "int8", files["pte int8"])]
    if "tflite fp32" in files:
        plan += [("litert", "fp32", files["tflite fp32"]), ("litert", "int8", files["tflite int8"])]

    with torch.inference_mode():
        reference = torch.cat([model(images[i:i + 50]) for i in range(0, len(images), 50)])
    one = images[:1]
    batch = images[:32] if len(images) >= 32 else images[:1].repeat(32, 1, 1, 1)
    peaks = measured_peaks(threads) or {"fp32": gemm_rate(threads)}
    flops = _dense_flops(model, one)
    rows: list[BenchRow] = []
    single: dict[str, Callable[[], object]] = {}
    batched: dict[str, Callable[[], object]] = {}
    for runtime, precision, path in plan:
        loaded: InferenceModel = model if runtime == "pytorch" or path is None else open_runtime(path, runtime, threads)
        if isinstance(loaded, OpenVinoModel) and runtime == "openvino" and precision == "fp32":
            precision = loaded.compute_precision.replace("f32", "fp32")
        name = f"{runtime} {precision}"
        say(f"measuring {name}")
        size = path.stat().st_size if path is not None and path.is_file() else 0
        sizes = transfer_sizes(path, brotli_quality) if path else (None, None)
        row = BenchRow(runtime, precision, path.name if path else "", size, *sizes)
        with torch.inference_mode():
            logits = torch.cat([loaded(images[i:i + 32]) for i in range(0, len(images), 32)])
        f = fidelity(reference, logits)
        row.agreement, row.kl, row.snr_db = f.agreement, f.kl, f.snr_db
        if labelled:
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            row.top1 = float((top5[:, 0] == labels).float().mean())
            row.top5 = float((top5 == labels[:, None]).any(1).float().mean())
        with torch.inference_mode():
            loaded(one)
        row.kernels = _kernels(loaded, runtime)
        if subprocesses and path is not None and path.is_file():  # (a named weight set is not a file to load alone)
            fixed = loaded.batch if isinstance(loaded, FileModel) else None
            shape = [fixed, *one.shape[1:]] if fixed is not None else list(batch.shape)
            row.load_ms, row.peak_rss_mb = runtime_only(runtime, path, threads, shape)
        single[name] = functools.partial(loaded, one)
        batched[name] = functools.partial(loaded, batch)
        rows.append(row)
    if device not in (None, "cpu"):
        import copy

        dev = resolve_device(device)
        on_device = copy.deepcopy(model).to(dev)
        one_d, batch_d = one.to(dev), batch.to(dev)
        with torch.inference_mode():
            logits = torch.cat([on_device(images[i:i + 32].to(dev)).cpu() for i in range(0, len(images), 32)])
        rows.append(BenchRow("pytorch", f"fp32 ({dev})", weights_path.name, rows[0].size_bytes if rows else 0,
                             kernels=str(dev)))
        f = fidelity(reference, logits)
        rows[-1].agreement, rows[-1].kl, rows[-1].snr_db = f.agreement, f.kl, f.snr_db
        single[f"pytorch {dev}"] = lambda: _synced(on_device(one_d))
        batched[f"pytorch {dev}"] = lambda: _synced(on_device(batch_d))
    if alexnet:
        from ..models import create_model

        net = create_model("alexnet").eval()  # the paper's baseline architecture; its weights are not needed for speed
        a1, a32 = torch.randn(1, 3, 224, 224), torch.randn(32, 3, 224, 224)
        rows.append(BenchRow("pytorch", "fp32", "AlexNet (architecture only)", 4 * sum(p.numel() for p in net.parameters())))
        single["pytorch fp32 alexnet"], batched["pytorch fp32 alexnet"] = (lambda: net(a1)), (lambda: net(a32))
    say(f"timing batch 1 ({repeats} runs each, interleaved) and batch 32")
    with torch.inference_mode():
        latency = interleaved_medians(single, repeats)
        per_batch = interleaved_medians(batched, max(5, repeats // 5))
    names = list(single)
    for row, name in zip(rows, names):
        row.latency_ms = 1e3 * latency[name]
        row.throughput = 32 / per_batch[name]
        if flops and not name.endswith("alexnet"):
            peak = peaks.get("int8" if row.precision == "int8" else "fp32")
            row.of_peak = flops * row.throughput / peak if peak else None
    base = next((r.throughput for r in rows if (r.runtime, r.precision) == ("onnxruntime", "fp32")), None)
    for row in rows:
        row.vs_onnxruntime = row.throughput / base if base else None
    return BenchResult(cpu_summary(), threads, len(images), peaks, policy or "(unset)", rows)
