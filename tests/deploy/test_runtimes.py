"""Runtimes behind Classifier.load: OpenVINO, ExecuTorch, the measured `auto` choice, and int8 that is checked."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cifar_test_model, patterns, require_shared
from squeezenet.deploy import RUNTIMES, Classifier, OnnxModel, export_onnx
from squeezenet.deploy import runtime as runtime_module
from squeezenet.errors import SqueezeNetError
from squeezenet.inference.fidelity import DEFAULT_GATE, FidelityGate, fidelity
from squeezenet.weights import load_weights

NO_GATE = FidelityGate(0.0, -300.0)  # where the file's fidelity is not the subject
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the [openvino] extra is not installed")
needs_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                      reason="the [executorch] extra is not installed")




def _images(n: int, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_cli_runtime_choices_are_the_library_runtimes() -> None:
    import argparse

    from squeezenet.cli.args import RUNTIME_CHOICES, VERBS
    from squeezenet.deploy.bench import BENCH_RUNTIMES

    assert tuple(RUNTIME_CHOICES) == tuple(RUNTIMES)
    bench = argparse.ArgumentParser()
    next(v for v in VERBS if v.name == "bench").arguments(bench)
    assert tuple(next(a for a in bench._actions if a.dest == "runtime").choices) == BENCH_RUNTIMES


def _answering_model(trained: Path, one_class: bool = False):
    """The trained network; ``one_class``: with class 0's bias raised above every other logit, so every input
    gets class 0 (what a random or degenerate model does) while the other outputs still follow the input."""
    model = load_weights(trained).eval()
    if one_class:
        with torch.no_grad():
            logits = model(patterns(200, seed=9)[0])
            model.classifier[1].bias[0] += 2 * float(logits.max() - logits.min()) + 1
    return model


def _outlier(images: torch.Tensor) -> torch.Tensor:
    """A deliberately bad calibration: one image 1000x brighter than the rest stretches every activation range, so
    int8 keeps ~no resolution for the others."""
    bad = images.clone()
    bad[0] *= 1000
    return bad


@pytest.mark.slow
def test_int8_gate_refuses_a_broken_file_that_agreement_alone_would_pass(tmp_path, trained) -> None:
    """The reference answers class 0 for every input: any file agrees on 1.000 of the top-1 answers. The broken
    int8 file (outlier calibration) is refused all the same, by its logit SNR; a faithful one is written."""
    model = _answering_model(trained, one_class=True)
    calib = patterns(32, seed=1)[0]
    with torch.no_grad():
        assert set(model(calib).argmax(1).tolist()) == {0}
    out = tmp_path / "broken.onnx"
    with pytest.raises(SqueezeNetError, match=r"logit SNR -?\d+\.\d dB < 15 dB"):
        export_onnx(model, out, check_images=calib[:8], int8=True, calibration=_outlier(calib), calibration_method="minmax",
                    int8_weights="nearest")
    assert not out.exists()
    forced = export_onnx(model, out, check_images=calib[:8], int8=True, calibration=_outlier(calib),
                         calibration_method="minmax", int8_weights="nearest", force=True).int8
    assert forced is not None and forced.agreement == 1.0 and forced.snr_db < 3  # agreement blind, SNR not
    good = export_onnx(model, tmp_path / "good.onnx", check_images=calib[:8], int8=True, calibration=calib,
                       calibration_method="minmax", int8_weights="nearest").int8
    assert good is not None and DEFAULT_GATE.passes(good) and good.fp32_layers == [] and good.snr_db > forced.snr_db + 10


@pytest.mark.slow
def test_int8_that_fails_the_gate_is_refused_and_force_writes_the_best(tmp_path, trained) -> None:
    model = _answering_model(trained)
    calib = patterns(32, seed=1)[0]
    with torch.no_grad():
        assert len(set(model(calib).argmax(1).tolist())) >= 5  # a reference whose answers vary
    out = tmp_path / "bad.onnx"
    with pytest.raises(SqueezeNetError, match="no int8 file passes top-1 agreement >= 0.95 and logit SNR >= 15 dB"):
        export_onnx(model, out, check_images=calib[:8], int8=True, calibration=_outlier(calib), calibration_method="minmax",
                    int8_weights="nearest")
    assert not out.exists() and not list(tmp_path.glob("*.onnx"))
    check = export_onnx(model, out, check_images=calib[:8], int8=True, calibration=_outlier(calib),
                        calibration_method="minmax", int8_weights="nearest", force=True)
    q = check.int8
    assert out.exists() and OnnxModel(out).precision == "int8"
    assert q is not None and not DEFAULT_GATE.passes(q) and q.images == 32
    assert q.snr_db == max(t["snr_db"] for t in q.tried)  # the most faithful candidate measured was written
    assert len(q.tried) > 1  # layers were kept in fp32 to try to reach the target


def test_int8_that_agrees_is_written_whole(tmp_path, trained) -> None:
    model = _answering_model(trained)
    calib = patterns(32, seed=1)[0]
    check = export_onnx(model, tmp_path / "ok.onnx", check_images=calib[:8], int8=True, calibration=calib,
                        calibration_method="minmax", int8_weights="nearest", gate=FidelityGate(0.5, 15.0))
    assert check.int8 is not None and check.int8.agreement >= 0.5 and check.int8.fp32_layers == []
    assert [t["fp32_layers"] for t in check.int8.tried] == [0]


@needs_openvino
def test_openvino_runs_our_onnx_files_with_true_fp32_and_its_fast_mode(cifar_onnx) -> None:
    from squeezenet.deploy.openvino import OpenVinoModel

    model = load_weights(cifar_onnx.with_suffix(".safetensors")).eval()
    x = _images(6)
    path = cifar_onnx
    exact, fast = OpenVinoModel(path, threads=1, precision="fp32"), OpenVinoModel(path, threads=1)
    with torch.no_grad():
        reference = model(x)
    assert exact.meta.replace(source=None) == model.meta and exact.compute_precision == "f32"
    assert (exact(x) - reference).abs().max() < 1e-4
    assert fast(x).shape == reference.shape and fast.kernels()  # runs; which kernels is the CPU's business
    clf = Classifier.load(path, runtime="openvino-fp32")
    assert clf.backend == "openvino-fp32 (fp32)" and clf.class_names == list(model.meta.classes)
    with pytest.raises(SqueezeNetError, match="takes N x 3 x 32 x 32"):
        exact(torch.zeros(1, 3, 16, 16))


@pytest.mark.slow
@needs_openvino
def test_openvino_reads_our_int8_and_indexed_files_and_refuses_a_broken_graph_before_it_can_crash(tmp_path) -> None:
    """Our int8 QDQ and indexed-weights files pass the ONNX checker OpenVINO's load now runs first; a graph with a
    ReLU renamed Conv (one input) is refused in one line: OpenVINO itself died on it with a segmentation fault
    (tools/fuzz_readers.py --onnx-runtime openvino). Run in a child process so a crash fails the test, not the run."""
    import onnx

    from squeezenet.deploy.openvino import OpenVinoModel

    model = cifar_test_model(tmp_path)
    x = _images(16)
    export_onnx(model, tmp_path / "int8.onnx", check_images=x[:4], int8=True, calibration=x, gate=NO_GATE)
    export_onnx(model, tmp_path / "indexed.onnx", check_images=x[:4], indexed_weights=True)
    with torch.no_grad():
        reference = model(x[:4])
    assert (OpenVinoModel(tmp_path / "indexed.onnx", threads=1, precision="fp32")(x[:4]) - reference).abs().max() < 1e-4
    assert OpenVinoModel(tmp_path / "int8.onnx", threads=1)(x[:4]).shape == reference.shape
    proto = onnx.load(str(tmp_path / "indexed.onnx"))
    next(n for n in proto.graph.node if n.op_type == "Relu").op_type = "Conv"
    onnx.save(proto, str(tmp_path / "broken.onnx"))
    code = ("import sys; from squeezenet.cli import main; "
            "sys.exit(main(['predict', '-w', sys.argv[1], '--runtime', 'openvino', sys.argv[2]]))")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "broken.onnx"), str(image)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().count("\n") == 0 and "not a valid ONNX graph" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
@needs_executorch
def test_executorch_program_equals_pytorch_with_metadata_inside(tmp_path, capsys) -> None:
    from squeezenet.deploy.executorch import ExecuTorchModel, export_executorch

    model = cifar_test_model(tmp_path)
    x = _images(5)
    path = tmp_path / "m4.pte"  # (batch-1 programs: test_published_model_on_every_runtime)
    check = export_executorch(model, path, check_images=x, batch=4)
    program = ExecuTorchModel(path)
    with torch.no_grad():  # 5 images: the batch-4 program pads the second call
        assert (program(x) - model(x)).abs().max() < 1e-4
    assert program.meta.replace(source=None) == model.meta and program.batch == 4 and check.max_abs_diff < 1e-4
    clf = Classifier.load(path)
    assert clf.backend == "executorch (fp32)"
    from squeezenet.cli import main

    assert main(["info", str(path), "--json"]) == 0  # the architecture and precision from the file alone
    info = json.loads(capsys.readouterr().out)
    assert info["file"]["precision"] == "fp32" and info["file"]["classes"] == 10
    q = export_executorch(model, tmp_path / "q.pte", check_images=x, int8=True, calibration=_images(32, seed=2),
                          gate=NO_GATE)
    assert ExecuTorchModel(tmp_path / "q.pte").precision == "int8" and q.int8 is not None
    assert (tmp_path / "q.pte").stat().st_size < 0.6 * path.stat().st_size


@pytest.mark.slow
@needs_executorch
def test_foreign_executorch_programs_and_wrong_runtimes_are_one_line_errors(tmp_path, capsys) -> None:
    from executorch.exir import to_edge

    from squeezenet.cli import main  # in-process: the verb's one line and exit status are the subject

    program = to_edge(torch.export.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),))).to_executorch()
    foreign = tmp_path / "foreign.pte"
    foreign.write_bytes(program.buffer)
    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program" * 10)
    capsys.readouterr()  # (torchao's import warns on stderr when executorch.exir is imported above)
    for path, words in ((foreign, "without squeezenet metadata"), (garbage, "not a loadable ExecuTorch program")):
        assert main(["predict", "-w", str(path), str(path)]) == 1
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and str(path) in lines[0], err
    with pytest.raises(SqueezeNetError, match="does not run .pte files"):
        Classifier.load(foreign, runtime="onnxruntime")


def test_auto_measures_once_per_file_and_remembers(tmp_path, monkeypatch, cifar_onnx) -> None:
    path = tmp_path / "m.onnx"
    shutil.copyfile(cifar_onnx, path)  # (changed below)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    timed: list[str] = []
    real_open = runtime_module.open_runtime

    def counting_open(source, runtime, threads, providers=None):
        timed.append(runtime)
        return real_open(source, runtime, threads, providers)

    monkeypatch.setattr(runtime_module, "open_runtime", counting_open)
    monkeypatch.setattr(runtime_module, "AUTO_CANDIDATES", {".onnx": ("onnxruntime",)})
    monkeypatch.setattr(runtime_module, "FILE_RUNTIMES", {".onnx": ("onnxruntime",), ".pte": ("executorch",)})
    first = runtime_module.choose_runtime(path)
    assert first == "onnxruntime" and timed == []  # one candidate installed: nothing to measure
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("measuring between runtimes needs the [openvino] extra")
    monkeypatch.setattr(runtime_module, "AUTO_CANDIDATES", {".onnx": ("onnxruntime", "openvino-fp32")})
    monkeypatch.setattr(runtime_module, "FILE_RUNTIMES", {".onnx": ("onnxruntime", "openvino-fp32"), ".pte": ("executorch",)})
    chosen = runtime_module.choose_runtime(path)
    assert sorted(timed) == ["onnxruntime", "openvino-fp32"]
    remembered = json.loads((tmp_path / "cache" / "squeezenet" / "runtime-choice.json").read_text())
    assert list(remembered.values()) == [chosen]
    timed.clear()
    assert runtime_module.choose_runtime(path) == chosen and timed == []  # remembered, not measured again
    path.write_bytes(path.read_bytes() + b"\0")  # another file (hash): measured again
    with pytest.raises(SqueezeNetError):
        runtime_module.choose_runtime(path)  # (a corrupted file cannot load: the error is the loader's, one line)


@pytest.mark.slow
@needs_openvino
@needs_executorch
def test_published_model_on_every_runtime(tmp_path) -> None:
    """fp32 on ExecuTorch and OpenVINO-fp32 gives PyTorch's answers on real images; int8 agrees as checked."""
    from squeezenet.deploy.executorch import export_executorch
    from squeezenet.inference.fidelity import FidelityGate, fidelity
    from squeezenet.inference.preloaded import load_images

    model = load_weights(require_shared("deep-compression", "compressed_SqueezeNet.net")).eval()
    images = load_images(model, require_shared("imagenet-samples"), 40)[0]
    calib = load_images(model, require_shared("imagenet-calib"), 48)[0]
    with torch.no_grad():
        reference = model(images)
    onnx_path, pte = tmp_path / "dc.onnx", tmp_path / "dc.pte"
    export_onnx(model, onnx_path, check_images=images[:8])
    export_executorch(model, pte, check_images=images[:8])
    for runtime, path in (("openvino-fp32", onnx_path), ("executorch", pte), ("onnxruntime", onnx_path)):
        got = Classifier.load(path, runtime=runtime).model(images)
        assert fidelity(reference, got).agreement == 1.0 and (got - reference).abs().max() < 1e-2, runtime
    int8 = tmp_path / "dc8.onnx"
    check = export_onnx(model, int8, check_images=images[:8], int8=True, calibration=calib, gate=FidelityGate(0.85, 15.0),
                        calibration_method="minmax", int8_weights="nearest")  # rounding is not the subject here
    assert check.int8 is not None and check.int8.agreement >= 0.85
    for runtime in ("onnxruntime", "openvino-fp32"):
        f = fidelity(reference, Classifier.load(int8, runtime=runtime).model(images))
        assert f.agreement >= 0.8 and f.kl < 0.1 and f.snr_db > 10, (runtime, f)


