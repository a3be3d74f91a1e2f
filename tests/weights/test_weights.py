"""Weight formats, conversion, presets and named weights."""

import os
import urllib.error

import pytest
import torch
import torchvision

from squeezenet.cli import main
from squeezenet.models import create_model
from squeezenet.weights import (
    CAFFE,
    TORCHVISION,
    Preprocessing,
    convert_weights,
    load_weights,
    read_weights_file,
    save_weights,
)
from squeezenet.weights.pretrained import PRETRAINED


def _bit_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


# --- presets ----------------------------------------------------------------------------------------

def _constant_image(r: int, g: int, b: int, h: int = 300, w: int = 400) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).clone()


def test_caffe_preset_is_bgr_0_255_minus_mean_227():
    x = CAFFE.transforms()(_constant_image(10, 20, 30))
    assert x.shape == (3, 227, 227)
    # BGR order, mean (104, 117, 123) subtracted, no scaling
    for channel, value in enumerate([30 - 104, 20 - 117, 10 - 123]):
        torch.testing.assert_close(x[channel], torch.full((227, 227), float(value)))


def test_torchvision_preset_is_rgb_mean_std_224():
    x = TORCHVISION.transforms()(_constant_image(10, 20, 30))
    assert x.shape == (3, 224, 224)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c, v in enumerate([10, 20, 30]):
        torch.testing.assert_close(x[c], torch.full((224, 224), (v / 255 - mean[c]) / std[c]))


def test_resize_modes():
    # a 100x400 stripe image: 'shorter' keeps the aspect (crop sees the middle), 'square' warps it whole
    img = torch.zeros(3, 100, 400, dtype=torch.uint8)
    img[:, :, :100] = 255  # left quarter white
    shorter = Preprocessing("s", 256, 256, (0, 0, 0), (1, 1, 1)).transforms()(img)
    square = Preprocessing("q", 256, 256, (0, 0, 0), (1, 1, 1), resize_mode="square").transforms()(img)
    assert shorter[:, :, :10].max() < 0.01  # the white quarter was cropped away
    assert square[:, :, :10].min() > 0.99  # the white quarter survives the warp


def test_preprocessing_round_trip_and_validation():
    assert Preprocessing.from_dict(CAFFE.to_dict()) == CAFFE
    with pytest.raises(ValueError, match="crop"):
        Preprocessing("x", resize=200, crop=224, mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="unknown field"):
        Preprocessing.from_dict({**CAFFE.to_dict(), "gamma": 2})


def test_models_without_preprocessing_get_one_that_fits_their_stem(tmp_path):
    from squeezenet.train.recipe import load_recipe
    from squeezenet.weights import CIFAR

    data = load_recipe("cifar10").data  # the small-image default is how the cifar10 recipe feeds its models
    assert (CIFAR.crop, CIFAR.resize, CIFAR.mean, CIFAR.std) == (data.image_size, data.resize, tuple(data.mean), tuple(data.std))
    for name, kwargs, expected in (("squeezenet1_1_cifar", {}, CIFAR), ("squeezenet_design", {"small_stem": True}, CIFAR),
                                   ("squeezenet1_1", {}, TORCHVISION), ("squeezenet1_0", {"caffe_compat": True}, CAFFE)):
        save_weights(create_model(name, **kwargs), tmp_path / "m.safetensors")  # no .preprocessing set
        assert load_weights(tmp_path / "m.safetensors").meta.preprocessing == expected, name


# --- formats ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [("squeezenet1_1", {}), ("squeezenet1_0_complex_bypass", {"batch_norm": True}),
                                          ("squeezenet_design", {"sr": 0.25, "num_classes": 10})])
def test_round_trip_is_bit_exact_and_self_describing(tmp_path, name, kwargs):
    model = create_model(name, **kwargs)
    for m in model.modules():  # make BN statistics non-trivial so they must survive too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
    model.meta = model.meta.replace(classes=[f"c{i}" for i in range(model.num_classes)])
    a = save_weights(model, tmp_path / "a.safetensors")
    b = convert_weights(a, tmp_path / "b.pth")
    c = convert_weights(b, tmp_path / "c.pt")
    d = convert_weights(c, tmp_path / "d.safetensors")
    for path in (a, b, c, d):
        loaded = load_weights(path)  # no flags: architecture and preprocessing come from the file
        assert loaded.config == model.config
        assert loaded.meta.classes == model.meta.classes
        assert _bit_equal(loaded.state_dict(), model.state_dict())
    meta_a, meta_d = read_weights_file(a).meta, read_weights_file(d).meta
    assert meta_a.config == meta_d.config and meta_a.preprocessing == meta_d.preprocessing == TORCHVISION
    assert meta_d.source == "a.safetensors"  # provenance is kept across conversions


