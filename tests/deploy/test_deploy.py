"""ONNX export (fp32, int8), the runtime Classifier, and the bench command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cifar_test_model, require_shared
from squeezenet.deploy import Classifier, OnnxModel, export_onnx
from squeezenet.inference.fidelity import FidelityGate
from squeezenet.inference.preloaded import load_images
from squeezenet.models import create_model
from squeezenet.weights import load_weights, save_weights

DC = ("deep-compression", "compressed_SqueezeNet.net")


def _cifar_model(tmp_path: Path) -> Path:
    cifar_test_model(tmp_path)
    return tmp_path / "cifar.safetensors"


def client_predict(onnx_path: Path, image_paths: list[Path]) -> np.ndarray:
    """What a client with only onnxruntime, Pillow and numpy does: preprocessing from the file's metadata alone."""
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    resize, crop = int(meta["resize"]), int(meta["crop"])
    mean, std = np.array(json.loads(meta["mean"])), np.array(json.loads(meta["std"]))
    batch = []
    for path in image_paths:
        img = Image.open(path).convert("RGB")
        if meta["resize_mode"] == "square":
            img = img.resize((resize, resize), Image.BILINEAR)
        else:
            w, h = img.size
            s = resize / min(w, h)
            img = img.resize((max(resize, round(w * s)), max(resize, round(h * s))), Image.BILINEAR)
        w, h = img.size
        left, top = round((w - crop) / 2), round((h - crop) / 2)
        x = np.asarray(img.crop((left, top, left + crop, top + crop)), dtype=np.float32)
        x = x / 255.0 * float(meta["value_range"])
        if meta["channel_order"] == "BGR":
            x = x[..., ::-1]
        batch.append(((x - mean) / std).transpose(2, 0, 1))
    logits = session.run(None, {session.get_inputs()[0].name: np.stack(batch).astype(np.float32)})[0]
    return logits.argmax(1)


@pytest.mark.slow
def test_published_model_exports_with_same_top1_on_every_sample_and_client_needs_only_metadata(tmp_path) -> None:
    net, samples = require_shared(*DC), require_shared("imagenet-samples")
    model = load_weights(net)
    images, labels = load_images(model, samples)
    out = tmp_path / "dc.onnx"
    check = export_onnx(model, out, check_images=images[:32])
    assert check.max_abs_diff < 1e-3 and check.top1_agreement == 1.0
    onnx_model = OnnxModel(out)
    with torch.inference_mode():
        torch_top1 = torch.cat([model(images[i:i + 50]) for i in range(0, len(images), 50)]).argmax(1)
    onnx_top1 = onnx_model(images).argmax(1)
    assert torch.equal(torch_top1, onnx_top1)  # every one of the 250 sample images
    files = sorted(samples.glob("*.JPEG"))[:40]
    client = client_predict(out, files)
    ours = [p.top[0][0] for p in Classifier.load(net).predict(files, topk=1)]
    assert (client == np.array(ours)).mean() >= 0.95  # Pillow's resize vs torchvision's: a borderline image may flip


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_requested_opset_is_the_one_written_with_dynamic_batch(tmp_path, opset) -> None:
    import onnx
    import onnxruntime as ort

    model = load_weights(_cifar_model(tmp_path))
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = tmp_path / f"m{opset}.onnx"
    check = export_onnx(model, out, check_images=images, opset=opset)  # below 18: the TorchScript exporter
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert check.max_abs_diff < 1e-4
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert pools and all(any(a.name == "ceil_mode" and a.i == 1 for a in n.attribute) for n in pools)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch dimension is free
        logits = session.run(None, {"image": images[:batch].numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(logits), model(images[:batch]).detach(), rtol=0, atol=1e-4)


def test_unsupported_opsets_are_refused_before_exporting(tmp_path) -> None:
    model = load_weights(_cifar_model(tmp_path))
    images = torch.randn(2, 3, 32, 32)
    for opset, words in ((9, "choose 10 to"), (99, "choose 10 to")):
        with pytest.raises(ValueError, match=words):
            export_onnx(model, tmp_path / "x.onnx", check_images=images, opset=opset)
    with pytest.raises(ValueError, match="int8 export needs opset 13"):
        export_onnx(model, tmp_path / "x.onnx", check_images=images, opset=11, int8=True, calibration=images)
    assert not (tmp_path / "x.onnx").exists()


def test_int8_export_is_smaller_and_agrees(tmp_path) -> None:
    weights = _cifar_model(tmp_path)
    model = load_weights(weights)
    calib = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m8.onnx"
    export_onnx(model, fp32, check_images=calib[:16])
    check = export_onnx(model, int8, check_images=calib[:32], int8=True, calibration=calib,
                        gate=FidelityGate(0.5, -300.0), force=True)
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    assert OnnxModel(int8).precision == "int8" and check.int8 is not None
    assert check.int8.snr_db > 10  # a random model answers ~one class: agreement alone would pass a broken file
    with pytest.raises(ValueError, match="calibration"):
        export_onnx(model, tmp_path / "x.onnx", check_images=calib, int8=True)


def test_classifier_loads_every_format_with_the_same_answers(tmp_path, cifar_onnx) -> None:
    from PIL import Image

    weights, onnx_path = cifar_onnx.with_suffix(".safetensors"), cifar_onnx
    model = load_weights(weights)
    sqz = save_weights(model, tmp_path / "m.pth")
    rng = np.random.default_rng(0)
    images = []
    for i, mode in enumerate(("RGB", "L", "RGBA", "P")):  # other modes are converted to RGB
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).convert(mode).save(path)
        images.append(path)
    answers = {}
    for path in (weights, onnx_path, sqz):
        clf = Classifier.load(path)
        preds = clf.predict(images, topk=3)
        answers[path.suffix] = [[k for k, _, _ in p.top] for p in preds]
        assert all(p.error is None for p in preds)
    assert answers[".onnx"] == answers[".safetensors"] == answers[".pth"]
    assert Classifier.load(onnx_path).backend.startswith("onnxruntime")
    with pytest.raises(ValueError, match="3 x 32 x 32"):
        OnnxModel(onnx_path)(torch.zeros(1, 3, 64, 64))


