"""LiteRT (formerly TensorFlow Lite) ``.tflite`` files: Android's own runtime, and Coral/MCU boards.

Export converts the network with ``litert-torch`` (torch.export -> StableHLO -> TFLite flatbuffer) at batch 1, the
shape apps run; the interpreter resizes the input for larger batches (every op of our networks takes any batch,
checked at export on a batch of several images). int8 is static post-training quantization through PT2E with
LiteRT's own quantizer (per-channel symmetric int8 weights, per-tensor int8 activations, calibrated on the given
images) and judged, like every int8 file here, against fp32 by :data:`~squeezenet.inference.fidelity.DEFAULT_GATE`.

The model's properties (:func:`~squeezenet.deploy.metadata.model_properties`: preprocessing, classes, config)
travel inside the file as a TFLite metadata entry named ``squeezenet`` holding their JSON: the flatbuffer's own
mechanism, which any TFLite reader lists (``Model.metadata``) and the interpreter ignores.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..common.extras import require_extra
from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError
from ..inference.fidelity import DEFAULT_GATE, FidelityGate
from ..models import Network
from .checked import export_target, write_checked
from .metadata import FileModel, meta_from_properties, model_properties, native_message
from .native import native_stderr_silenced
from .onnx import ExportCheck
from .pt2e import calibrated, int8_weights_of

METADATA_NAME = "squeezenet"
MAX_METADATA_BYTES = 1 << 20  # our properties are a few KB; a larger entry is not ours


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a progress tree to stdout (which would corrupt ``--json`` output) unless told not to, and
    its converter's C++ logs op counts on stderr."""
    before = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        with native_stderr_silenced():
            yield
    finally:
        if before is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = before


def _with_metadata(flatbuffer: bytes, properties: dict[str, str]) -> bytes:
    """The TFLite model with a ``squeezenet`` metadata entry (replacing one already there)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(properties, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_properties(data: bytes, where: str) -> dict[str, str]:
    """The ``squeezenet`` metadata entry of a TFLite flatbuffer; ``SqueezeNetError`` naming ``where`` when the file
    is not a TFLite model or holds no such entry."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError("no TFL3 identifier")
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() != METADATA_NAME.encode():
                continue
            buffer = model.Buffers(entry.Buffer())
            raw = buffer.DataAsNumpy() if buffer is not None and buffer.DataLength() else None
            if raw is None or not 0 < raw.size <= MAX_METADATA_BYTES:
                raise ValueError("an empty or oversized metadata entry")
            props = parse_json(raw.tobytes().decode("utf-8"), f"{where}: metadata")
            if not isinstance(props, dict):
                raise ValueError("metadata is not a JSON object")
            return {str(k): str(v) for k, v in props.items()}
    except SqueezeNetError:
        raise
    except Exception as exc:  # the flatbuffer reader raises whatever a damaged offset leads to
        raise SqueezeNetError(f"{where}: not a loadable LiteRT model ({native_message(exc)})") from None
    raise SqueezeNetError(f"{where}: a LiteRT model without squeezenet metadata (export it with `squeezenet export "
                          "-o model.tflite`); its preprocessing is unknown, so it is not used")