def test_our_pth_is_a_plain_torchvision_state_dict(tmp_path):
    model = create_model("squeezenet1_0")
    path = save_weights(model, tmp_path / "w.pth")
    reference = torchvision.models.squeezenet1_0()
    reference.load_state_dict(torch.load(path, weights_only=True))  # strict
    assert _bit_equal(reference.state_dict(), model.state_dict())


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1", "alexnet"])
def test_plain_torchvision_files_are_recognised(tmp_path, name):
    reference = getattr(torchvision.models, name)(num_classes=12).eval()
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    model = load_weights(tmp_path / "tv.pth")
    assert model.meta.preprocessing == TORCHVISION and model.num_classes == 12
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-6)


def test_lightning_style_checkpoint_reads_its_state_dict(tmp_path):
    model = create_model("squeezenet1_1")
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    assert _bit_equal(load_weights(tmp_path / "ckpt.pt").state_dict(), model.state_dict())


def test_weights_read_survive_their_file_being_rewritten_in_place(tmp_path):
    """A tensor left memory-mapped from its file kills the process (SIGBUS) once the file is truncated (the fuzz
    test met it); run in a child process (one for both formats) so that a regression fails this test instead of the
    test run."""
    import subprocess
    import sys
    import textwrap

    paths = [str(save_weights(create_model("squeezenet1_1"), tmp_path / f"w{ext}")) for ext in (".pth", ".safetensors")]
    child = textwrap.dedent(f"""
        import torch
        from squeezenet.weights import load_weights, read_weights_file
        for path in {paths!r}:
            read = read_weights_file(path).state_dict.values()
            model = load_weights(path)
            before = sum(float(p.sum()) for p in [*read, *model.parameters()])
            with open(path, "r+b") as f:  # rewritten in place, as an editor or a second save would
                f.truncate(0)
                f.write(b"x" * 100)
            after = sum(float(p.sum()) for p in [*read, *model.parameters()])
            print(path.rsplit(".", 1)[1], "same" if before == after else "changed")
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["pth", "same", "safetensors", "same"], (
        done.returncode, done.stdout, done.stderr[-500:])


@pytest.fixture
def good_files(tmp_path):
    model = create_model("squeezenet1_1")
    return {ext: save_weights(model, tmp_path / f"good{ext}") for ext in (".pth", ".safetensors")}


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
@pytest.mark.parametrize("keep", [0, 7, 100, 0.5, 0.999])
def test_truncated_files_are_clear_errors(tmp_path, good_files, ext, keep):
    raw = good_files[ext].read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / f"bad{ext}"
    bad.write_bytes(raw[:n])
    with pytest.raises(ValueError, match="not a readable"):
        read_weights_file(bad)


def test_garbage_and_unsafe_files_are_rejected(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_weights_file(tmp_path / "junk.safetensors")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")  # weights_only=True must refuse to run this
    with pytest.raises(ValueError, match="not a readable PyTorch"):
        read_weights_file(tmp_path / "evil.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        read_weights_file(tmp_path / "list.pth")
    with pytest.raises(ValueError, match="cannot read '.onnx'"):
        read_weights_file(tmp_path / "model.onnx")
    with pytest.raises(FileNotFoundError):
        read_weights_file(tmp_path / "missing.pth")


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    state = torchvision.models.squeezenet1_0().state_dict()
    state["classifier.1.weight"] = state["classifier.1.weight"][:, :100]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not match"):
        load_weights(tmp_path / "bad.pth")
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="cannot tell the architecture"):
        load_weights(tmp_path / "other.pth")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    model = create_model("squeezenet1_1")
    path = save_weights(model, tmp_path / "w.pth")
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_weights(create_model("squeezenet1_1"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.pth"]  # no temp file left behind


# --- named weights ----------------------------------------------------------------------------------

def test_named_weights_load_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    entry = PRETRAINED["squeezenet1_1.tv_in1k"]
    assert entry.url == torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.url
    reference = torchvision.models.squeezenet1_1().eval()
    entry.cache_path().parent.mkdir(parents=True)
    torch.save(reference.state_dict(), entry.cache_path())
    model = load_weights("squeezenet1_1.tv_in1k")
    assert model.meta.preprocessing == TORCHVISION
    assert _bit_equal(model.state_dict(), reference.state_dict())


def test_named_weights_offline_error_says_what_to_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    entry = PRETRAINED["squeezenet1_0.tv_in1k"]
    with pytest.raises(OSError) as exc:
        load_weights("squeezenet1_0.tv_in1k")
    assert entry.url in str(exc.value) and str(entry.cache_path()) in str(exc.value)
    assert main(["predict", "x.jpg", "--weights", "squeezenet1_0.tv_in1k"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and entry.url in err


def test_unknown_weights_name_is_a_clear_error():
    with pytest.raises(ValueError, match="named weight sets"):
        load_weights("squeezenet1_2.tv_in1k")
