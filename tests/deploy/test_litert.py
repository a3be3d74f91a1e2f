"""LiteRT (.tflite): export with the metadata inside, the interpreter behind Classifier, int8 judged against fp32,
and the one-line errors of files that are not ours."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cifar_test_model, patterns, require_shared
from squeezenet.deploy import Classifier
from squeezenet.errors import SqueezeNetError
from squeezenet.inference.fidelity import FidelityGate, fidelity
from squeezenet.weights import load_weights

pytestmark = pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None
                                or importlib.util.find_spec("ai_edge_litert") is None,
                                reason="the [litert] extra is not installed")


@pytest.mark.slow
def test_a_tflite_file_gives_pytorchs_logits_at_any_batch_with_its_metadata_inside(tmp_path, capsys) -> None:
    from squeezenet.cli import main
    from squeezenet.deploy.litert import LiteRTModel, export_litert

    model = cifar_test_model(tmp_path)
    x = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "m.tflite"
    check = export_litert(model, path, check_images=x[:5])
    assert check.max_abs_diff < 1e-4 and check.top1_agreement == 1.0
    tflite = LiteRTModel(path)
    assert tflite.meta.replace(source=None) == model.meta and tflite.precision == "fp32"
    with torch.no_grad():
        for batch in (x[:1], x, x[:3]):  # converted at batch 1; the interpreter is resized for each batch
            torch.testing.assert_close(tflite(batch), model(batch), rtol=0, atol=1e-4)
    # the entry is TFLite's own metadata: a reader of the flatbuffer schema finds it by name
    from ai_edge_litert import schema_py_generated as schema

    flat = schema.Model.GetRootAs(path.read_bytes(), 0)
    names = [flat.Metadata(i).Name() for i in range(flat.MetadataLength())]
    assert b"squeezenet" in names
    clf = Classifier.load(path)
    assert clf.backend == "litert (fp32)" and clf.class_names == list(model.meta.classes)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file"]["precision"] == "fp32" and info["file"]["classes"] == 10
    with pytest.raises(SqueezeNetError, match="takes N x 3 x 32 x 32"):
        tflite(torch.zeros(1, 3, 16, 16))


@pytest.mark.slow
def test_int8_tflite_is_judged_against_fp32_and_a_broken_calibration_is_refused(tmp_path, trained) -> None:
    from squeezenet.deploy.litert import LiteRTModel, export_litert

    model = load_weights(trained).eval()
    calib, held = patterns(48, seed=1)[0], patterns(64, seed=2)[0]
    out = tmp_path / "q.tflite"
    check = export_litert(model, out, check_images=held[:8], int8=True, calibration=calib,
                          gate=FidelityGate(0.9, 15.0))
    q = LiteRTModel(out)
    assert q.precision == "int8" and check.int8 is not None and check.int8.snr_db >= 15
    assert check.int8.weights == "gptq" and "float logits" in check.int8.method
    with torch.no_grad():
        f = fidelity(model(held), q(held))  # held-out images: faithful, and the answers vary (a real test)
    assert f.agreement >= 0.9 and f.snr_db > 15 and len(set(model(held).argmax(1).tolist())) >= 5
    assert out.stat().st_size < 0.4 * 4 * sum(p.numel() for p in model.parameters())  # ~1 byte a weight, not 4
    bad = calib.clone()
    bad[0] *= 1000  # one outlier stretches every activation range: little resolution left for the rest
    with pytest.raises(SqueezeNetError, match="logit SNR"):
        export_litert(model, tmp_path / "bad.tflite", check_images=held[:8], int8=True, calibration=bad,
                      gate=FidelityGate(0.9, 15.0))
    assert not (tmp_path / "bad.tflite").exists()


def test_tflite_files_that_are_not_ours_are_one_line_errors(tmp_path, capsys) -> None:
    from squeezenet.cli import main

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 64)  # the identifier, then nonsense offsets
    text = tmp_path / "text.tflite"
    text.write_bytes(b"not a model at all")
    for path, words in ((garbage, "not a loadable LiteRT model"), (text, "not a loadable LiteRT model")):
        assert main(["predict", "-w", str(path), str(image)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and str(path) in err[0], err
    with pytest.raises(SqueezeNetError, match="does not run .tflite files"):
        Classifier.load(garbage, runtime="onnxruntime")


@pytest.mark.slow
def test_a_tflite_without_our_metadata_is_refused_and_the_cli_exports_and_predicts(tmp_path, capsys) -> None:
    from squeezenet.cli import main
    from squeezenet.deploy.litert import _quiet_converter

    with _quiet_converter():
        import litert_torch

        foreign = litert_torch.convert(torch.nn.Conv2d(3, 4, 1).eval(), (torch.zeros(1, 3, 8, 8),)).model_content()
    (tmp_path / "foreign.tflite").write_bytes(foreign)
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    assert main(["predict", "-w", str(tmp_path / "foreign.tflite"), str(image)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without squeezenet metadata" in err[0]
    cifar_test_model(tmp_path)
    out = tmp_path / "c.tflite"
    assert main(["export", "-w", str(tmp_path / "cifar.safetensors"), "-o", str(out), "--check", str(tmp_path),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "litert"
    answers = []
    for weights, runtime in ((out, "litert"), (out, "auto"), (tmp_path / "cifar.safetensors", "pytorch")):
        assert main(["predict", "-w", str(weights), str(image), "--runtime", runtime, "--json"]) == 0
        answers.append(json.loads(capsys.readouterr().out)[0]["top"][0]["label"])
    assert len(set(answers)) == 1
    assert main(["export", "-w", str(tmp_path / "cifar.safetensors"), "-o", str(out), "--batch", "4"]) == 1
    assert "--batch is for ExecuTorch" in capsys.readouterr().err


@pytest.mark.slow
def test_the_published_model_in_litert_answers_as_pytorch_on_real_images(tmp_path) -> None:
    from squeezenet.deploy.litert import LiteRTModel, export_litert
    from squeezenet.inference.preloaded import load_images

    model = load_weights(require_shared("deep-compression", "compressed_SqueezeNet.net")).eval()
    images = load_images(model, require_shared("imagenet-samples"), 40)[0]
    export_litert(model, tmp_path / "dc.tflite", check_images=images[:8])
    with torch.no_grad():
        reference = model(images)
    got = LiteRTModel(tmp_path / "dc.tflite", threads=1)(images)
    assert fidelity(reference, got).agreement == 1.0 and float((got - reference).abs().max()) < 1e-3
