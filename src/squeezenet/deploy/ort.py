"""onnxruntime sessions on our ONNX files: the input and output names every export uses, a session with the
threading a fair measurement needs, and batched runs. Shared by export checks, int8 calibration, loading and bench.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..common.extras import require_extra
from ..errors import SqueezeNetError

INPUT_NAME, OUTPUT_NAME = "image", "logits"


def ort_session(path: str | Path, threads: int | None = None, spinning: bool = True,
                providers: Sequence[str] | None = None):
    """A session on ``providers`` (default: the CPU); ``spinning=False`` stops idle worker threads from
    busy-waiting (fair side-by-side timing). A provider this onnxruntime lacks is a ``SqueezeNetError``."""
    require_extra("deploy", "running .onnx files")
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = list(providers or ["CPUExecutionProvider"])
    absent = [p for p in providers if p not in available]
    if absent:
        raise SqueezeNetError(f"onnxruntime here has no {', '.join(absent)}; available: {', '.join(available)}")

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers)


def run_onnx(session, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    outs = [session.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + batch].numpy()})[0] for i in range(0, len(images), batch)]
    return np.concatenate(outs)