@pytest.mark.slow
def test_foreign_onnx_and_mismatched_weights_are_one_line_errors(tmp_path, capsys) -> None:
    from squeezenet.cli import main  # in-process: the verb's one line and exit status are the subject

    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1).eval(), (torch.zeros(1, 3, 8, 8),), str(foreign), dynamo=True,
                      external_data=False)
    wrong = tmp_path / "wrong.pth"
    state = create_model("squeezenet1_1").state_dict()
    state["classifier.1.weight"] = torch.zeros(7, 512, 1, 1)  # 7 classes, 1000 biases: no such architecture
    torch.save(state, wrong)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(img)
    for weights, message in ((foreign, "without squeezenet metadata"), (wrong, "do not match"),
                             (tmp_path / "garbage.onnx", "not a loadable ONNX")):
        if weights.name == "garbage.onnx":
            weights.write_bytes(b"not onnx at all")
        assert main(["predict", "-w", str(weights), str(img)]) == 1
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], err


@pytest.mark.slow
def test_export_and_bench_cli(tmp_path, capsys, monkeypatch) -> None:
    from squeezenet.cli import main

    test_dir = require_shared("cifar10", "test")
    weights = _cifar_model(tmp_path)
    data = tmp_path / "data"
    for cls, name in (("airplane", "c0"), ("cat", "c3")):  # folders named after the model's classes (c0..c9)
        (data / name).mkdir(parents=True)
        for p in sorted((test_dir / cls).iterdir())[:20]:
            (data / name / p.name).symlink_to(p)
    out = tmp_path / "e.onnx"  # in-process: the verbs' own behaviour is the subject, not the interpreter start
    assert main(["export", "-w", str(weights), "-o", str(out), "--int8", "--calibration", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 32 and OnnxModel(out).precision == "int8"
    assert main(["eval", "-w", str(out), "-d", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the verb sets it
    assert main(["bench", "-w", str(weights), "-d", str(data), "--repeats", "3", "--brotli-quality", "1",
                 "--work-dir", str(tmp_path / "b"),
                 "--runtime", "pytorch", "--runtime", "onnxruntime", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert [(r["runtime"], r["precision"]) for r in rows] == [("pytorch", "fp32"), ("onnxruntime", "fp32"),
                                                              ("onnxruntime", "int8"), ("pytorch", "fp32")]
    assert rows[1]["top1"] == rows[0]["top1"] and rows[1]["agreement"] == 1.0 and rows[0]["kl"] == 0.0
    assert rows[2]["size_bytes"] < rows[1]["size_bytes"] and rows[1]["vs_onnxruntime"] == 1.0
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 for r in rows) and rows[3]["top1"] is None
    # transfer sizes are real compressions of the file; load time and memory come from a runtime-only process
    assert all(0 < r["gzip_bytes"] < r["size_bytes"] for r in rows[:3])
    assert all(r["peak_rss_mb"] > 10 and r["load_ms"] > 0 for r in rows[:3])
    assert rows[1]["peak_rss_mb"] < rows[0]["peak_rss_mb"]  # onnxruntime alone needs less memory than torch
    assert result["cpu"] and result["omp_wait_policy"] == "PASSIVE" and result["peaks"]["fp32"] > 1e9


def test_onnx_model_carries_the_same_meta_and_runs_where_asked(tmp_path, capsys):
    from squeezenet.cli import main

    weights = _cifar_model(tmp_path)
    model = load_weights(weights)
    model.meta = model.meta.replace(source="trained here")
    onnx_path = tmp_path / "c.onnx"
    export_onnx(model, onnx_path, check_images=torch.rand(2, 3, 32, 32))
    onnx = OnnxModel(onnx_path)
    assert onnx.meta.config == model.meta.config and onnx.meta.classes == model.meta.classes
    assert onnx.meta.preprocessing == model.meta.preprocessing and onnx.meta.source == "trained here"
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    assert main(["predict", str(image), "-w", str(onnx_path), "--provider", "CPUExecutionProvider", "--json"]) == 0
    capsys.readouterr()
    assert main(["predict", str(image), "-w", str(onnx_path), "--provider", "NoSuchExecutionProvider"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no NoSuchExecutionProvider; available: " in err and "CPUExecutionProvider" in err
    assert main(["predict", str(image), "-w", str(weights), "--provider", "CPUExecutionProvider"]) == 1
    assert "execution providers are for .onnx files" in capsys.readouterr().err
    assert main(["predict", str(image), "-w", str(weights), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["label"].startswith("c")
    assert main(["predict", str(image), "-w", str(weights), "--device", "tpu9"]) == 1
    assert "unknown device 'tpu9'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", "-w", str(weights), "-d", str(tmp_path), "--device", "cuda"]) == 1
        assert "no CUDA GPU" in capsys.readouterr().err