class LiteRTModel(FileModel):
    """A ``.tflite`` file in LiteRT's interpreter (``ai-edge-litert``, XNNPACK on CPU), with the model contract."""

    runtime = "litert"

    def __init__(self, path: str | Path, threads: int | None = None):
        require_extra("litert", "running .tflite files")
        from ai_edge_litert.interpreter import Interpreter

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        data = path.read_bytes()  # read once: the metadata from it, and the interpreter built on it
        self.meta, self.precision = meta_from_properties(read_properties(data, str(path)), str(path))
        try:
            with native_stderr_silenced():  # ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
                self.interpreter = Interpreter(model_content=data, num_threads=threads or 1)
            inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError with C++ messages
            raise SqueezeNetError(f"{path}: not a loadable LiteRT model ({native_message(exc)})") from None
        if len(inputs) != 1 or len(outputs) != 1:
            raise SqueezeNetError(f"{path}: expected one input and one output, the model has {len(inputs)} and "
                                  f"{len(outputs)}")
        self.path, self._input, self._output, self._batch = path, inputs[0]["index"], outputs[0]["index"], -1
        # an int8 file takes and gives int8 tensors (TFLite's full-integer models): their scale and zero point
        self._in_q = _quantization(inputs[0], path)
        self._out_q = _quantization(outputs[0], path)
        self.check_signature([("image", [None, *inputs[0]["shape"][1:].tolist()])],
                             [("logits", [None, *outputs[0]["shape"][1:].tolist()])])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = self.checked_batch(images)
        try:
            if len(x) != self._batch:  # allocating is cheap next to a forward pass, but not free: once per size
                with native_stderr_silenced():
                    self.interpreter.resize_tensor_input(self._input, list(x.shape))
                    self.interpreter.allocate_tensors()
                self._batch = len(x)
            if self._in_q is not None:
                scale, zero, dtype = self._in_q
                info = np.iinfo(dtype)
                x = np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(dtype)
            self.interpreter.set_tensor(self._input, x)
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self._output)
        except (ValueError, RuntimeError) as exc:
            raise SqueezeNetError(f"{self.path}: LiteRT cannot run it ({native_message(exc)})") from None
        if self._out_q is not None:
            scale, zero, _ = self._out_q
            out = (out.astype(np.float32) - zero) * scale
        return self.checked_output(out.astype(np.float32, copy=True), len(x))


def _quantization(detail: dict, path: Path) -> tuple[float, int, type] | None:
    """(scale, zero point, dtype) of an integer input or output; None for a float one."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return None
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype not in (np.int8, np.uint8) or not scale > 0:
        raise SqueezeNetError(f"{path}: an input or output of type {np.dtype(dtype).name} without a quantization scale; "
                              "squeezenet's LiteRT files take float32 or quantized int8")
    return float(scale), int(zero), dtype


def _quantized(model: Network, example: torch.Tensor, calibration: torch.Tensor):
    """``model`` through PT2E with LiteRT's quantizer (static per-channel int8), calibrated on ``calibration``."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    inner = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = calibrated(model, example, calibration, inner)  # (captured at batch 1, the shape it is converted at)
    return convert_pt2e(prepared, fold_quantize=False), QuantConfig(pt2e_quantizer=inner)


def export_litert(model: Network, path: str | Path, *, check_images: torch.Tensor, int8: bool = False,
                  calibration: torch.Tensor | None = None, gate: FidelityGate = DEFAULT_GATE, force: bool = False,
                  tolerance: float = 1e-3, int8_weights: str = "gptq") -> ExportCheck:
    """Write ``model`` as a LiteRT ``.tflite`` file with its metadata inside, checked before it is kept: fp32 within
    ``tolerance`` of PyTorch on ``check_images`` (a batch of several: the file is converted at batch 1 and must run
    any); int8 (calibrated on ``calibration``, weights rounded by ``int8_weights``:
    :func:`~squeezenet.deploy.pt2e.int8_weights_of`; the logits kept float) passing ``gate`` against fp32 on the
    calibration images unless ``force``."""
    path = export_target(model, path, ".tflite", "LiteRT models", int8, calibration)
    require_extra("litert", "LiteRT export")
    model = model.eval()
    pre = model.meta.preprocessing
    example = torch.zeros(1, model.meta.config.in_chans, pre.crop, pre.crop)
    with torch.no_grad(), _quiet_converter():
        import litert_torch  # (its import logs absl and oneDNN notices on stderr)

        if int8:
            graph, config = _quantized(int8_weights_of(model, calibration, int8_weights),  # type: ignore[arg-type]
                                       example, calibration)  # type: ignore[arg-type]
            converted = litert_torch.convert(graph, (example,), quant_config=config)
        else:
            converted = litert_torch.convert(model, (example,))
        data = _with_metadata(converted.model_content(), model_properties(model, "int8" if int8 else "fp32",
                                                                          runtime="litert"))
    return write_checked(data, path, model, LiteRTModel, check_images=check_images,
                         calibration=calibration if int8 else None, gate=gate, force=force, tolerance=tolerance,
                         what="the LiteRT model",
                         method="histogram (LiteRT PT2EQuantizer), float logits", weights=int8_weights)
