"""Load FILE with RUNTIME alone, run one batch of SHAPE, print {"load_ms", "peak_rss_mb"} (see ``__init__``)."""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable

import numpy as np


def _onnxruntime(path: str, threads: int, x: np.ndarray) -> tuple[float, Callable[[], object]]:
    import onnxruntime as ort

    start = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return start, lambda: session.run(None, {"image": x})


def _openvino(path: str, threads: int, x: np.ndarray, fp32: bool) -> tuple[float, Callable[[], object]]:
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # no telemetry (see deploy.openvino)
    import openvino as ov

    start = time.perf_counter()
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if fp32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(path, "CPU", config)
    return start, lambda: compiled(x)


def _executorch(path: str, x: np.ndarray) -> tuple[float, Callable[[], object]]:
    import logging

    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    import torch
    from executorch.runtime import Runtime

    start = time.perf_counter()
    method = Runtime.get().load_program(path).load_method("forward")
    return start, lambda: method.execute([torch.from_numpy(x)])


def _litert(path: str, threads: int, x: np.ndarray) -> tuple[float, Callable[[], object]]:
    from ai_edge_litert.interpreter import Interpreter

    start = time.perf_counter()
    interpreter = Interpreter(model_path=path, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    data = x if detail["dtype"] == np.float32 else np.zeros(x.shape, detail["dtype"])  # (an int8 file's input)

    def run() -> object:
        interpreter.set_tensor(detail["index"], data)
        interpreter.invoke()
        return None
    return start, run


def _pytorch(path: str, threads: int, x: np.ndarray) -> tuple[float, Callable[[], object]]:
    import torch

    from squeezenet.weights import load_weights

    torch.set_num_threads(threads)
    start = time.perf_counter()
    model = load_weights(path).eval()

    def run() -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return start, run


def peak_rss_mb() -> float:
    """VmHWM, not getrusage: Linux keeps ru_maxrss across exec, so a child of a big process would report the
    parent's peak."""
    with open("/proc/self/status") as status:
        hwm = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    return (int(hwm[0]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def main(argv: list[str]) -> None:
    runtime, path, threads, shape = argv[0], argv[1], int(argv[2]), json.loads(argv[3])
    x = np.zeros(shape, np.float32)
    if runtime == "onnxruntime":
        start, run = _onnxruntime(path, threads, x)
    elif runtime.startswith("openvino"):
        start, run = _openvino(path, threads, x, fp32=runtime == "openvino-fp32")
    elif runtime == "executorch":
        start, run = _executorch(path, x)
    elif runtime == "litert":
        start, run = _litert(path, threads, x)
    else:
        start, run = _pytorch(path, threads, x)
    loaded = time.perf_counter()
    run()
    print(json.dumps({"load_ms": 1e3 * (loaded - start), "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])
