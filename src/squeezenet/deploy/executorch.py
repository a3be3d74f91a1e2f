"""ExecuTorch with the XNNPACK delegate: ``.pte`` programs for ARM phones and boards (and x86), fp32 and int8.

The model's metadata (the same properties as an ONNX file's, :mod:`squeezenet.deploy.metadata`) is embedded
in the program as a constant method ``squeezenet_metadata`` returning a JSON string: one file, readable by
any ExecuTorch runtime (``program.load_method("squeezenet_metadata").execute([])``), no sidecar to lose.

XNNPACK delegates static shapes only: exported with a dynamic batch, the published model ran undelegated at
132 ms per image instead of 6.7 ms (measured in ``docs/deployment.md``). So a program has one batch size
(``batch``, default 1, stored in the metadata) and :class:`ExecuTorchModel` feeds larger batches in chunks.

int8 follows the PT2E flow ExecuTorch documents (``XNNPACKQuantizer``, symmetric per-channel weights, static
activations calibrated on unlabelled images) and is checked like ONNX int8: refused below its gate (agreement and logit SNR)
against the fp32 model on the calibration images unless forced.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..common.extras import require_extra
from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError
from ..inference.fidelity import DEFAULT_GATE, FidelityGate
from ..models import Network
from .checked import export_target, write_checked
from .metadata import FileModel, meta_from_properties, model_properties
from .native import native_stderr_silenced
from .onnx import ExportCheck
from .pt2e import calibrated, int8_weights_of

METADATA_METHOD = "squeezenet_metadata"
MAX_BATCH = 256
# torchao registers an Enum with torch's pytree on import and torch warns about it on every command
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def _lower(model: Network, example: torch.Tensor, properties: dict[str, str]) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(model, (example,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                          constant_methods={METADATA_METHOD: json.dumps(properties)})
    return bytes(lowered.to_executorch().buffer)


def _quantized(model: Network, example: torch.Tensor, calibration: torch.Tensor) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return convert_pt2e(calibrated(model, example, calibration, quantizer))


def export_executorch(model: Network, path: str | Path, *, check_images: torch.Tensor, int8: bool = False,
                      calibration: torch.Tensor | None = None, batch: int = 1, gate: FidelityGate = DEFAULT_GATE,
                      force: bool = False, tolerance: float = 1e-3, int8_weights: str = "gptq") -> ExportCheck:
    """Write ``model`` as an ExecuTorch program for ``batch`` images at a time, checked before it is kept:
    fp32 within ``tolerance`` of PyTorch on ``check_images``; int8 (calibrated on ``calibration``, weights rounded
    by ``int8_weights``: :func:`~squeezenet.deploy.pt2e.int8_weights_of`; the logits kept float) passing ``gate``
    (top-1 agreement and logit SNR) against fp32 on the calibration images unless ``force``."""
    if not 1 <= batch <= MAX_BATCH:
        raise SqueezeNetError(f"batch={batch}: choose 1 to {MAX_BATCH}")
    path = export_target(model, path, ".pte", "ExecuTorch programs", int8, calibration, batch)
    require_extra("executorch", "ExecuTorch export")
    model = model.eval()
    pre = model.meta.preprocessing
    example = torch.zeros(batch, model.meta.config.in_chans, pre.crop, pre.crop)
    properties = model_properties(model, "int8" if int8 else "fp32", batch=str(batch), runtime="executorch-xnnpack")
    with torch.no_grad():
        graph = _quantized(int8_weights_of(model, calibration, int8_weights), example,  # type: ignore[arg-type]
                           calibration) if int8 else model  # type: ignore[arg-type]
        data = _lower(graph, example, properties)  # type: ignore[arg-type]
    return write_checked(data, path, model, ExecuTorchModel, check_images=check_images,
                         calibration=calibration if int8 else None, gate=gate, force=force, tolerance=tolerance,
                         what="the ExecuTorch program",
                         method="histogram (XNNPACKQuantizer), float logits", weights=int8_weights)


class ExecuTorchModel(FileModel):
    """An ExecuTorch program with the model contract (:class:`~squeezenet.models.InferenceModel`); its ``batch``
    is fixed at export."""

    runtime = "executorch"

    def __init__(self, path: str | Path):
        require_extra("executorch", "running .pte files")
        from executorch.runtime import Runtime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            with native_stderr_silenced():  # a bad file also gets a C++ log line before the exception
                program = Runtime.get().load_program(str(path))
            names = set(program.method_names)
        except Exception as exc:  # the runtime raises RuntimeError/ValueError with C++ messages
            raise SqueezeNetError(f"{path}: not a loadable ExecuTorch program ({str(exc).strip()[:200]})") from None
        if METADATA_METHOD not in names or "forward" not in names:
            raise SqueezeNetError(f"{path}: an ExecuTorch program without squeezenet metadata (export it with "
                                  "`squeezenet export --format executorch`); its preprocessing is unknown, so it is not used")
        try:
            raw = program.load_method(METADATA_METHOD).execute([])[0]
            props = parse_json(raw, f"{path}: metadata") if isinstance(raw, str) else None
            if not isinstance(props, dict):
                raise ValueError("not a JSON object")
            self.batch = self.fixed_batch = int(props.get("batch", "1"))
            if not 1 <= self.fixed_batch <= MAX_BATCH:
                raise ValueError(f"batch {self.fixed_batch}")
        except SqueezeNetError:
            raise
        except (ValueError, TypeError, RecursionError, RuntimeError) as exc:
            raise SqueezeNetError(f"{path}: unreadable squeezenet metadata ({str(exc)[:200]})") from None
        self.meta, self.precision = meta_from_properties({str(k): str(v) for k, v in props.items()}, str(path))
        try:
            with native_stderr_silenced():
                self.forward = program.load_method("forward")
        except RuntimeError as exc:  # a damaged plan: "Failed to load method forward, error: 0x:20"
            raise SqueezeNetError(f"{path}: not a loadable ExecuTorch program ({str(exc).strip()[:200]})") from None
        self.program, self.path = program, path

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(self.checked_batch(images))
        outs, n = [], self.fixed_batch
        for start in range(0, len(x), n):
            chunk = x[start:start + n]
            if len(chunk) < n:  # the program's batch is fixed: pad, then drop the padding's outputs
                chunk = torch.cat([chunk, chunk.new_zeros(n - len(chunk), *chunk.shape[1:])])
            try:
                out = self.forward.execute([chunk])[0]
            except RuntimeError as exc:  # a program whose inputs or kernels do not fit what it says it takes
                raise SqueezeNetError(f"{self.path}: ExecuTorch cannot run it ({str(exc).strip()[:200]})") from None
            outs.append(out[:min(n, len(x) - start)])
        return self.checked_output(torch.cat(outs), len(x))
