"""predict and eval: on the published model and real images, and on awkward folders."""

import json
import shutil

import pytest
import torch

from conftest import require_shared
from squeezenet.cli import main
from squeezenet.inference import evaluate, predict
from squeezenet.models import create_model
from squeezenet.weights import load_weights, save_weights

SAMPLES = ("imagenet-samples",)
NET = ("deep-compression", "compressed_SqueezeNet.net")


@pytest.fixture(scope="module")
def dc_model():
    return load_weights(require_shared(*NET))


@pytest.fixture
def small_flat_folder(tmp_path):
    """Four real samples (one renamed with a quote, as in the ImageNet sample set) plus one corrupt file."""
    src = require_shared(*SAMPLES)
    folder = tmp_path / "flat"
    folder.mkdir()
    for name in ["n01440764_tench.JPEG", "n01843383_toucan.JPEG", "n02051845_pelican.JPEG"]:
        shutil.copy(src / name, folder / name)
    shutil.copy(src / "n01806143_peacock.JPEG", folder / "n01806143_lady's \"peacock\".JPEG")
    (folder / "n01443537_broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


@pytest.mark.slow
def test_eval_of_published_model_meets_acceptance(dc_model):
    result = evaluate(dc_model, require_shared(*SAMPLES), progress=False)
    assert result.n == 250 and result.skipped == 0
    assert result.top1 >= 0.64 and result.top5 >= 0.80


def test_eval_skips_and_reports_unreadable_images(dc_model, small_flat_folder):
    result = evaluate(dc_model, small_flat_folder, batch_size=2, progress=False)
    assert result.n == 4 and result.skipped == 1
    assert "n01443537_broken.JPEG" in result.skipped_files[0]
    # each of these four clear images is classified correctly by the published model
    assert result.top1 == 1.0


def test_eval_on_imagefolder_tree_with_wnid_folders(dc_model, small_flat_folder, tmp_path):
    tree = tmp_path / "tree"
    for f in small_flat_folder.iterdir():
        (tree / f.name[:9]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tree / f.name[:9] / f.name)
    flat = evaluate(dc_model, small_flat_folder, progress=False)
    nested = evaluate(dc_model, tree, progress=False)
    assert (nested.top1, nested.top5, nested.n, nested.skipped) == (flat.top1, flat.top5, flat.n, flat.skipped)


def test_eval_maps_folders_to_a_trained_models_class_names(tmp_path):
    from PIL import Image

    model = create_model("squeezenet1_1_cifar", num_classes=3).eval()
    model.meta = model.meta.replace(classes=["cat", "dog", "frog"])
    from squeezenet.weights import Preprocessing

    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", 32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    for cls in ["dog", "frog"]:  # a subset of the classes, so sorted-folder order would be wrong
        (tmp_path / cls).mkdir()
        Image.fromarray(torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8).numpy()).save(tmp_path / cls / "a.png")
    from squeezenet.data import list_labelled_images

    found = list_labelled_images(tmp_path, class_names=model.meta.classes)
    assert sorted(label for _, label in found.samples) == [1, 2]
    assert evaluate(model, tmp_path, progress=False).n == 2


def test_flat_folder_without_wnids_is_a_clear_error(dc_model, tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="without an ImageNet <wnid>_ prefix"):
        evaluate(dc_model, tmp_path, progress=False)
    with pytest.raises(ValueError, match="not a directory"):
        evaluate(dc_model, tmp_path / "nowhere", progress=False)


def test_predict_top_classes_and_errors(dc_model, small_flat_folder):
    images = sorted(small_flat_folder.iterdir())
    results = predict(dc_model, images, topk=3)
    by_name = {r.image.rsplit("/", 1)[-1]: r for r in results}
    assert by_name["n01443537_broken.JPEG"].error and not by_name["n01443537_broken.JPEG"].top
    assert by_name["n01440764_tench.JPEG"].top[0][1] == "tench"
    assert by_name["n01843383_toucan.JPEG"].top[0][0] == 96  # toucan
    for r in results:
        if r.top:
            probs = [p for _, _, p in r.top]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_is_independent_of_batching(dc_model, small_flat_folder):
    images = [p for p in sorted(small_flat_folder.iterdir()) if "broken" not in p.name]
    one = predict(dc_model, images, batch_size=1)
    many = predict(dc_model, images, batch_size=8)
    for a, b in zip(one, many):
        assert [i for i, _, _ in a.top] == [i for i, _, _ in b.top]
        assert all(abs(x - y) < 1e-5 for (_, _, x), (_, _, y) in zip(a.top, b.top))


