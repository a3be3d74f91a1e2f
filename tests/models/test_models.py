"""The model zoo against torchvision (an independent reference) and the paper's figures."""

import dataclasses
import json

import pytest
import torch
import torchvision

from squeezenet import create_model, list_models, model_from_config
from squeezenet.errors import SqueezeNetError
from squeezenet.models import SqueezeNet, SqueezeNetConfig, design_space_fires
from squeezenet.models.config import V1_0_FIRES


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1", "alexnet"])
def test_matches_torchvision_keys_and_outputs(name):
    reference = getattr(torchvision.models, name)().eval()
    ours = create_model(name).eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())  # strict: every key and shape agrees
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff < 1e-5


@pytest.mark.parametrize(
    "name, params",
    [("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496), ("alexnet", 61_100_840),
     ("squeezenet1_0_simple_bypass", 1_248_424)],
)
def test_parameter_counts(name, params):
    with torch.device("meta"):
        assert n_params(create_model(name)) == params


def test_simple_bypass_wraps_fire3_5_7_9_with_identity():
    model = create_model("squeezenet1_0_simple_bypass")
    kinds = {name: type(model.get_submodule(paths[0]).shortcut).__name__
             for name, paths in model.layer_names.items() if name.startswith("fire")}
    assert kinds == {"fire2": "NoneType", "fire3": "Identity", "fire4": "NoneType", "fire5": "Identity",
                     "fire6": "NoneType", "fire7": "Identity", "fire8": "NoneType", "fire9": "Identity"}


def test_complex_bypass_adds_one_1x1_conv_per_channel_change():
    # conv shortcuts around fire2 (96->128), fire4 (128->256), fire6 (256->384), fire8 (384->512)
    extra = sum(cin * cout + cout for cin, cout in [(96, 128), (128, 256), (256, 384), (384, 512)])
    with torch.device("meta"):
        assert n_params(create_model("squeezenet1_0_complex_bypass")) == 1_248_424 + extra


def test_design_space_defaults_reproduce_v1_0_exactly():
    assert design_space_fires() == V1_0_FIRES
    ours = create_model("squeezenet_design")
    v10 = create_model("squeezenet1_0")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in v10.state_dict().items()}


def test_design_space_formula():
    fires = design_space_fires(base_e=64, incr_e=32, pct3x3=0.75, freq=3, sr=0.25)
    for i, spec in enumerate(fires):
        e = 64 + 32 * (i // 3)
        assert spec.expand1x1 + spec.expand3x3 == e
        assert spec.expand3x3 == round(0.75 * e)
        assert spec.squeeze == round(0.25 * e)
    # fractional counts round half up and never reach zero filters
    tiny = design_space_fires(base_e=4, incr_e=0, pct3x3=0.01, sr=0.01)
    assert tiny[0].expand3x3 == 1 and tiny[0].squeeze == 1 and tiny[0].expand1x1 == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(sr=0), "SR"), (dict(sr=-0.5), "SR"), (dict(pct3x3=1.0), "pct3x3"), (dict(pct3x3=0), "pct3x3"),
     (dict(freq=0), "freq"), (dict(base_e=0), "base_e"), (dict(incr_e=-1), "incr_e"),
     (dict(base_e=1, incr_e=0), "at least 2"), (dict(macro="2_0"), "macro")],
)
def test_design_space_rejects_bad_metaparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("squeezenet_design", **kwargs)


def test_options_num_classes_in_chans_dropout():
    model = create_model("squeezenet1_1", num_classes=7, in_chans=1, dropout=0.2).eval()
    assert model(torch.randn(2, 1, 96, 96)).shape == (2, 7)
    assert model.classifier[0].p == 0.2 and model.features[0].in_channels == 1
    alex = create_model("alexnet", num_classes=5, in_chans=4).eval()
    assert alex(torch.randn(1, 4, 224, 224)).shape == (1, 5)


def test_batch_norm_option_puts_bn_after_every_conv_but_conv10():
    model = create_model("squeezenet1_0", batch_norm=True)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(convs) - 1 == 1 + 8 * 3


def test_small_stem_keeps_resolution_for_cifar():
    model = create_model("squeezenet1_1_cifar").eval()
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 512, 8, 8)  # 32 -> 16 -> 8 through the two remaining max-pools
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_caffe_compat_pads_conv10_like_the_caffe_release():
    model = create_model("squeezenet1_0", caffe_compat=True).eval()
    torch.nn.init.normal_(model.classifier[1].bias)
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[-2:] == (13, 13)
        conv10 = model.classifier[1]
        # Caffe: conv10 with pad=1 makes a 15x15 map whose border is relu(bias); then global average
        padded = torch.nn.functional.conv2d(feats, conv10.weight, conv10.bias, padding=1).relu()
        assert padded.shape[-2:] == (15, 15)
        torch.testing.assert_close(model(x), padded.mean(dim=(2, 3)))
    plain = create_model("squeezenet1_0").eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(x), model(x))


def test_forward_head_pre_logits_and_reset_classifier():
    model = create_model("squeezenet1_1").eval()
    feats = model.forward_features(torch.randn(1, 3, 224, 224))
    assert model.forward_head(feats, pre_logits=True).shape == (1, 512)
    model.reset_classifier(3)
    assert model.forward_head(feats).shape == (1, 3)
    assert model.config.num_classes == 3 and model.get_classifier().out_channels == 3
    rebuilt = model_from_config(model.config.to_dict())
    rebuilt.load_state_dict(model.state_dict())


