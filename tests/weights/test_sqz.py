"""The .sqz format and its entropy coding: lossless, compact, and safe on damaged input."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import require_shared
from squeezenet.models import ModelMeta, create_model
from squeezenet.weights import load_weights, read_weights_file, save_weights, write_weights_file
from squeezenet.weights.coding import ByteReader, bernoulli, decode_stream, encode_stream
from squeezenet.weights.files import read_sqz
from squeezenet.weights.sqz import MAGIC, decode_sqz, encode_sqz

DC = ("deep-compression", "compressed_SqueezeNet.net")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def _roundtrip(symbols: np.ndarray, alphabet: int, model: np.ndarray | None = None):
    stream = encode_stream(symbols, alphabet, model)
    reader = ByteReader(stream.to_bytes())
    decoded = decode_stream(reader, symbols.size, alphabet, model)
    assert reader.remaining == 0
    return stream, decoded


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(0, 3000), st.floats(0.3, 3.0), st.integers(0, 2**31))
def test_streams_round_trip_exactly(alphabet: int, n: int, spread: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    symbols = np.clip(np.rint(rng.normal(alphabet / 2, spread * alphabet / 6, n)), 0, alphabet - 1).astype(np.int64)
    _, decoded = _roundtrip(symbols, alphabet)
    assert np.array_equal(decoded, symbols)


def test_stream_size_is_close_to_the_entropy() -> None:
    rng = np.random.default_rng(0)
    symbols = np.clip(np.rint(rng.normal(32, 6, 200_000)), 0, 63).astype(np.int64)
    counts = np.bincount(symbols, minlength=64).astype(float)
    p = counts[counts > 0] / counts.sum()
    entropy_bytes = -(counts[counts > 0] * np.log2(p)).sum() / 8
    stream, decoded = _roundtrip(symbols, 64)
    assert np.array_equal(decoded, symbols)
    assert stream.method_name == "ans"
    # table included: within 0.5% of the zeroth-order entropy, far below 6 bits per symbol
    assert len(stream.to_bytes()) < 1.005 * entropy_bytes
    assert len(stream.table) < 100


def test_small_dyadic_stream_picks_huffman_and_mask_model_needs_no_table() -> None:
    symbols = np.array([0, 1] * 500, dtype=np.int64)  # p = 1/2: Huffman is exactly optimal here
    stream, decoded = _roundtrip(symbols, 2, bernoulli(500, 1000))
    assert np.array_equal(decoded, symbols)
    assert stream.table == b""
    assert stream.method_name in ("huffman", "ans") and len(stream.payload) <= 128 + 8
    constant, decoded = _roundtrip(np.full(77, 5, dtype=np.int64), 9)
    assert constant.method_name == "constant" and constant.payload == b"" and (decoded == 5).all()


def _shared_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A SqueezeNet state_dict with weight-shared, pruned layers (and a -0.0 that must survive)."""
    torch.manual_seed(seed)
    model = create_model("squeezenet1_1_cifar")
    state = {}
    for k, v in model.state_dict().items():
        if v.dim() > 1:
            centroids = torch.linspace(-0.3, 0.3, 16)
            v = centroids[torch.randint(0, 16, v.shape)] * (torch.rand(v.shape) < 0.3)
        state[k] = v.clone()
    state["features.0.weight"].view(-1)[0] = -0.0
    return state


def test_sqz_is_lossless_bit_for_bit(tmp_path) -> None:
    model = create_model("squeezenet1_1_cifar")
    state = _shared_state()
    model.load_state_dict(state)
    model.meta = model.meta.replace(classes=[f"c{i}" for i in range(10)])
    path = save_weights(model, tmp_path / "m.sqz")
    loaded = read_weights_file(path)
    assert loaded.state_dict.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(_bits(loaded.state_dict[k]), _bits(v)), k
    assert torch.signbit(loaded.state_dict["features.0.weight"].view(-1)[0])
    assert loaded.meta.classes == model.meta.classes
    fp32 = 4 * sum(v.numel() for v in state.values())
    assert path.stat().st_size < fp32 / 8  # 30% density, 16 centroids: far below fp32


