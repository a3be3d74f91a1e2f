"""``Classifier``: one object for inference from any file this toolkit reads or writes, on any runtime.

Runtimes (:data:`RUNTIMES`): ``pytorch`` for weights files (``.sqz``, ``.safetensors``, ``.pth``, ``.pt``,
``.net``) and named weight sets; ``onnxruntime``, ``openvino`` (its default precision: bf16 where the CPU has
it) and ``openvino-fp32`` for ``.onnx``; ``executorch`` for ``.pte``; ``litert`` for ``.tflite``. ``auto`` (the
default) picks the fastest runtime installed for the file, measured on this machine (batch-1 median, cached per
file, CPU and thread count) among those that keep the file's precision: it never picks bf16 on its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..common.cpu import cpu_model
from ..common.device import device_kind, resolve_device
from ..common.extras import missing
from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..inference.predict import Prediction, predict
from ..models import InferenceModel, ModelMeta, Preprocessing
from ..weights import load_weights
from .metadata import FileModel, meta_from_properties, native_message
from .ort import INPUT_NAME, OUTPUT_NAME, ort_session

logger = logging.getLogger(__name__)
RUNTIMES = ("auto", "pytorch", "onnxruntime", "openvino", "openvino-fp32", "executorch", "litert")
#: the runtimes that can run each kind of file; the first is the fallback when nothing else is installed
FILE_RUNTIMES = {".onnx": ("onnxruntime", "openvino-fp32", "openvino"), ".pte": ("executorch",), ".tflite": ("litert",)}
#: the extra each runtime needs
RUNTIME_EXTRAS = {"onnxruntime": "deploy", "openvino": "openvino", "openvino-fp32": "openvino", "executorch": "executorch",
                  "litert": "litert"}
AUTO_CANDIDATES = {".onnx": ("onnxruntime", "openvino-fp32")}  # same precision as the file


class OnnxModel(FileModel):
    """An onnxruntime session with the model contract (:class:`~squeezenet.models.InferenceModel`): a ``meta``
    read from the file, and a call from a float batch to logits."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such ONNX file: {path}")
        try:
            self.session = ort_session(path, threads, providers=providers)
        except SqueezeNetError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for malformed files
            raise SqueezeNetError(f"{path}: not a loadable ONNX model ({native_message(exc)})") from None
        self.meta, self.precision = meta_from_properties(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.path = path
        self.check_signature([(i.name, list(i.shape)) for i in self.session.get_inputs()],
                             [(o.name, list(o.shape)) for o in self.session.get_outputs()])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = self.checked_batch(images)
        try:
            logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        except Exception as exc:  # onnxruntime's own types: a graph that loads but cannot run these shapes
            raise SqueezeNetError(f"{self.path}: onnxruntime cannot run it ({native_message(exc)})") from None
        return self.checked_output(logits, len(batch))


def open_runtime(source: str | Path, runtime: str, threads: int | None,
                 providers: Sequence[str] | None = None) -> FileModel:
    """``source`` loaded by ``runtime`` (``onnxruntime``, ``openvino``, ``openvino-fp32``, ``executorch`` or
    ``litert``)."""
    if runtime == "onnxruntime":
        return OnnxModel(source, threads, providers)
    if runtime in ("openvino", "openvino-fp32"):
        from .openvino import OpenVinoModel

        return OpenVinoModel(source, threads, "fp32" if runtime == "openvino-fp32" else "fast")
    if runtime == "litert":
        from .litert import LiteRTModel

        return LiteRTModel(source, threads)
    from .executorch import ExecuTorchModel

    return ExecuTorchModel(source)


def _cache_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "squeezenet" / "runtime-choice.json"


def _file_key(path: Path, threads: int | None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()[:24]}|{cpu_model()}|{os.cpu_count()}|threads={threads or 'default'}"


def median_call_seconds(call: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def choose_runtime(source: str | Path, threads: int | None = None) -> str:
    """The fastest installed runtime for ``source`` that keeps its precision, measured here at batch 1 once and
    remembered (``~/.cache/squeezenet/runtime-choice.json``, keyed by the file's hash, the CPU and ``threads``)."""
    path = Path(source)
    suffix = path.suffix.lower()
    runtimes = FILE_RUNTIMES.get(suffix, ("pytorch",))
    installed = [r for r in runtimes if r == "pytorch" or not missing(RUNTIME_EXTRAS[r])]
    candidates = [r for r in AUTO_CANDIDATES.get(suffix, installed) if r in installed]
    if len(candidates) <= 1:  # nothing to measure; with nothing installed, the loader names the missing extra
        return candidates[0] if candidates else runtimes[0]
    key, cache = _file_key(path, threads), _cache_file()
    try:
        known = json.loads(cache.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    if known.get(key) in candidates:
        return known[key]
    timings = {}
    for runtime in candidates:
        model = open_runtime(path, runtime, threads, None)
        crop = model.meta.preprocessing.crop
        timings[runtime] = median_call_seconds(functools.partial(model, torch.zeros(1, model.meta.config.in_chans, crop, crop)))
    best = min(timings, key=timings.__getitem__)
    logger.info(f"runtime auto: {best} for {path.name} (batch-1 median: "
                + ", ".join(f"{r} {1e3 * t:.1f} ms" for r, t in timings.items()) + ")")
    known[key] = best
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as out:
            out.write_text(json.dumps(known, indent=1))
    except OSError as exc:  # a read-only home only loses the memory of the choice
        logger.warning(f"could not remember the runtime choice in {cache}: {exc.strerror or exc}")
    return best


def load_model(source: str | Path, *, threads: int | None = None, device: str | torch.device | None = None,
               providers: Sequence[str] | None = None, runtime: str = "auto") -> InferenceModel:
    """A model for ``predict``/``evaluate``/``compare`` on ``runtime`` (:data:`RUNTIMES`). ``device`` moves PyTorch
    models (default the CPU) and picks onnxruntime's CUDA provider for ``.onnx`` files; ``providers`` names
    onnxruntime execution providers (default the CPU)."""
    if runtime not in RUNTIMES:
        raise SqueezeNetError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    suffix = Path(str(source)).suffix.lower()
    allowed = FILE_RUNTIMES.get(suffix, ("pytorch",))
    if runtime != "auto" and runtime not in allowed:
        raise SqueezeNetError(f"{source}: runtime {runtime} does not run {suffix or 'these'} files; "
                              f"choose from {', '.join(allowed)}")
    kind = "cpu" if device in (None, "auto") else device_kind(device)
    if providers and suffix != ".onnx":
        raise SqueezeNetError(f"{source}: execution providers are for .onnx files; PyTorch models take a device")
    if providers and runtime not in ("auto", "onnxruntime"):
        raise SqueezeNetError(f"execution providers are onnxruntime's; runtime {runtime} takes none")
    if suffix in FILE_RUNTIMES:
        if kind == "cuda" and suffix == ".onnx" and runtime in ("auto", "onnxruntime"):
            return OnnxModel(source, threads, providers or ["CUDAExecutionProvider"])
        if kind != "cpu":
            raise SqueezeNetError(f"{source}: runs on the CPU here (onnxruntime takes --provider for other devices)")
        if providers:
            return OnnxModel(source, threads, providers)
        if runtime == "auto":
            if not Path(source).is_file():
                raise FileNotFoundError(f"no such file: {source}")
            runtime = choose_runtime(source, threads)
        return open_runtime(source, runtime, threads, None)
    model = load_weights(source)
    return model.to(resolve_device(device)) if device is not None else model


class Classifier:
    """Top-k classification of images from any supported file.

    >>> clf = Classifier.load("model.sqz")          # or .onnx, .safetensors, .pth, .net, a named weight set
    >>> clf.predict(["cat.jpg"], topk=5)[0].top     # [(index, label, probability), ...]
    """

    def __init__(self, model: InferenceModel, source: str):
        self.model, self.source = model, source

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, *, device: str | torch.device | None = None,
             providers: Sequence[str] | None = None, runtime: str = "auto") -> Classifier:
        """``runtime``: one of :data:`RUNTIMES` (``auto``: the fastest installed for the file, measured here);
        ``device`` for PyTorch weights (``cuda``, ``auto``...), ``providers`` for ``.onnx`` files on onnxruntime
        (execution providers, e.g. ``["CUDAExecutionProvider"]``)."""
        return cls(load_model(path, threads=threads, device=device, providers=providers, runtime=runtime), str(path))

    @property
    def meta(self) -> ModelMeta:
        return self.model.meta

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def backend(self) -> str:
        """The runtime and the file's precision, e.g. ``openvino-fp32 (int8)``."""
        model = self.model
        return f"{model.runtime} ({model.precision})" if isinstance(model, FileModel) else "pytorch"

    def predict(self, images: Sequence[str | Path | Image.Image | np.ndarray], topk: int = 5,
                batch_size: int = 32) -> list[Prediction]:
        """Top-k (index, label, probability) per image (file, folder of files, PIL image or uint8 RGB array);
        unreadable files get ``error`` set instead."""
        return predict(self.model, images, topk=topk, batch_size=batch_size)


class ObjectDetector(Classifier):
    """:class:`Classifier`'s counterpart for detectors: boxes, class names and scores from any supported file.

    >>> det = ObjectDetector.load("runs/det/best.safetensors")     # or its .onnx / .pte export
    >>> det.detect(["street.jpg"], threshold=0.3)[0].to_dict()["objects"]   # [{"label", "score", "box"}, ...]
    """

    def __init__(self, model: InferenceModel, source: str):
        if model.meta.task != "detect":
            raise SqueezeNetError(f"{source}: a classifier, not a detector; use Classifier")
        super().__init__(model, source)

    def detect(self, images: Sequence[str | Path], threshold: float = 0.3, batch_size: int = 16) -> list[Any]:
        """One :class:`~squeezenet.inference.detection.Detections` per image file (a folder: every image below
        it): boxes in the image's own pixels, scores >= ``threshold``; unreadable files get ``error`` set."""
        from ..data.images import expand_image_paths
        from ..inference.detection import detect

        return detect(self.model, expand_image_paths(list(images)), threshold=threshold, batch_size=batch_size)

    def predict(self, *args: Any, **kwargs: Any) -> list[Prediction]:
        raise SqueezeNetError("a detector has no top-k classes per image: use detect()")
