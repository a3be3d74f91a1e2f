"""Hostile files, images and options: one line naming the problem, exit 1, memory bounded (issue: reliability)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import image_folder
from squeezenet import create_model, save_weights
from squeezenet.cli import main
from squeezenet.weights.sqz import MAGIC


def _one_line(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 1, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("squeezenet: error: "), err
    assert len(err[0]) <= 320, len(err[0])
    for word in words:
        assert word in err[0], err[0]
    return err[0]


def _edit_sqz(path: Path, edit) -> Path:
    """Edit the JSON header of a .sqz and recompute its length and checksum (a forger's file, not a damaged one)."""
    data = path.read_bytes()
    header_len = struct.unpack_from("<I", data, len(MAGIC) + 2)[0]
    start = len(MAGIC) + 6
    header = json.loads(zlib.decompress(data[start:start + header_len]))
    text = edit(header)
    packed = zlib.compress((text if isinstance(text, str) else json.dumps(header)).encode())
    body = data[:len(MAGIC) + 2] + struct.pack("<I", len(packed)) + packed + data[start + header_len:-32]
    path.write_bytes(body + hashlib.sha256(body).digest())
    return path


def _edited_onnx(tmp_path: Path, name: str, edit) -> Path:
    """Our ONNX export of the CIFAR network (``m.onnx``) and a copy ``name`` whose metadata properties are
    ``edit(key, value)``."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(create_model("squeezenet1_1_cifar"), path, check_images=torch.rand(2, 3, 32, 32))
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        prop.value = edit(prop.key, prop.value)
    onnx.save(proto, str(tmp_path / name))
    return tmp_path / name


@pytest.fixture()
def small(tmp_path) -> Path:
    return save_weights(create_model("squeezenet1_1_cifar"), tmp_path / "small.sqz")


def test_a_text_file_named_pth_is_one_line_in_every_command(tmp_path, capsys) -> None:
    bad = tmp_path / "x.pth"
    bad.write_text("hello, I am not a weights file\n")
    images = image_folder(tmp_path / "images", 2)
    for argv in (["info", str(bad)], ["predict", "-w", str(bad), str(images)], ["eval", "-w", str(bad), "-d", str(images)],
                 ["convert", str(bad), "-o", str(tmp_path / "y.sqz")],
                 ["compress", "-w", str(bad), "-o", str(tmp_path / "z.sqz")],
                 ["export", "-w", str(bad), "-o", str(tmp_path / "z.onnx")]):
        _one_line(capsys, argv, str(bad), "not a readable PyTorch weights file")
    assert not (tmp_path / "y.sqz").exists() and not (tmp_path / "z.sqz").exists()


def test_a_malicious_pickle_is_refused_with_its_reason(tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    line = _one_line(capsys, ["info", str(evil)], str(evil), "refused: code in a weights file is never run")
    assert "os.system" in line or "posix.system" in line
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda h: "[" * 50_000 + "]" * 50_000, "nested 50,000 levels"),
    (lambda h: h["tensors"][0].update(dtype=["float32"]), "unknown storage"),
    (lambda h: h["tensors"][0].update(shape=[True, 3]), "malformed key or shape"),
    (lambda h: h["meta"]["config"]["stem"].update(out_channels=2**53), "stem.out_channels must be an integer in 1..16,384"),
    (lambda h: h["meta"]["config"]["stem"].update(kernel_size=2**31 - 1), "stem.kernel_size"),
    (lambda h: h["meta"]["config"].update(classifier_padding=1000), "classifier_padding"),
    (lambda h: h["meta"]["preprocessing"].update(mean=[float("nan"), 0, 0]), "NaN is not a JSON number"),
    (lambda h: h["meta"].update(version=0), "metadata version 0"),
    (lambda h: h["meta"].update(classes=["a"] * 9), "9 class names for a 10-class model"),
    (lambda h: h["meta"]["config"].update(fires=[h["meta"]["config"]["fires"][0]] * 1000), "1 to 64 Fire modules"),
])
def test_forged_sqz_headers_are_refused_before_anything_is_built(small, capsys, edit, words) -> None:
    _one_line(capsys, ["info", str(_edit_sqz(small, edit))], str(small), words)


def test_version_zero_sqz_is_refused(small, capsys) -> None:
    data = bytearray(small.read_bytes())
    struct.pack_into("<H", data, len(MAGIC), 0)
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    small.write_bytes(bytes(data))
    _one_line(capsys, ["info", str(small)], ".sqz version 0 does not exist")


def test_huge_architecture_in_safetensors_metadata_costs_no_memory(tmp_path) -> None:
    """A 20 KB file claiming a network of 10^8 classes or 2^53 channels is refused before any allocation: run in
    a process whose address space cannot hold a 1 GB tensor."""
    from safetensors.torch import save_file

    model = create_model("squeezenet1_1_cifar")
    meta = model.meta.to_dict()
    cases = {"classes": dict(meta, config=dict(meta["config"], num_classes=10**8), classes=None),
             "channels": dict(meta, config=dict(meta["config"], stem=dict(meta["config"]["stem"], out_channels=2**30)))}
    for name, claim in cases.items():
        save_file({"w": torch.zeros(2)}, str(tmp_path / f"{name}.safetensors"),
                  metadata={"format": "pt", "squeezenet": json.dumps(claim)})
    code = ("import resource, sys; from squeezenet.cli import main; import squeezenet.report, squeezenet.weights; "
            "vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')) << 10; "
            "resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30))); "  # 1 GB more than imports take
            "sys.exit(main(['info', sys.argv[1]]))")
    for name in cases:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{name}.safetensors")], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr[-2000:]
        assert "more than this toolkit builds" in done.stderr or "must be an integer in" in done.stderr


def test_an_image_just_under_pillows_bomb_limit_is_one_skipped_image(tmp_path, capsys) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (12_000, 12_000)).save(big, optimize=True)  # 144 megapixels in ~150 KB
    assert big.stat().st_size < 1_000_000
    model = save_weights(create_model("squeezenet1_1_cifar"), tmp_path / "m.sqz")
    small = tmp_path / "ok.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(small)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["predict", "-w", str(model), str(big), str(small), "--json"]) == 1  # one image could not be read
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert "144,000,000" not in rows[0]["error"] and "12,000 x 12,000 pixels" in rows[0]["error"]
    assert "top" in rows[1]
    assert "DecompressionBomb" not in captured.err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: it was never decoded


def test_a_model_with_named_classes_refuses_a_folder_of_other_classes(tmp_path, capsys) -> None:
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in ("airplane", "automobile"):
        image_folder(folder / name, 1)
    imagenet = save_weights(create_model("squeezenet1_1"), tmp_path / "imagenet.sqz")  # 1000 ImageNet names
    _one_line(capsys, ["eval", "-w", str(imagenet), "-d", str(folder)], "'airplane' are not among the model's classes")
    unnamed = save_weights(create_model("squeezenet1_1_cifar", num_classes=2), tmp_path / "unnamed.sqz")
    assert main(["eval", "-w", str(unnamed), "-d", str(folder), "--json"]) == 0  # "class 0", "class 1": folder order


@pytest.mark.parametrize("value, words", [
    ("epochs=abc", "epochs must be a whole number, got 'abc'"),
    ("epochs=2.5", "epochs must be a whole number, got 2.5"),
    ("epochs=1e400", "epochs must be a whole number, got '1e400'"),
    ("a=[1,", "--set a: '[1,' is not a plain YAML value"),
    ("epochs=!!python/object/apply:os.system [ls]", "--set epochs: '!!python/object/apply:os.system [ls]' is not a plain "
                                                    "YAML value (a YAML tag, which is never read)"),
    ("data.workers=99999999999", "data.workers must be in 0..256"),
    ("model_options.stem_pool=maybe", "stem_pool"),
    ("model_options.bogus=1", "no option 'bogus'"),
    ("optimizer.lr=.inf", "--set optimizer.lr: '.inf' is not a finite number"),
])
def test_bad_recipe_overrides_are_refused_before_any_data_is_loaded(tmp_path, capsys, value, words) -> None:
    pytest.importorskip("lightning")
    missing = tmp_path / "no-such-data"  # never reached: the recipe is checked first
    _one_line(capsys, ["train", "--data", str(missing), "-o", str(tmp_path / "run"), "--set", value], words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, words", [
    (["--epochs", "1"], "epochs=abc", "epochs must be a whole number, got 'abc'"),
    (["--epochs", "1"], "epochs=1e400", "epochs must be a whole number, got '1e400'"),
    (["--lr", "0.1"], "optimizer.lr=-1", "optimizer.lr"),
])
def test_a_bad_set_value_is_refused_even_when_a_flag_sets_the_same_field(tmp_path, capsys, flag, value, words) -> None:
    pytest.importorskip("lightning")
    line = _one_line(capsys, ["train", "--data", str(tmp_path / "no-such-data"), "-o", str(tmp_path / "run"), *flag,
                              "--set", value], words)
    assert "--set --" not in line  # the library's parameter names are not rewritten into flags after --set
    assert not (tmp_path / "run").exists()


def test_onnx_whose_graph_disagrees_with_its_metadata_fails_at_load(tmp_path, capsys) -> None:
    onnx = pytest.importorskip("onnx")

    def nine_classes(key: str, value: str) -> str:
        if key == "classes":
            return json.dumps(json.loads(value)[:-1])
        return json.dumps({**json.loads(value), "num_classes": 9}) if key == "config" else value

    path = _edited_onnx(tmp_path, "short.onnx", nine_classes).parent / "m.onnx"
    _one_line(capsys, ["info", str(tmp_path / "short.onnx")], "expected an output 'logits' of N x 9")
    renamed = onnx.load(str(path))
    renamed.graph.input[0].name = "x"
    for node in renamed.graph.node:
        node.input[:] = ["x" if i == "image" else i for i in node.input]
    onnx.save(renamed, str(tmp_path / "renamed.onnx"))
    images = image_folder(tmp_path / "images", 1)
    _one_line(capsys, ["predict", "-w", str(tmp_path / "renamed.onnx"), str(images), "--runtime", "onnxruntime"],
              "expected one input 'image'")


def test_long_bad_values_are_cut_in_messages(small, capsys) -> None:
    line = _one_line(capsys, ["info", str(_edit_sqz(small, lambda h: h["meta"].update(source="x" * 1_000_000)))])
    assert "source must be a string of at most 1,000 characters" in line


def test_predict_json_stays_json_when_a_model_overflows(tmp_path, capsys) -> None:
    model = create_model("squeezenet1_1_cifar")
    with torch.no_grad():
        model.get_classifier().weight.fill_(3e38)  # finite weights whose logits overflow to inf
    path = save_weights(model, tmp_path / "overflow.safetensors")
    images = image_folder(tmp_path / "images", 2)
    assert main(["predict", "-w", str(path), str(images), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)  # never a bare NaN
    assert [r.get("error", "").startswith("the model's outputs for this image are not finite") for r in rows] == [True] * 2


def test_json_output_is_json_even_when_the_command_fails(small, tmp_path, capsys) -> None:
    """A NaN mean refuses the file at load: the one line on stderr, and for --json readers {"error": ...} on stdout."""
    bad = _edit_sqz(small, lambda h: h["meta"]["preprocessing"].update(mean=[float("nan"), 0, 0]))
    for argv in (["predict", "-w", str(bad), str(image_folder(tmp_path / "images", 1)), "--json"], ["info", str(bad), "--json"]):
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out) == {"error": captured.err.strip().removeprefix("squeezenet: error: ")}
        assert "NaN is not a JSON number" in captured.err


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".sqz"])
def test_converting_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, suffix) -> None:
    mount = tmp_path / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        src = save_weights(create_model("squeezenet1_1_cifar", batch_norm=True), tmp_path / "m.safetensors")  # 2.9 MB
        dst = mount / f"m{suffix}"
        _one_line(capsys, ["convert", str(src), "-o", str(dst)], str(dst))
        assert list(mount.iterdir()) == []  # no partial file, no temporary file
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_truncated_pth_names_the_file(tmp_path, capsys) -> None:
    path = tmp_path / "cut.pth"
    full = save_weights(create_model("squeezenet1_1_cifar"), tmp_path / "full.pth").read_bytes()
    path.write_bytes(full[: len(full) // 3])
    _one_line(capsys, ["info", str(path)], f"{path}: not a readable PyTorch weights file")


def test_a_file_naming_thousands_of_wrong_tensors_or_huge_counts_stays_one_short_line(small, tmp_path, capsys) -> None:
    """The campaign's longest messages: every tensor name echoed, or a forged count printed with all its digits."""
    from safetensors.torch import save_file

    model = create_model("squeezenet1_1_cifar")
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("features.3.")}
    state = {f"extra.{i}": torch.zeros(1) for i in range(1000)} | kept
    metadata = {"format": "pt", "squeezenet": json.dumps(model.meta.to_dict())}
    save_file(state, str(tmp_path / "many.safetensors"), metadata=metadata)
    line = _one_line(capsys, ["info", str(tmp_path / "many.safetensors")], "1,000 unexpected ('extra.0', 'extra.1', ...)")
    assert " missing ('features.3." in line
    huge = _edit_sqz(small, lambda h: h["tensors"][0].update(kind="shared", kept=10**80, centroids=1, streams=[0, 0]))
    _one_line(capsys, ["info", str(huge)], "a number of about 81 digits kept entries")


