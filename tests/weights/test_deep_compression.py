"""The .net reader against values re-derived independently from the raw bytes, and against bad files."""

import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_shared
from squeezenet.weights import load_weights, read_weights_file
from squeezenet.weights.deep_compression import read_deep_compression

NET = ("deep-compression", "compressed_SqueezeNet.net")
RELEASE_SIZE = 675_763

# v1.0 conv layers in file order: (out, in, k) -> weight numel, bias length. Written out by hand from the
# paper's Table 1 so that this test does not reuse the decoder's own shape source.
V10_LAYERS = [(96, 3, 7)] + [
    layer
    for s, e, cin in [(16, 64, 96), (16, 64, 128), (32, 128, 128), (32, 128, 256), (48, 192, 256),
                      (48, 192, 384), (64, 256, 384), (64, 256, 512)]
    for layer in [(s, cin, 1), (e, s, 1), (e, s, 3)]
] + [(1000, 512, 1)]


def independent_decode(raw: bytes, layer: int) -> tuple[list[float], list[float], dict[int, float]]:
    """Pure-Python decode of one layer: codebook, biases, {flat position: value}."""
    counts = struct.unpack_from("<26I", raw, 0)
    offset = 4 * 26
    for i, (out, _cin, _k) in enumerate(V10_LAYERS):
        n = counts[i]
        codebook = list(struct.unpack_from("<256f", raw, offset))
        bias = list(struct.unpack_from(f"<{out}f", raw, offset + 1024))
        codes = raw[offset + 1024 + 4 * out: offset + 1024 + 4 * out + n]
        nibbles_at = offset + 1024 + 4 * out + n
        if i == layer:
            values, pos = {}, -1
            for j in range(n):
                byte = raw[nibbles_at + j // 2]
                step = (byte & 0xF) if j % 2 == 0 else (byte >> 4)
                pos += step + 1
                values[pos] = codebook[codes[j]]
            return codebook, bias, values
        offset = nibbles_at + (n + 1) // 2
    raise IndexError(layer)


@pytest.fixture(scope="module")
def net_path():
    return require_shared(*NET)


@pytest.fixture(scope="module")
def decoded(net_path):
    return read_weights_file(net_path).state_dict


@pytest.mark.parametrize("layer", [0, 1, 12, 24, 25])
def test_decoder_matches_independent_decode(net_path, decoded, layer):
    raw = net_path.read_bytes()
    assert len(raw) == RELEASE_SIZE
    codebook, bias, values = independent_decode(raw, layer)
    key = read_deep_compression(net_path)[layer].key
    weight = decoded[key].flatten()
    assert weight.numel() == V10_LAYERS[layer][0] * V10_LAYERS[layer][1] * V10_LAYERS[layer][2] ** 2
    # every stored entry lands where the independent decode puts it, bit for bit; all else is zero
    positions = torch.tensor(sorted(values))
    expected = torch.tensor([values[p] for p in sorted(values)], dtype=torch.float32)
    assert torch.equal(weight[positions], expected)
    mask = torch.ones_like(weight, dtype=torch.bool)
    mask[positions] = False
    assert not weight[mask].any()
    assert torch.equal(decoded[key.removesuffix("weight") + "bias"], torch.tensor(bias, dtype=torch.float32))
    # decoded values are exactly codebook entries (8-bit weight sharing)
    assert set(weight[positions].tolist()) <= set(codebook)


def test_release_density_and_sharing(decoded):
    weights = [v for k, v in decoded.items() if k.endswith("weight")]
    density = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert 0.30 < density < 0.36  # the release is "33% of weights kept"
    assert all(len(torch.unique(w)) <= 256 for w in weights)


def test_net_loads_as_caffe_v1_0_with_caffe_preprocessing(net_path):
    model = load_weights(net_path)
    assert model.config.classifier_padding == 1 and model.config.stem.kernel_size == 7
    assert model.meta.preprocessing.name == "caffe" and model.meta.preprocessing.channel_order == "BGR"
    assert model.meta.classes[0] == "tench" and len(model.meta.classes) == 1000


@pytest.mark.parametrize("cut", [0, 50, 104, 105, 2000, RELEASE_SIZE // 2, RELEASE_SIZE - 1])
def test_truncated_net_is_a_clear_error(tmp_path, net_path, cut):
    bad = tmp_path / "cut.net"
    bad.write_bytes(net_path.read_bytes()[:cut])
    with pytest.raises(ValueError, match="truncated"):
        read_weights_file(bad)


def test_corrupt_header_and_trailing_bytes(tmp_path, net_path):
    raw = bytearray(net_path.read_bytes())
    huge = tmp_path / "huge.net"
    huge.write_bytes(struct.pack("<I", 0xFFFFFFFF) + raw[4:])
    with pytest.raises(ValueError, match="entries"):
        read_weights_file(huge)
    trailing = tmp_path / "trailing.net"
    trailing.write_bytes(raw + b"\0\0")
    with pytest.raises(ValueError, match="trailing"):
        read_weights_file(trailing)
    shifted = tmp_path / "shifted.net"  # one layer count too small: every later offset is off
    shifted.write_bytes(struct.pack("<I", struct.unpack_from("<I", raw)[0] - 1) + raw[4:])
    with pytest.raises(ValueError):
        read_weights_file(shifted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_net_files_never_crash(tmp_path, net_path, data):
    raw = bytearray(net_path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw
    path = tmp_path / "fuzz.net"
    path.write_bytes(bytes(raw))
    try:
        read_weights_file(path)
    except ValueError:
        pass  # a clear rejection is fine; anything else (IndexError, MemoryError...) fails the test
