"""ONNX export (fp32 and static int8) with the preprocessing written into the file's metadata.

Every exported file carries, as ONNX ``metadata_props``, the preprocessing a client must apply
(flat keys ``resize``, ``resize_mode``, ``crop``, ``mean``, ``std``, ``channel_order``, ``value_range``,
``interpolation``, ``input_layout``), the class names and the architecture config. The export is
checked against PyTorch on real images before the file is kept.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common.extras import require_extra
from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..inference.fidelity import DEFAULT_GATE, FidelityGate, fidelity
from ..models import Network
from .int8 import Int8Check, gptq_int8_weights, quantize_checked
from .metadata import model_properties
from .ort import INPUT_NAME, OUTPUT_NAME, ort_session, run_onnx

DEFAULT_OPSET = 18


@dataclass
class ExportCheck:
    """How the exported graph compares with PyTorch on real images."""

    images: int
    max_abs_diff: float
    top1_agreement: float  # fraction of images with the same top-1 class
    int8: Int8Check | None = None  # int8 files: agreement with fp32 on the calibration images, layers kept in fp32

    def to_dict(self) -> dict:
        d: dict[str, object] = {"images": self.images, "max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement}
        if self.int8 is not None:
            d["int8"] = self.int8.to_dict()
        return d


MIN_OPSET = 10  # MaxPool(ceil_mode=1), which v1.0/v1.1 need, arrived in opset 10
INT8_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute)
DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes 18+; older runtimes (opset 10-17) get the TorchScript exporter


def _export_fp32(model: Network, path: Path, opset: int) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise SqueezeNetError(f"opset {opset}: choose {MIN_OPSET} to {newest} (this onnx package's newest)")
    crop = model.meta.preprocessing.crop
    x = torch.zeros(2, model.meta.config.in_chans, crop, crop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if opset >= DYNAMO_MIN_OPSET:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(model.eval(), (x,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), opset_version=opset,
                                        external_data=False, verbose=False)
            assert program is not None  # dynamo=True always returns the program
            proto = program.model_proto
        else:
            with tempfile.TemporaryDirectory() as tmp:
                legacy = Path(tmp) / "legacy.onnx"
                torch.onnx.export(model.eval(), (x,), str(legacy), dynamo=False, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                                  opset_version=opset)
                proto = onnx.load(str(legacy))
    written = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if written != opset:  # the exporter may silently keep another opset when it cannot convert
        raise SqueezeNetError(f"opset {opset}: the exporter wrote opset {written} instead; not written")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _with_weights_of(model: Network, exported_from: Network, exported: Path, out: Path) -> bool:
    """Write ``exported`` (the graph of ``exported_from``) with ``model``'s tensors where they differ from
    ``exported_from``'s, found by name among its initializers, instead of exporting ``model`` (same architecture,
    other weights) again: the dynamo exporter takes seconds. False, and nothing written, when a tensor that differs
    is not an initializer of that name and shape (the exporter folded or renamed it: export instead)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(exported))
    inits = {init.name: init for init in proto.graph.initializer}
    before = exported_from.state_dict()
    for name, tensor in model.state_dict().items():
        if name in before and torch.equal(before[name], tensor):
            continue  # (unchanged: wherever the exporter put it, e.g. a zero bias it dropped)
        value = tensor.detach().cpu().numpy()
        init = inits.get(name)
        if init is None or tuple(init.dims) != value.shape or init.data_type != onnx.TensorProto.FLOAT:
            return False
        init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    onnx.save(proto, str(out))
    return True


def _set_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


MAX_CODEBOOK = 256  # values a uint8 index can address