def test_refusals_name_the_file_for_an_inflating_sqz_header_and_a_wrong_class_count(small, tmp_path, capsys) -> None:
    """The campaign's refusals that did not say which file: a .sqz header that inflates past its limit, an ONNX
    file whose class list does not fit its architecture."""
    bomb = _edit_sqz(small, lambda h: json.dumps(h) + " " * (17 << 20))  # 17 MB of whitespace, ~17 KB compressed
    _one_line(capsys, ["info", str(bomb)], f"{bomb}: .sqz header over 16,777,216 bytes once inflated")
    seven = _edited_onnx(tmp_path, "seven.onnx",
                         lambda key, value: json.dumps(json.loads(value)[:-3]) if key == "classes" else value)
    path = seven.parent / "m.onnx"
    for runtime in ("onnxruntime", "openvino-fp32"):
        if runtime.startswith("openvino"):
            pytest.importorskip("openvino")
        _one_line(capsys, ["predict", "-w", str(tmp_path / "seven.onnx"), str(path), "--runtime", runtime],
                  f"{tmp_path / 'seven.onnx'}: 7 class names for a 10-class model")


def test_topk_above_the_class_count_says_so_once(tmp_path, capsys) -> None:
    images = image_folder(tmp_path / "images", 3)
    assert main(["predict", "-w", str(save_weights(create_model("squeezenet1_1_cifar"), tmp_path / "m.sqz")), str(images),
                 "--topk", "100000", "--json"]) == 0
    captured = capsys.readouterr()
    assert [len(r["top"]) for r in json.loads(captured.out)] == [10, 10, 10]
    assert captured.err.count("topk=100000: the model has 10 classes; listing all 10") == 1


def test_eval_strict_fails_on_any_unreadable_image(tmp_path, capsys) -> None:
    weights = save_weights(create_model("squeezenet1_1_cifar", num_classes=2), tmp_path / "m.sqz")
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a", "b"):
        image_folder(folder / name, 2)
    (folder / "a" / "broken.png").write_bytes(b"not an image")
    assert main(["eval", "-w", str(weights), "-d", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1  # default: skipped and counted
    _one_line(capsys, ["eval", "-w", str(weights), "-d", str(folder), "--strict"],
              "--strict: 1 image(s) could not be read", "broken.png")
    _one_line(capsys, ["eval", "-w", str(weights), "-d", str(folder), "--strict", "--reference", str(weights)],
              "--strict: 1 image(s) could not be read")