def test_indexed_weights_are_bit_exact_and_smaller_to_ship(tmp_path) -> None:
    import gzip

    model = cifar_test_model(tmp_path)
    with torch.no_grad():  # shared weights, as Deep Compression leaves them: 16 values per layer
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                levels = torch.linspace(float(m.weight.min()), float(m.weight.max()), 16)
                m.weight.copy_(levels[(m.weight[..., None] - levels).abs().argmin(-1)])
    x = _images(6)
    plain, indexed = tmp_path / "plain.onnx", tmp_path / "indexed.onnx"
    export_onnx(model, plain, check_images=x)
    export_onnx(model, indexed, check_images=x, indexed_weights=True)
    assert torch.equal(OnnxModel(indexed)(x), OnnxModel(plain)(x))
    assert len(gzip.compress(indexed.read_bytes())) < 0.8 * len(gzip.compress(plain.read_bytes()))
    import onnx

    ops = [n.op_type for n in onnx.load(str(indexed)).graph.node]
    assert ops.count("Gather") == ops.count("Conv")  # every conv weight decoded from its codebook
    with pytest.raises(SqueezeNetError, match="indexed weights are for fp32"):
        export_onnx(model, tmp_path / "x.onnx", check_images=x, int8=True, calibration=x, indexed_weights=True)