def _same_top(a, b) -> bool:
    """Same classes in the same order, probabilities equal up to float rounding: batch size and kernel choice
    (AVX-512, AMX...) change the last bits."""
    return [(i, n) for i, n, _ in a] == [(i, n) for i, n, _ in b] and all(
        abs(x - y) <= 1e-5 for (_, _, x), (_, _, y) in zip(a, b))


def test_predict_on_folders_and_pil_images_matches_files(dc_model, small_flat_folder, tmp_path):
    from PIL import Image

    nested = small_flat_folder / "more"
    nested.mkdir()
    shutil.copy(small_flat_folder / "n01440764_tench.JPEG", nested / "again.jpg")
    (small_flat_folder / "notes.txt").write_text("not an image, and not listed: folders yield image files only")
    files = sorted(p for p in small_flat_folder.rglob("*") if p.suffix in (".JPEG", ".jpg"))
    by_file = predict(dc_model, files, topk=3)
    by_folder = predict(dc_model, [small_flat_folder], topk=3)
    assert [r.image for r in by_folder] == [str(p) for p in files]
    assert [r.error for r in by_folder] == [r.error for r in by_file]
    assert all(_same_top(a.top, b.top) for a, b in zip(by_folder, by_file))

    with Image.open(small_flat_folder / "n01843383_toucan.JPEG") as img:
        from_pil = predict(dc_model, [img.copy()], topk=3)[0]
    assert from_pil.image == "<image 0>"
    assert _same_top(from_pil.top, next(r.top for r in by_file if r.image.endswith("toucan.JPEG")))
    import numpy as np

    with Image.open(small_flat_folder / "n01843383_toucan.JPEG") as img:
        frame = np.asarray(img.convert("RGB"))
    assert _same_top(predict(dc_model, [frame], topk=3)[0].top, from_pil.top)
    with pytest.raises(ValueError, match="uint8"):
        predict(dc_model, [frame.astype(np.float32)])

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="a folder with no images"):
        predict(dc_model, [tmp_path / "empty"])


def test_predict_decodes_one_batch_at_a_time(dc_model, small_flat_folder, monkeypatch):
    import importlib

    module = importlib.import_module("squeezenet.inference.predict")  # the attribute is the function

    decoded: list[int] = []
    decoded_before_each_call: list[int] = []
    real_load = module.load_rgb_image
    monkeypatch.setattr(module, "load_rgb_image", lambda path: decoded.append(1) or real_load(path))

    class Spy(torch.nn.Module):  # the model, noting how many images were decoded before each forward
        def __init__(self):
            super().__init__()
            self.inner, self.meta = dc_model, dc_model.meta

        def forward(self, x):
            decoded_before_each_call.append(len(decoded))
            return self.inner(x)

    files = sorted(small_flat_folder.iterdir()) * 2  # 10 files, 2 of them unreadable
    results = predict(Spy(), files, batch_size=3)
    assert decoded_before_each_call == [3, 6, 9, 10] and len(results) == 10
    assert sum(r.error is not None for r in results) == 2


