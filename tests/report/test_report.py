"""The architecture report against the paper's Table 1 and independent counts."""

import pytest
import torch

from squeezenet.models import create_model
from squeezenet.report import architecture_report, architecture_table

TABLE1_FIRE_PARAMS = {
    "fire2": 11_920, "fire3": 12_432, "fire4": 45_344, "fire5": 49_440,
    "fire6": 104_880, "fire7": 111_024, "fire8": 188_992, "fire9": 197_184, "conv10": 513_000,
}


def _conv_macs(model: torch.nn.Module, size: int) -> int:
    """Independent MAC count: hooks on every conv/linear computing out_elems * in_per_group * kernel."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    return total


def test_squeezenet1_0_matches_table1():
    report = architecture_report("squeezenet1_0")
    rows = {r.name: r for r in report.layers}
    assert {k: rows[k].params for k in TABLE1_FIRE_PARAMS} == TABLE1_FIRE_PARAMS
    assert report.params == 1_248_424 and report.size_bytes == 4 * 1_248_424
    assert 0.80e9 < report.macs < 0.84e9
    assert rows["fire9"].out_shape == [512, 13, 13] and rows["maxpool1"].out_shape == [96, 54, 54]
    assert (rows["fire4"].squeeze, rows["fire4"].expand1x1, rows["fire4"].expand3x3) == (32, 128, 128)


@pytest.mark.parametrize("name, params, gmacs", [("squeezenet1_1", 1_235_496, 0.35), ("alexnet", 61_100_840, 0.71)])
def test_totals(name, params, gmacs):
    report = architecture_report(name)
    assert report.params == params
    assert abs(report.macs / 1e9 - gmacs) < 0.01


@pytest.mark.parametrize("name, size", [("squeezenet1_0", 224), ("squeezenet1_1", 227), ("alexnet", 224),
                                        ("squeezenet1_0_complex_bypass", 224), ("squeezenet1_1_cifar", 32)])
def test_macs_and_rows_agree_with_independent_count(name, size):
    report = architecture_report(name, size)
    assert report.macs == _conv_macs(create_model(name), size)
    assert sum(r.macs for r in report.layers) == report.macs
    assert sum(r.params for r in report.layers) == report.params


def test_batch_norm_buffers_count_in_fp32_size():
    report = architecture_report("squeezenet1_1", batch_norm=True)
    model = create_model("squeezenet1_1", batch_norm=True)
    floats = sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    assert report.size_bytes == 4 * floats > 4 * report.params


def test_report_of_a_model_instance_uses_its_config():
    model = create_model("squeezenet_design", sr=0.5)
    report = architecture_report(model, 224)
    assert report.params == sum(p.numel() for p in model.parameters())


def test_json_shape():
    d = architecture_report("squeezenet1_1_cifar").to_dict()
    assert set(d) == {"model", "input_size", "params", "macs", "size_bytes", "layers"}
    assert d["input_size"] == 32
    for layer in d["layers"]:
        assert {"name", "out_shape", "params", "macs"} <= set(layer)
        assert all(v is not None for v in layer.values())


@pytest.mark.parametrize("size", [0, 8, 16, -3, 10_000])
def test_too_small_or_absurd_input_is_a_clear_error(size):
    with pytest.raises(ValueError, match="input size"):
        architecture_report("squeezenet1_0", size)


def test_table_renders_every_row():
    report = architecture_report("squeezenet1_0")
    table = architecture_table(report)
    assert table.row_count == len(report.layers) + 1


@pytest.mark.parametrize("name, last_shape", [
    ("squeezedet", [9 * (4 + 1 + 3), 19, 19]),  # ConvDet: per cell, every anchor's deltas, background and classes
    ("ssdlite_squeezenet", [12096, 3 + 1]),  # the SSDLite head's class scores for every default box
    ("ssdlite_mobilenet_v3", [3234, 3 + 1]),
    ("lraspp_squeezenet", [3, 39, 39]),  # LR-ASPP's logits at stride 8 (v1.0: 320 -> 39), bilinear to the input after
    ("squeezeseg", [3, 320, 320]),  # SqueezeSeg's classifier at full resolution
    ("lraspp_mobilenet_v3", [3, 40, 40]),
])
def test_dense_model_reports_have_every_layer_and_add_up(name, last_shape):
    """Detection and segmentation bodies and heads return several maps (dicts, lists): each row still gets a shape,
    and the rows add up to the model's parameters and MACs."""
    model = create_model(name, num_classes=3, image_size=320)
    report = architecture_report(name, 320, num_classes=3)
    assert report.params == sum(p.numel() for p in model.parameters()) == model.config.num_parameters()
    assert sum(r.params for r in report.layers) == report.params
    assert sum(r.macs for r in report.layers) == report.macs > 0
    assert all(r.out_shape for r in report.layers) and report.layers[-1].out_shape == last_shape
