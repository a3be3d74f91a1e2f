"""int8 grids, GPTQ weights and MSE ranges compute what the runtimes compute; the simulation in
benchmarks/int8_ceiling.py uses them."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from squeezenet.deploy.int8 import fake_quant, int8_weight, mse_range
from squeezenet.inference.fidelity import FidelityGate

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "int8_ceiling.py"


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


def test_activation_grid_is_onnxruntimes_uint8():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20_000) * 3).astype(np.float32)
    lo, hi = np.float32(-2.5), np.float32(7.0)  # clipping on both sides, a non-zero zero point
    scale = np.float32((hi - lo) / 255)
    zero = int(np.round(-lo / scale))
    expected = _qdq_onnxruntime(x, float(scale), zero, np.uint8)
    got = fake_quant(torch.from_numpy(x), torch.tensor(lo), torch.tensor(hi)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5 * float(scale) + 1e-6)
    assert len(np.unique(got)) <= 256 and got.max() <= hi + scale and got.min() >= lo - scale


def test_weight_grid_is_symmetric_per_channel_int8():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * np.array([1, 10, 0.1, 3], np.float32)[:, None, None, None]
    got = int8_weight(torch.from_numpy(w)).numpy()
    for c in range(4):
        scale = np.abs(w[c]).max() / 127
        np.testing.assert_allclose(got[c], _qdq_onnxruntime(w[c], float(scale), 0, np.int8), rtol=1e-6, atol=1e-7)
        assert np.isclose(np.abs(got[c]).max(), np.abs(w[c]).max(), rtol=1e-6)  # the extreme weight is on the grid


def test_mse_range_clips_a_long_tail_when_that_pays():
    """A coarse grid over an exponential tail: clipping the rare large values costs less than the resolution a
    full range loses (4 bits: 15 steps); the search finds such a clip and its error is well below the full range's."""
    torch.manual_seed(0)
    values = torch.distributions.Exponential(1.0).sample((1, 50_000))
    lo, hi = mse_range(values, bits=4)
    assert lo.item() == 0 and hi.item() < 0.6 * values.max().item()
    full = ((fake_quant(values, torch.tensor(0.0), values.max(), bits=4) - values) ** 2).mean()
    clipped = ((fake_quant(values, lo, hi, bits=4) - values) ** 2).mean()
    assert clipped < full / 2
    _, hi8 = mse_range(values, bits=8)  # a finer grid affords a wider range
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


def _small_bn_model():
    """A CIFAR SqueezeNet with batch-norm (folded before quantization) and non-trivial statistics."""
    from squeezenet import create_model
    from squeezenet.weights import Preprocessing

    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar", batch_norm=True, stem_pool=True)
    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))  # running statistics away from (0, 1)
    return model.eval()


def test_gptq_weights_are_exactly_what_the_int8_file_multiplies_and_keep_outputs_better(tmp_path):
    """The file's dequantized weights are GPTQ's (onnxruntime recomputes each channel's scale from the weights
    it is given: a re-rounding would undo GPTQ), and per layer GPTQ's output error is below nearest rounding's."""
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper

    from squeezenet.compress.fold import fold_batch_norm
    from squeezenet.compress.reconstruct import all_input_statistics, output_error
    from squeezenet.deploy import export_onnx
    from squeezenet.deploy.int8 import gptq_int8_weights

    model = _small_bn_model()
    calib = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    rounded = gptq_int8_weights(model, calib)
    export_onnx(model, tmp_path / "q.onnx", check_images=calib[:8], int8=True, calibration=calib, gate=FidelityGate(0.0, -300.0))
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "q.onnx")).graph.initializer}
    folded = fold_batch_norm(model)
    stats = all_input_statistics(folded, calib)
    compared = 0
    for name, module in rounded.named_modules():
        if not isinstance(module, torch.nn.Conv2d):
            continue
        w = module.weight.detach()
        q, scale = init[f"{name}.weight_quantized"], init[f"{name}.weight_scale"]
        np.testing.assert_allclose(q.astype(np.float32) * scale.reshape(-1, 1, 1, 1), w.numpy(), rtol=1e-6, atol=1e-12)
        original = dict(folded.named_modules())[name].weight.detach()
        h = stats[name].hessian
        assert output_error(w - original, h) <= output_error(int8_weight(original) - original, h) * 1.0001
        compared += 1
    assert compared == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


@pytest.mark.slow
def test_mse_ranges_do_not_depend_on_the_process(tmp_path):
    """Activation ranges come out the same from two processes with different hash seeds (a sampled version
    depended on set order and moved ranges by 30%), and they clip: no wider than minmax."""
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    from squeezenet.deploy import export_onnx

    model = _small_bn_model()
    export_onnx(model, tmp_path / "fp32.onnx", check_images=torch.randn(4, 3, 32, 32))
    torch.save(torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(5)), tmp_path / "calib.pt")
    script = (
        "import sys, json, torch; from pathlib import Path; from squeezenet.deploy.int8 import _Quantizer\n"
        "work = Path(sys.argv[1]); work.mkdir()\n"
        "_Quantizer(Path(sys.argv[2]), work, torch.load(sys.argv[3]), sys.argv[4], 'image')()\n"
        "print(json.dumps(json.load(open(work / 'ranges.json'))['data'], sort_keys=True))\n")
    from squeezenet.deploy.int8 import _Quantizer

    # this process and a child with another hash seed (this one's is random unless PYTHONHASHSEED fixes it)
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "child"), str(tmp_path / "fp32.onnx"),
                          str(tmp_path / "calib.pt"), "mse"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONHASHSEED": seed})
    assert run.returncode == 0, run.stderr[-2000:]
    ranges = [json.loads(run.stdout.strip().splitlines()[-1])]
    (tmp_path / "here").mkdir()
    _Quantizer(tmp_path / "fp32.onnx", tmp_path / "here", torch.load(tmp_path / "calib.pt"), "mse", "image")()
    ranges.append(json.loads(json.dumps(json.loads((tmp_path / "here" / "ranges.json").read_text())["data"],
                                        sort_keys=True)))
    (tmp_path / "minmax").mkdir()
    _Quantizer(tmp_path / "fp32.onnx", tmp_path / "minmax", torch.load(tmp_path / "calib.pt"), "minmax", "image")()
    ranges.append(json.loads((tmp_path / "minmax" / "ranges.json").read_text())["data"])
    assert ranges[0] == ranges[1]
    mse, minmax = ranges[0], ranges[2]
    assert set(mse) == set(minmax)
    width = {n: (float(np.max(r["highest"]["data"])) - float(np.min(r["lowest"]["data"]))) for n, r in mse.items()}
    full = {n: (float(np.max(r["highest"]["data"])) - float(np.min(r["lowest"]["data"]))) for n, r in minmax.items()}
    assert all(width[n] <= full[n] * (1 + 1e-6) for n in mse)
    assert sum(width[n] < 0.99 * full[n] for n in mse) >= len(mse) // 4  # long tails are clipped somewhere