def test_cli_eval_predict_convert(tmp_path, small_flat_folder, capsys):
    net = require_shared(*NET)
    assert main(["eval", "--weights", str(net), "--data", str(small_flat_folder), "--json"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert set(d) == {"top1", "top5", "n", "skipped"} and d["n"] == 4 and d["skipped"] == 1
    assert "broken" in err and "warning" in err

    converted = tmp_path / "dc.safetensors"
    assert main(["convert", str(net), "-o", str(converted)]) == 0
    capsys.readouterr()
    assert main(["eval", "--weights", str(converted), "--data", str(small_flat_folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == d  # identical results from the converted file

    tench = small_flat_folder / "n01440764_tench.JPEG"
    assert main(["predict", str(tench), "--weights", str(converted), "--topk", "2", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred[0]["top"][0]["label"] == "tench" and len(pred[0]["top"]) == 2

    assert main(["predict", str(small_flat_folder), "--weights", str(converted), "--topk", "1"]) == 1  # one broken
    out, err = capsys.readouterr()
    assert "tench" in out and "toucan" in out and "peacock" in out and "n01443537_broken.JPEG: unreadable" in err
    assert main(["predict", str(small_flat_folder / "n01443537_broken.JPEG"), "--weights", str(converted)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines()[-1] == "squeezenet: error: none of the 1 images could be read"


@pytest.mark.parametrize("argv_tail, words", [
    (["--weights", "{cut}", "--data", "{data}"], "not a readable"),
    (["--weights", "{net}", "--data", "{missing}"], "not a directory"),
    (["--weights", "{cut_net}", "--data", "{data}"], "truncated"),
])
def test_cli_eval_bad_inputs_are_one_line(tmp_path, small_flat_folder, capsys, argv_tail, words):
    net = require_shared(*NET)
    cut = tmp_path / "cut.safetensors"
    save_weights(create_model("squeezenet1_1"), cut)
    cut.write_bytes(cut.read_bytes()[:1000])
    cut_net = tmp_path / "cut.net"
    cut_net.write_bytes(net.read_bytes()[:5000])
    fill = dict(cut=cut, data=small_flat_folder, net=net, missing=tmp_path / "missing", cut_net=cut_net)
    code = main(["eval", *[a.format(**fill) for a in argv_tail]])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and words in err and "Traceback" not in err


def test_preloading_too_many_images_is_refused_before_decoding(dc_model, small_flat_folder, monkeypatch):
    import importlib

    from squeezenet.inference.preloaded import load_images

    per_image = 2 * 4 * 3 * 227 * 227
    decoded: list[str] = []
    data_module = importlib.import_module("squeezenet.data.images")
    real_load = data_module.load_rgb_image
    monkeypatch.setattr(data_module, "load_rgb_image", lambda path: decoded.append(path) or real_load(path))
    with pytest.raises(ValueError, match=r"5 images of 227x227 would take .* use limit=3 or fewer"):
        load_images(dc_model, small_flat_folder, max_bytes=3 * per_image + 1)
    assert decoded == []  # nothing decoded before the refusal
    images, labels = load_images(dc_model, small_flat_folder, limit=3, max_bytes=3 * per_image + 1)
    assert len(decoded) == 3 and len(images) == len(labels) <= 3 and images.shape[1:] == (3, 227, 227)


def test_unlabelled_images_are_read_once_through_the_models_preprocessing(dc_model, small_flat_folder, monkeypatch,
                                                                          caplog):
    """The calibration/check reader shares load_images' memory check (before decoding) and decoding (the model's
    eval transforms; an unreadable file is a warning naming it, not an error)."""
    import importlib

    from squeezenet.inference.preloaded import load_images, unlabelled_images

    per_image = 2 * 4 * 3 * 227 * 227
    data_module = importlib.import_module("squeezenet.data.images")
    decoded: list[str] = []
    real_load = data_module.load_rgb_image
    monkeypatch.setattr(data_module, "load_rgb_image", lambda path: decoded.append(path) or real_load(path))
    with pytest.raises(ValueError, match=r"flat: 5 images of 227x227 would take .* use 3 or fewer"):
        unlabelled_images(dc_model.meta, small_flat_folder, max_bytes=3 * per_image + 1)
    assert decoded == []
    with caplog.at_level("WARNING", logger="squeezenet"):
        images = unlabelled_images(dc_model.meta, small_flat_folder)
    assert len(decoded) == 5 and images.shape == (4, 3, 227, 227)  # the broken JPEG skipped
    assert any("n01443537_broken.JPEG" in r.getMessage() for r in caplog.records)
    labelled, _ = load_images(dc_model, small_flat_folder)
    assert torch.equal(images, labelled)  # the same pixels as evaluation's reader
    with pytest.raises(ValueError, match="not a folder of images"):
        unlabelled_images(dc_model.meta, small_flat_folder / "n01440764_tench.JPEG")