@needs_openvino
def test_openvino_finds_external_weights_beside_the_model_from_any_folder_and_writes_no_telemetry(tmp_path, capsys,
                                                                                                   monkeypatch,
                                                                                                   cifar_onnx) -> None:
    """A valid ONNX file whose weights are external data beside it loads from another working directory (the
    pre-check resolved them against the cwd); and loading it through OpenVINO writes nothing under $HOME (OpenVINO's
    telemetry writes ~/intel/openvino_ga_cid and ~/intel/stats on import, and phones home). In a child process: a
    fresh interpreter imports OpenVINO for the first time, with its own HOME."""
    import onnx

    folder = tmp_path / "models"
    folder.mkdir()
    proto = onnx.load(str(cifar_onnx))
    onnx.save_model(proto, str(folder / "external.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="external.onnx.data")  # onnx's default: tensors over 1 KB beside it
    assert (folder / "external.onnx.data").stat().st_size > 10 * (folder / "external.onnx").stat().st_size  # the weights
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    done = subprocess.run([sys.executable, "-m", "squeezenet", "predict", "-w", str(folder / "external.onnx"), str(image),
                           "--runtime", "openvino-fp32", "--json"], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)  # a fresh interpreter: OpenVINO imported for the first time, with its own HOME
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = [json.loads(done.stdout)[0]["top"][0]["label"]]
    from squeezenet.cli import main

    monkeypatch.chdir(elsewhere)  # the other runtimes in-process, from the other folder too
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for runtime in ("onnxruntime", "auto"):
        assert main(["predict", "-w", str(folder / "external.onnx"), str(image), "--runtime", runtime, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out)[0]["top"][0]["label"])
    assert len(set(outputs)) == 1
    assert not (home / "intel").exists(), sorted(p.name for p in (home / "intel").iterdir())


@pytest.mark.slow
@needs_executorch
def test_pt2e_int8_keeps_the_classifier_head_float_and_the_last_convolution_int8(trained) -> None:
    """The logits are the global pool's output: the stock PT2E recipes re-quantize them to 256 levels (on the
    published model: agreement 0.840 instead of 0.952). float_logits leaves the pool and what follows unannotated."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from squeezenet.deploy.pt2e import float_logits

    model = load_weights(trained).eval()
    x = patterns(16, seed=3)[0]

    def converted(quantizer):
        prepared = prepare_pt2e(torch.export.export(model, (x[:1],)).module(), quantizer)
        with torch.no_grad():
            for image in x:
                prepared(image[None])
        return convert_pt2e(prepared)

    def after_pool(graph) -> list[str]:
        nodes = [n for n in graph.graph.nodes if n.op == "call_function"]
        pool = next(i for i, n in enumerate(nodes) if "adaptive_avg_pool2d" in str(n.target))
        return [str(n.target) for n in nodes[pool:]], [str(n.target) for n in nodes[:pool]]

    stock = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    head, _ = after_pool(converted(stock))
    assert any("quantize_per_tensor" in t for t in head)  # the stock recipe quantizes the logits
    ours = converted(float_logits(XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))))
    head, body = after_pool(ours)
    assert not any("quantize_per_tensor" in t and "dequantize" not in t for t in head[1:])
    assert sum("quantize_per_tensor" in t and "dequantize" not in t for t in body) >= 26  # every conv input int8
    with torch.no_grad():
        assert fidelity(model(x), torch.cat([ours(image[None]) for image in x])).snr_db > 15  # (captured at batch 1)
