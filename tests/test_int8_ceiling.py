"""The int8 simulation behind benchmarks/int8_ceiling.py computes what the runtimes compute."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "int8_ceiling.py"


@pytest.fixture(scope="module")
def ceiling():
    spec = importlib.util.spec_from_file_location("int8_ceiling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _qdq_onnxruntime(x: np.ndarray, scale: float, zero: int, dtype) -> np.ndarray:
    """QuantizeLinear -> DequantizeLinear as onnxruntime runs it (the independent reference); the zero point's
    dtype (uint8 or int8) picks the grid."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(np.array(zero, dtype), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_activation_grid_is_onnxruntimes_uint8(ceiling):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20_000) * 3).astype(np.float32)
    lo, hi = np.float32(-2.5), np.float32(7.0)  # clipping on both sides, a non-zero zero point
    scale = np.float32((hi - lo) / 255)
    zero = int(np.round(-lo / scale))
    expected = _qdq_onnxruntime(x, float(scale), zero, np.uint8)
    got = ceiling.fake_quant(torch.from_numpy(x), torch.tensor(lo), torch.tensor(hi)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5 * float(scale) + 1e-6)
    assert len(np.unique(got)) <= 256 and got.max() <= hi + scale and got.min() >= lo - scale


def test_weight_grid_is_symmetric_per_channel_int8(ceiling):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.1, 3], np.float32)[:, None, None, None]
    got = ceiling.int8_weight(torch.from_numpy(w)).numpy()
    for c in range(4):
        scale = np.abs(w[c]).max() / 127
        np.testing.assert_allclose(got[c], _qdq_onnxruntime(w[c], float(scale), 0, np.int8), rtol=1e-6, atol=1e-7)
        assert np.isclose(np.abs(got[c]).max(), np.abs(w[c]).max(), rtol=1e-6)  # the extreme weight is on the grid


def test_mse_range_clips_a_long_tail_when_that_pays(ceiling):
    """A coarse grid over an exponential tail: clipping the rare large values costs less than the resolution a
    full range loses (4 bits: 15 steps); the search finds such a clip and its error is well below the full range's."""
    torch.manual_seed(0)
    values = torch.distributions.Exponential(1.0).sample((1, 50_000))
    lo, hi = ceiling.mse_range(values, bits=4)
    assert lo.item() == 0 and hi.item() < 0.6 * values.max().item()
    full = ((ceiling.fake_quant(values, torch.tensor(0.0), values.max(), bits=4) - values) ** 2).mean()
    clipped = ((ceiling.fake_quant(values, lo, hi, bits=4) - values) ** 2).mean()
    assert clipped < full / 2
    lo8, hi8 = ceiling.mse_range(values, bits=8)  # a finer grid affords a wider range
    assert hi8.item() > hi.item()


def test_more_bits_are_more_faithful_on_a_real_network(ceiling):
    """On a small SqueezeNet: the simulated int8 network differs from fp32, and each extra activation bit brings
    it closer; with 16-bit activations and fp32 weights it is within float noise."""
    from squeezenet import create_model

    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=10).eval()
    images = torch.randn(24, 3, 64, 64)
    reference = ceiling.run(model, images)
    _, extremes = ceiling.collect(model, images)  # every value's range: nothing is clipped
    ranges = {n: (lo.min().clamp(max=0), hi.max().clamp(min=0)) for n, (lo, hi) in extremes.items()}
    errors = []
    for bits in (8, 10, 16):
        with ceiling.simulated(model, ranges, bits=bits):
            errors.append(float((ceiling.run(model, images) - reference).abs().max()))
    assert errors[0] > 0
    assert errors[1] < errors[0] / 2 and errors[2] < errors[0] / 50  # rounding error shrinks with the step
    torch.testing.assert_close(ceiling.run(model, images), reference)  # the hooks and weights are restored