def index_shared_weights(path: Path) -> int:
    """Store every Conv weight with at most 256 distinct values (Deep Compression's shared weights, a ``.sqz``)
    as uint8 indices into a float32 codebook, ``weight = Gather(codebook, Cast(indices))``: bit-exact, and
    onnxruntime/OpenVINO fold it back to the dense weight when they load the file, so it runs at fp32 speed while
    a device downloads a quarter of the bytes before compression (brotli: 581 KB instead of 728 KB for the
    published model). Returns how many weights were indexed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    kept, decode = [], []
    for init in graph.initializer:
        w = numpy_helper.to_array(init) if init.name in conv_weights else None
        values, index = np.unique(w, return_inverse=True) if w is not None and w.dtype == np.float32 else (None, None)
        if values is None or index is None or len(values) > MAX_CODEBOOK:
            kept.append(init)
            continue
        name = init.name
        kept += [numpy_helper.from_array(values.astype(np.float32), f"{name}.codebook"),
                 numpy_helper.from_array(index.reshape(w.shape).astype(np.uint8), f"{name}.indices")]  # type: ignore[union-attr]
        decode += [helper.make_node("Cast", [f"{name}.indices"], [f"{name}.indices32"], to=TensorProto.INT32),
                   helper.make_node("Gather", [f"{name}.codebook", f"{name}.indices32"], [name], axis=0)]
    if decode:
        nodes = decode + list(graph.node)
        del graph.initializer[:], graph.node[:]
        graph.initializer.extend(kept)
        graph.node.extend(nodes)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
    return len(decode) // 2


def check_export(model: Network, path: str | Path, images: torch.Tensor) -> ExportCheck:
    """Run the file in onnxruntime and PyTorch on the same preprocessed images."""
    with torch.inference_mode():
        reference = model.eval()(images).numpy()
    got = run_onnx(ort_session(path), images)
    return ExportCheck(len(images), float(np.abs(got - reference).max()),
                       fidelity(torch.from_numpy(reference), torch.from_numpy(got)).agreement)


def export_onnx(model: Network, path: str | Path, *, check_images: torch.Tensor, opset: int = DEFAULT_OPSET,
                int8: bool = False, calibration: torch.Tensor | None = None, gate: FidelityGate = DEFAULT_GATE,
                calibration_method: str = "mse", force: bool = False, tolerance: float = 1e-3,
                threads: int | None = None, indexed_weights: bool = False, int8_weights: str = "gptq") -> ExportCheck:
    """Export ``model`` (from :func:`squeezenet.weights.load_weights`) to ONNX with a dynamic batch dimension.

    fp32 files must match PyTorch within ``tolerance`` (max abs logit difference) on ``check_images``.
    int8 files (static QDQ, per-channel int8 weights rounded by ``int8_weights``: ``"gptq"`` for each layer's
    output or ``"nearest"``; activation ranges by ``calibration_method``, both fitted on the ``calibration``
    images) must pass ``gate`` (top-1 agreement and logit SNR) against the fp32 file on the calibration
    images; the convolutions that change answers most stay in fp32 when that is needed
    (:func:`squeezenet.deploy.int8.quantize_checked`); ``force`` writes the most faithful file measured.
    ``indexed_weights`` (fp32 only): shared weights as uint8 indices + codebook (:func:`index_shared_weights`).
    A file that fails its check is not written: ``SqueezeNetError``.
    """
    if not isinstance(model, Network):
        raise SqueezeNetError(f"export needs one of the toolkit's networks (with a meta), got {type(model).__name__}")
    if indexed_weights and int8:
        raise SqueezeNetError("indexed weights are for fp32 files (int8 weights are already one byte each)")
    if int8 and (calibration is None or not len(calibration)):
        raise SqueezeNetError("int8 export needs calibration images (calibration=)")
    if int8 and opset < INT8_MIN_OPSET:
        raise SqueezeNetError(f"int8 export needs opset {INT8_MIN_OPSET} or newer (per-channel DequantizeLinear), got {opset}")
    require_extra("deploy", "ONNX export")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise SqueezeNetError(f"{path}: the export format is ONNX; name the output *.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        plain = model
        if int8 and int8_weights == "gptq":
            from ..compress.fold import fold_batch_norm

            # the fp32 reference with batch-norm folded: the same function, and the same weight names as the GPTQ
            # file (fp32-kept layers take their weights from it); exported once (the dynamo exporter takes seconds)
            plain = fold_batch_norm(model)
        _export_fp32(plain, fp32, opset)
        final, quality = fp32, None
        if indexed_weights:
            index_shared_weights(fp32)
        if int8:
            final, reference, source = Path(tmp) / "int8.onnx", fp32, None
            if int8_weights == "gptq":
                source = Path(tmp) / "gptq.onnx"
                rounded = gptq_int8_weights(plain, calibration)  # type: ignore[arg-type]
                if not _with_weights_of(rounded, plain, fp32, source):
                    _export_fp32(rounded, source, opset)
            quality = quantize_checked(reference, final, calibration, gate=gate,  # type: ignore[arg-type]
                                       method=calibration_method, force=force, threads=threads, source=source,
                                       weights=int8_weights)
        _set_metadata(final, model_properties(model, "int8" if int8 else "fp32"))
        check = check_export(model, final, check_images)
        check.int8 = quality
        if not int8 and check.max_abs_diff > tolerance:
            raise SqueezeNetError(f"exported graph differs from PyTorch by {check.max_abs_diff:.3g} on {check.images} images "
                                  f"(tolerance {tolerance:g}); not written")
        with atomic_path(path) as out:
            out.write_bytes(final.read_bytes())
    return check
