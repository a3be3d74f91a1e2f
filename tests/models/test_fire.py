import pytest
import torch
import torch.nn.functional as F

from squeezenet.models import Fire


def _reference_fire(fire: Fire, x: torch.Tensor) -> torch.Tensor:
    """The Fire module written out with functional ops: squeeze, then [expand1x1, expand3x3] concatenated."""
    s = F.relu(F.conv2d(x, fire.squeeze.weight, fire.squeeze.bias))
    e1 = F.relu(F.conv2d(s, fire.expand1x1.weight, fire.expand1x1.bias))
    e3 = F.relu(F.conv2d(s, fire.expand3x3.weight, fire.expand3x3.bias, padding=1))
    return torch.cat([e1, e3], dim=1)


def test_fire_matches_functional_reference():
    fire = Fire(24, 6, 10, 14)
    for conv in (fire.squeeze, fire.expand1x1, fire.expand3x3):
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(2, 24, 9, 11)
    out = fire(x)
    assert out.shape == (2, 24, 9, 11)
    torch.testing.assert_close(out, _reference_fire(fire, x))
    # expand1x1 channels come first in the concatenation, as in Caffe and torchvision
    assert torch.equal(out[:, :10], F.relu(fire.expand1x1(F.relu(fire.squeeze(x)))))


def test_fire_parameter_count_is_table1_formula():
    fire = Fire(96, 16, 64, 64)  # the paper's fire2
    expected = (96 * 16 + 16) + (16 * 64 + 64) + (16 * 64 * 9 + 64)
    assert sum(p.numel() for p in fire.parameters()) == expected == 11_920


def test_identity_shortcut_adds_input():
    plain = Fire(32, 8, 16, 16)
    bypass = Fire(32, 8, 16, 16, shortcut="identity")
    bypass.load_state_dict(plain.state_dict())
    x = torch.randn(1, 32, 7, 7)
    torch.testing.assert_close(bypass(x), plain(x) + x)


def test_conv_shortcut_adds_1x1_conv_of_input():
    fire = Fire(16, 8, 16, 16, shortcut="conv")
    x = torch.randn(1, 16, 5, 5)
    conv = fire.shortcut[0]
    expected = _reference_fire(fire, x) + F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(fire(x), expected)


def test_batch_norm_drops_conv_bias_and_adds_bn():
    fire = Fire(16, 8, 16, 16, batch_norm=True)
    assert fire.squeeze.bias is None
    assert isinstance(fire.squeeze_bn, torch.nn.BatchNorm2d)
    keys = set(fire.state_dict())
    assert "expand3x3_bn.running_mean" in keys and "expand3x3.bias" not in keys


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_channels=16, squeeze=0, expand1x1=8, expand3x3=8), "squeeze"),
        (dict(in_channels=16, squeeze=4, expand1x1=8, expand3x3=16, shortcut="identity"), "equal channels"),
        (dict(in_channels=16, squeeze=4, expand1x1=8, expand3x3=8, shortcut="bogus"), "shortcut"),
    ],
)
def test_fire_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Fire(**kwargs)