def test_features_only_returns_one_map_per_stride():
    x = torch.randn(1, 3, 224, 224)
    for name, channels, reductions in [
        ("squeezenet1_0", [96, 256, 512, 512], [2, 4, 8, 16]),
        ("squeezenet1_1", [64, 128, 256, 512], [2, 4, 8, 16]),
        ("alexnet", [64, 192, 256], [4, 8, 16]),
    ]:
        backbone = create_model(name, features_only=True).eval()
        assert backbone.channels() == channels and backbone.reductions() == reductions
        with torch.no_grad():
            maps = backbone(x)
        assert [m.shape[1] for m in maps] == channels
        for m, r in zip(maps, reductions):  # unpadded convs and ceil-mode pools: within 10% of 224 / r
            assert abs(m.shape[-1] * r / 224 - 1) < 0.1
    sub = create_model("squeezenet1_0", features_only=True, out_indices=(-1,))
    assert sub.channels() == [512]
    with pytest.raises(ValueError, match="out of range"):
        create_model("squeezenet1_0", features_only=True, out_indices=(4,))


def model_task(name: str) -> str:
    with torch.device("meta"):
        return create_model(name).meta.task


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    from squeezenet.models import get_model_entry

    task = model_task(name)
    dense = task in ("detect", "segment")
    model = create_model(name, **({"num_classes": 3, "image_size": 128} if dense else {})).train()
    size = 128 if dense else 32 if name.endswith("_cifar") else 224
    assert get_model_entry(name).input_size == (320 if dense else size)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert model.meta.task == task
    if task == "detect":  # per anchor: 4 box deltas, background, 3 classes
        assert out.shape == (2, len(model.anchors), 4 + 1 + 3)
    elif task == "segment":  # per pixel of the input: 3 class logits
        assert out.shape == (2, 3, size, size) == (2, *model.config.output_shape())
    else:
        assert out.shape == (2, model.num_classes) and model.meta.task == "classify"
    out.logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_config_round_trips_through_json():
    for name, kwargs in [("squeezenet1_0_complex_bypass", {"batch_norm": True}),
                         ("squeezenet_design", {"sr": 0.25, "pct3x3": 0.25, "macro": "1_1", "small_stem": True}),
                         ("squeezenet1_0", {"caffe_compat": True}), ("alexnet", {"num_classes": 10})]:
        model = create_model(name, **kwargs)
        data = json.loads(json.dumps(model.config.to_dict()))
        rebuilt = model_from_config(data)
        assert rebuilt.config == model.config
        rebuilt.load_state_dict(model.state_dict())  # strict: identical architecture


@pytest.mark.parametrize(
    "data, match",
    [({"arch": "resnet"}, "unknown architecture"), ({"arch": "squeezenet", "fires": [], "bogus": 1}, "unknown"),
     ({"arch": "squeezenet"}, "missing field fires"), ({"arch": "squeezenet", "fires": [{"squeeze": 1}]}, "missing field"),
     ({"arch": "squeezenet", "fires": [{"squeeze": 1.5, "expand1x1": 1, "expand3x3": 1}]}, "whole number"),
     ({"arch": "squeezenet", "version": 2, "fires": []}, "newer squeezenet"),
     ({"arch": "squeezenet", "fires": [{"squeeze": 1, "expand1x1": 1, "expand3x3": 1}], "pool_after": [5]},
      "pool_after")],
)
def test_model_from_config_rejects_bad_configs(data, match):
    with pytest.raises(ValueError, match=match):
        model_from_config(data)


def test_unknown_model_and_option_errors_are_clear():
    with pytest.raises(ValueError, match="did you mean squeezenet1_1"):
        create_model("squeezenet1_2")
    with pytest.raises(ValueError, match="alexnet has no option 'batch_norm'"):
        create_model("alexnet", batch_norm=True)
    with pytest.raises(ValueError, match="dropout"):
        create_model("squeezenet1_0", dropout=1.5)
    with pytest.raises(ValueError, match="bypass"):
        create_model("squeezenet1_0", bypass="sideways")


def test_squeezenet_class_accepts_config_directly():
    cfg = SqueezeNetConfig(fires=V1_0_FIRES[:2], pool_after=(), num_classes=4)
    model = SqueezeNet(cfg).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    assert list(model.layer_names) == ["conv1", "maxpool1", "fire2", "fire3", "conv4", "avgpool4"]


@pytest.mark.parametrize("name,kwargs", [("squeezenet1_0", {}), ("squeezenet1_1", {}), ("squeezenet1_1_cifar", {}),
                                         ("squeezenet1_0", {"caffe_compat": True}), ("alexnet", {})])
def test_largest_activation_matches_a_real_forward_and_knows_when_a_map_vanishes(name, kwargs):
    """torch is the reference: for every input side up to 80 the config's arithmetic says 0 exactly when a real
    forward fails (a map shrinks to nothing), and otherwise the size of the largest map the forward makes (AlexNet:
    conv1's exactly; SqueezeNet: a Fire's squeeze and both expand outputs, so between the largest layer output and 3x it)."""
    model = create_model(name, **kwargs).eval()
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out[0].numel()))
             for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d))]
    for side in range(1, 81):
        sizes.clear()
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, side, side))
            ran = True
        except RuntimeError:
            ran = False
        predicted = model.config.largest_activation(side)
        assert (predicted > 0) == ran, side
        if ran and name == "alexnet":
            assert predicted == max(sizes), side
        elif ran:
            assert max(sizes) <= predicted <= 3 * max(sizes), side
    for h in hooks:
        h.remove()
    tiny = dataclasses.replace(model.meta.preprocessing, resize=2, crop=2)
    with pytest.raises(SqueezeNetError, match="2x2 input is too small for this architecture"):
        model.meta.replace(preprocessing=tiny)