def test_raw_tensors_and_int64_buffers_round_trip(tmp_path) -> None:
    model = create_model("squeezenet1_1_cifar", batch_norm=True)  # fp32 weights: too many values to share
    path = save_weights(model, tmp_path / "bn.sqz")
    weights, contents = read_sqz(path)
    kinds = {r.key: r.kind for r in contents.records}
    assert kinds["features.0.weight"] == "raw"  # 1,728 distinct values: a codebook would be as big as the tensor
    assert kinds["features.12.expand3x3.weight"] == "raw"
    assert kinds["features.1.num_batches_tracked"] == "raw"
    for k, v in model.state_dict().items():
        assert torch.equal(_bits(weights.state_dict[k]), _bits(v)), k


def test_published_model_converts_under_545000_bytes_and_bit_exact(tmp_path) -> None:
    net = require_shared(*DC)
    out = tmp_path / "dc.sqz"
    result = subprocess.run([sys.executable, "-m", "squeezenet", "convert", str(net), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size <= 545_000
    a, b = read_weights_file(net).state_dict, read_weights_file(out).state_dict
    assert a.keys() == b.keys()
    assert all(torch.equal(_bits(a[k]), _bits(b[k])) for k in a)
    model = load_weights(out)
    assert model.meta.preprocessing.name == "caffe" and model.meta.classes[0] == "tench"


def _meta() -> ModelMeta:
    return ModelMeta.default(create_model("squeezenet1_1_cifar").config)


def _file_with(header_edit, tmp_path) -> bytes:
    """A valid small .sqz whose JSON header was edited and re-checksummed (what only a forger produces)."""
    state = _shared_state()
    data, _ = encode_sqz(state, _meta().to_dict())
    header_len = struct.unpack_from("<I", data, len(MAGIC) + 2)[0]
    start = len(MAGIC) + 6
    header = json.loads(zlib.decompress(data[start:start + header_len]))
    header_edit(header)
    packed = zlib.compress(json.dumps(header).encode())
    body = data[:len(MAGIC) + 2] + struct.pack("<I", len(packed)) + packed + data[start + header_len:-32]
    return body + hashlib.sha256(body).digest()


def _set_classes(header, n):
    header["meta"]["config"]["num_classes"] = n
    header["meta"]["classes"] = None  # default names: n of them


@pytest.mark.parametrize("edit, message", [
    (lambda h: _set_classes(h, 10**7), "num_classes"),  # a huge architecture: rejected before any allocation
    (lambda h: _set_classes(h, 11), "shape"),
    (lambda h: h["tensors"].pop(), "do not match"),
    (lambda h: h["tensors"][0].update(kept=10**9), "do not fit"),
    (lambda h: h["side"].__setitem__(1, 10**12), "side data"),
    (lambda h: h["meta"]["config"].update(arch="nope"), "architecture"),
    (lambda h: h["tensors"][0].update(coders=5), "malformed record"),
])
def test_forged_headers_are_rejected_with_one_clear_error(tmp_path, edit, message) -> None:
    path = tmp_path / "forged.sqz"
    path.write_bytes(_file_with(edit, tmp_path))
    with pytest.raises(ValueError, match=message):
        read_weights_file(path)


@pytest.fixture(scope="module")
def small_sqz() -> bytes:
    state = _shared_state()
    return encode_sqz(state, _meta().to_dict())[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_files_give_value_errors_only(small_sqz, tmp_path, data) -> None:
    """Truncations, byte flips and flips with a recomputed checksum (exercising the decoder behind it)."""
    blob = bytearray(small_sqz)
    kind = data.draw(st.sampled_from(["truncate", "flip", "flip+checksum"]))
    if kind == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 33))
            blob[i] ^= data.draw(st.integers(1, 255))
        if kind == "flip+checksum":
            blob[-32:] = hashlib.sha256(bytes(blob[:-32])).digest()
    path = tmp_path / "fuzz.sqz"
    path.write_bytes(bytes(blob))
    try:
        weights, _ = read_sqz(path)
    except ValueError:
        return
    # a flip that survived decoding can only have changed values, never the structure
    expected = create_model("squeezenet1_1_cifar").state_dict()
    assert {k: v.shape for k, v in weights.state_dict.items()} == {k: v.shape for k, v in expected.items()}


def test_damaged_file_cli_one_line_exit_1(tmp_path, small_sqz, capsys) -> None:
    from squeezenet.cli import main  # in-process: the verbs' error policy is the subject (tests/test_cli.py: a process)

    path = tmp_path / "bad.sqz"
    path.write_bytes(small_sqz[:-100])
    for cmd in (["info", str(path)], ["predict", "-w", str(path), str(path)]):
        assert main(cmd) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "checksum mismatch" in lines[0], lines


def test_decoder_without_architecture_still_bounds_work(small_sqz) -> None:
    contents = decode_sqz(small_sqz, "mem")
    assert sum(r.numel for r in contents.records) == sum(v.numel() for v in _shared_state().values())
    with pytest.raises(ValueError, match="magic"):
        decode_sqz(b"PK\x03\x04" + small_sqz[4:], "mem")


def test_write_is_atomic_on_failure(tmp_path) -> None:
    path = tmp_path / "keep.sqz"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError, match="non-finite"):
        write_weights_file(path, {"w": torch.tensor([[float("nan"), 1.0]])}, _meta())
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.sqz"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_usual_permissions(tmp_path, umask) -> None:
    import os
    import stat

    old = os.umask(umask)
    try:  # mkstemp alone would leave every file we write readable by its owner only
        write_weights_file(tmp_path / "w.sqz", {"w": torch.ones(2, 2)}, _meta())
        write_weights_file(tmp_path / "w.safetensors", {"w": torch.ones(2, 2)}, _meta())
    finally:
        os.umask(old)
    for name in ("w.sqz", "w.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5000, 5000), min_size=1, max_size=40), st.integers(1, 7), st.integers(-40, 10))
def test_float_grid_finds_the_exact_integers_of_values_on_a_grid(ints, g, e) -> None:
    from squeezenet.weights.sqz import float_grid, grid_values

    values = np.ldexp(np.array(ints, dtype=np.float64) * g, e).astype(np.float32)
    found = float_grid(values)
    if not any(ints):
        assert found is None  # all zero: no step to speak of
        return
    assert found is not None
    n, g2, e2 = found
    assert np.array_equal(grid_values(n, g2, e2).view("<u4"), values.view("<u4"))
    nonzero = [abs(i) for i in ints if i]
    if nonzero:  # the step found is the largest: no common factor is left in the integers
        assert int(np.gcd.reduce(np.abs(n[n != 0]))) == 1 and g2 * 2.0**e2 >= g * 2.0**e


def test_float_grid_refuses_what_it_cannot_store_exactly() -> None:
    from squeezenet.weights.sqz import float_grid

    assert float_grid(np.array([1.0, -0.0], np.float32)) is None  # -0.0 has no integer
    assert float_grid(np.array([1e30, 1e-30], np.float32)) is None  # integers beyond 2**52
    assert float_grid(np.array([np.inf], np.float32)) is None


def test_golomb_streams_round_trip_and_damage_is_a_value_error() -> None:
    from squeezenet.weights.coding import golomb_decode, golomb_encode

    rng = np.random.default_rng(0)
    for values in (rng.geometric(0.02, 500) - 1, np.zeros(3, np.int64), np.array([2**40, 0, 7])):
        data = golomb_encode(values)
        assert np.array_equal(golomb_decode(data, values.size), values)
    data = golomb_encode(rng.geometric(0.02, 500) - 1)
    with pytest.raises(ValueError):
        golomb_decode(data[: len(data) // 2], 500)  # truncated
    with pytest.raises(ValueError):
        golomb_decode(data, 400)  # more left than padding


def test_bits_are_packed_as_a_string_of_binary_digits_would_be() -> None:
    """numpy's packing against the obvious reference: each value's binary digits, left-padded to its width."""
    from squeezenet.weights.coding import golomb_widths, pack_bits

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 2**20, 300), [0, 1, 2**52 - 1, 2**52 + 5]])
    widths = np.concatenate([golomb_widths(values[:300], 3), [1, 7, 52, 105]])  # 105: wider than any shift
    digits = "".join(format(int(v), "b").zfill(int(w)) for v, w in zip(values, widths))
    digits += "0" * (-len(digits) % 8)
    assert pack_bits(values, widths) == int(digits, 2).to_bytes(len(digits) // 8, "big")
    assert golomb_widths(np.array([2**52 - 2]), 0).tolist() == [2 * 52 - 1]  # exact: log2(2**52 - 1) rounds to 52.0


def _trained_looking_model():
    """Weight-shared layers whose codebooks and biases are arbitrary float32 values, as k-means leaves them."""
    model = create_model("squeezenet1_1_cifar")
    model.load_state_dict(_shared_state())
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                values, index = torch.unique(p, return_inverse=True)
                p.copy_(torch.where(p != 0, (values + 0.01 * torch.randn_like(values))[index], 0.0))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model


def test_side_data_on_a_grid_is_stored_exactly_and_smaller(tmp_path) -> None:
    from squeezenet.compress.side_grid import snap_side_values

    model = _trained_looking_model()
    plain = save_weights(model, tmp_path / "plain.sqz")
    snap_side_values(model, weight_bits=12, bias_bits=10)
    snapped = save_weights(model, tmp_path / "snapped.sqz")
    loaded, contents = read_sqz(snapped)
    for k, v in model.state_dict().items():
        assert torch.equal(_bits(loaded.state_dict[k]), _bits(v)), k
    assert all(r.grid is not None for r in contents.records if r.kind == "shared")
    assert snapped.stat().st_size < plain.stat().st_size - 4 * 16 * 26 // 2  # 26 codebooks of 16: half their float bytes
    assert struct.unpack_from("<H", snapped.read_bytes(), len(MAGIC))[0] == 2
    assert struct.unpack_from("<H", plain.read_bytes(), len(MAGIC))[0] == 1  # no grid: readable by older versions


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(grid=[0, -3]), "malformed grid"),
    (lambda r: r.update(grid=[1, -3, 5]), "malformed grid"),
    (lambda r: r.update(streams=r["streams"][:2]), "stream lengths"),
    (lambda r: r.update(streams=[*r["streams"][:-1], 10**9]), "grid stream of"),  # bounded before it is read
])
def test_forged_grid_records_are_rejected(tmp_path, edit, message) -> None:
    from squeezenet.compress.side_grid import snap_side_values

    model = snap_side_values(_trained_looking_model(), weight_bits=12)
    data, _ = encode_sqz(model.state_dict(), _meta().to_dict())
    header_len = struct.unpack_from("<I", data, len(MAGIC) + 2)[0]
    start = len(MAGIC) + 6
    header = json.loads(zlib.decompress(data[start:start + header_len]))
    edit(next(r for r in header["tensors"] if "grid" in r))
    packed = zlib.compress(json.dumps(header).encode())
    body = data[:len(MAGIC) + 2] + struct.pack("<I", len(packed)) + packed + data[start + header_len:-32]
    path = tmp_path / "forged.sqz"
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(ValueError, match=message):
        read_weights_file(path)


def test_the_bytes_of_each_tensor_add_up_to_the_file_less_its_header() -> None:
    from squeezenet.weights.sqz import bytes_per_tensor

    state = _shared_state()
    data, records = encode_sqz(state, _meta().to_dict())
    shares = bytes_per_tensor(data, records)
    header_len = struct.unpack_from("<I", data, len(MAGIC) + 2)[0]
    assert set(shares) == set(state)
    assert sum(shares.values()) == pytest.approx(len(data) - len(MAGIC) - 6 - header_len - 32, abs=1e-6)
    assert all(v > 0 for v in shares.values())
