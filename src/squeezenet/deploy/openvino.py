"""OpenVINO on x86 CPUs: runs our ``.onnx`` files (fp32 and int8 QDQ) directly, with their metadata.

OpenVINO reads ONNX itself and exposes its ``metadata_props`` as ``rt_info["framework"]``, so the file needs no
conversion. Converting to OpenVINO IR (``.xml``/``.bin``) gave the same compiled graph and the same load time
(0.35 s both, measured in ``docs/deployment.md``), so the toolkit ships one file.

Precision: by default OpenVINO runs fp32 graphs in bf16 where the CPU has it (AVX-512 BF16 or AMX): faster, and
it changes answers (1.6% of the published model's top-1 on the 250 samples). ``precision="fp32"`` asks for true
fp32 (``INFERENCE_PRECISION_HINT=f32``); the runtime names ``openvino`` and ``openvino-fp32`` select the two.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..common.extras import require_extra
from ..errors import SqueezeNetError, brief
from ..models import ModelMeta
from .metadata import FileModel, meta_from_properties, native_message

PRECISIONS = ("fast", "fp32")


def import_openvino() -> ModuleType:
    """``openvino``, imported without its telemetry. ``import openvino`` initialises ``openvino_telemetry``: it writes
    a client ID and counters under ``~/intel`` and sends an "import" event to Google Analytics unless the user ran
    ``opt_in_out --opt_out`` (which itself writes ``~/intel/openvino_telemetry``). A toolkit must not phone home or
    leave files where the user did not ask, so the telemetry package is hidden while OpenVINO is imported: OpenVINO
    then takes its own no-op stub (``openvino.tools.ovc.telemetry_stub``), the path it has for installations
    without the package. Other code of the process can still import ``openvino_telemetry`` afterwards."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    hidden = "openvino_telemetry" not in sys.modules
    if hidden:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import fails: ImportError
    try:
        import openvino
    finally:
        if hidden:
            del sys.modules["openvino_telemetry"]
    return openvino


class OpenVinoModel(FileModel):
    """An OpenVINO compiled model with the model contract (:class:`~squeezenet.models.InferenceModel`)."""

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "fast"):
        if precision not in PRECISIONS:
            raise SqueezeNetError(f"OpenVINO precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        require_extra("openvino", "running files with OpenVINO")
        ov = import_openvino()

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        onnx_file = path.suffix == ".onnx"
        if onnx_file:  # our metadata and the graph are checked before OpenVINO allocates anything for the file
            self.meta, self.precision = checked_onnx_meta(path)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line C++ messages
            raise SqueezeNetError(f"{path}: OpenVINO cannot read it ({native_message(exc)})") from None
        if not onnx_file:  # OpenVINO IR: the ONNX properties travel in rt_info["framework"]
            info = model.get_rt_info()
            props = info["framework"] if "framework" in list(info.keys()) else {}
            props = props.astype(dict) if hasattr(props, "astype") else props  # an OVAny in some versions, a dict in others
            self.meta, self.precision = meta_from_properties(
                {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in props.items()}, str(path))
        self.path = path
        self.check_signature([(i.get_any_name(), _dims(i)) for i in model.inputs],
                             [(o.get_any_name(), _dims(o)) for o in model.outputs])
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise SqueezeNetError(f"{path}: OpenVINO cannot compile it ({native_message(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.runtime = "openvino-fp32" if precision == "fp32" else "openvino"
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.compute_precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # "f32", "bf16"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = self.checked_batch(images)
        try:
            logits = self.request.infer({0: batch})[0]
        except RuntimeError as exc:
            raise SqueezeNetError(f"{self.path}: OpenVINO cannot run it ({native_message(exc)})") from None
        return self.checked_output(np.array(logits), len(batch))

    def kernels(self) -> Counter[str]:
        """How many operations ran on each oneDNN kernel (``brgconv_avx512_1x1_I8``...): which ISA was used.
        Known after the first call."""
        return Counter(str(op.get_rt_info()["primitiveType"].astype(str))
                       for op in self.compiled.get_runtime_model().get_ordered_ops())


def checked_onnx_meta(path: Path) -> tuple[ModelMeta, str]:
    """The model contract of an ONNX file read with ``onnx`` before OpenVINO sees the file: its metadata first, then
    its graph against the operator schemas with shape inference. OpenVINO's ONNX frontend trusts the graph: a node
    with the wrong number of inputs (a ReLU renamed Conv) killed the process with a segmentation fault, and a 4 MB
    metadata property ran it out of memory under an address-space limit (both found by ``tools/fuzz_readers.py``)."""
    import onnx
    from google.protobuf.message import DecodeError, EncodeError  # type: ignore[import-untyped]

    def refuse(exc: Exception) -> SqueezeNetError:
        return SqueezeNetError(f"{path}: not a valid ONNX graph ({native_message(exc)})")

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, UnicodeDecodeError) as exc:
        raise refuse(exc) from None
    checked = meta_from_properties({p.key: p.value for p in proto.metadata_props}, str(path))
    try:
        _load_external_data(proto, path)  # shape inference reads the weights; OpenVINO will load them anyway
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, EncodeError, UnicodeDecodeError) as exc:
        raise refuse(exc) from None  # EncodeError: strings that are not UTF-8 (the proto cannot be written back)
    return checked


MAX_EXTERNAL_BYTES = 1 << 30  # weights beside an .onnx file: 200M float32 parameters (the architecture bound) fit


def _load_external_data(proto: Any, path: Path) -> None:
    """Weights stored as external data, read from beside the model file (never the working directory); the files
    they name must lie in the model's folder (onnx refuses other paths) and hold at most ``MAX_EXTERNAL_BYTES``,
    checked before anything is read."""
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    external = [t for t in proto.graph.initializer if uses_external_data(t)]
    if not external:
        return
    folder = path.resolve().parent
    locations = {ExternalDataInfo(t).location for t in external}
    sizes = [(folder / name).stat().st_size for name in locations if (folder / name).is_file()]
    if len(sizes) < len(locations):
        raise SqueezeNetError(f"{path}: its weights are stored beside it in {brief(sorted(locations)[0], 80)}, "
                              "which is not there")
    if sum(sizes) > MAX_EXTERNAL_BYTES:
        raise SqueezeNetError(f"{path}: {sum(sizes):,} bytes of external weights, more than any model this toolkit "
                              "builds")
    load_external_data_for_model(proto, str(folder))


def _dims(port: object) -> list:
    """A port's dims, ``None`` where dynamic."""
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]  # type: ignore[attr-defined]
