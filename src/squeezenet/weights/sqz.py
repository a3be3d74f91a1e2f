"""The ``.sqz`` file: a weight-shared, pruned, entropy-coded model that rebuilds itself.

Layout (little-endian)::

    magic  b"\\x89SQZ\\r\\n\\x1a\\n"   8 bytes (PNG-style: catches text-mode and 7-bit mangling)
    version                    uint16
    header length              uint32
    header                     zlib-compressed JSON: metadata (architecture config, preprocessing,
                               class names, source) and one record per tensor
    streams                    per shared tensor: its mask, then its codes (see coding.py)
                               (version 2: a codebook or small raw tensor whose values lie on a grid,
                               ``value = n * g * 2**e`` for integers n, has a third stream: the integers,
                               Exp-Golomb coded: sorted codebook gaps, zigzagged raw values)
    side data                  LZMA: every other codebook (sorted float32) and raw tensor (biases...),
                               float32 bytes split into byte planes (exponents compress, mantissas don't)
    sha256                     32 bytes over everything before it

A *shared* tensor is stored as a mask of its non-zero entries (bit patterns, so ``-0.0`` survives),
a codebook of its distinct non-zero values and one codebook index per kept entry: decoding rebuilds
the tensor bit for bit. Tensors with too many distinct values to share (or 1-D ones) are stored raw.
The grid is found in the values themselves (the largest power-of-two times integer step they are all
multiples of), so it is lossless too: a model whose codebooks and biases were rounded to a grid
(see ``squeezenet.compress.side_grid``) is stored compactly with no flag, and one that was not keeps float32.
Reading checks the checksum first, then every record against the architecture the config describes,
so a damaged file is one ``ValueError``, never a partial model or an allocation its size can't justify.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError, brief, count, names_mismatch
from .coding import (
    ByteReader,
    EncodedStream,
    bernoulli,
    bits_for,
    decode_stream,
    encode_stream,
    golomb_decode,
    golomb_encode,
    unzigzag,
    zigzag,
)

MAGIC = b"\x89SQZ\r\n\x1a\n"
PREFIX = "<HI"  # after the magic: format version, header length
DIGEST_BYTES = 32  # the sha256 that ends the file
VERSION = 2  # 2 adds grid-coded codebooks and raw tensors; files without them are still written as 1
MAX_FILE_BYTES = 1 << 30
MAX_HEADER_BYTES = 16 << 20
MAX_ELEMENTS = 100_000_000  # AlexNet has 61M; a file claiming more than this is not a model we wrote
MAX_CENTROIDS = 1 << 16
MAX_GRID_RAW = 1 << 16  # raw tensors up to this size may be grid-coded (biases; the Golomb coder is per value)
MAX_GRID_INT = 1 << 52  # n * g must be exact in float64
GRID_GAIN = 0.75  # grid-code only when it beats raw float32 by this much (LZMA gets ~20% on float planes)
IMAGENET_CLASSES = "imagenet-1k"  # stands in for the 1000 ImageNet class names (saves ~10 KB)
RAW_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


@dataclass(frozen=True)
class TensorRecord:
    """What the header says about one tensor, and what it costs in the file."""

    key: str
    shape: tuple[int, ...]
    kind: str  # "shared" or "raw"
    dtype: str = "float32"
    kept: int = 0  # non-zero entries (shared)
    centroids: int = 0  # codebook size (shared)
    mask_bytes: int = 0
    codes_bytes: int = 0
    coders: tuple[str, ...] = ()  # coder of the mask and of the codes stream
    side_bytes: int = 0  # raw bytes in the side data (codebook or tensor) before LZMA
    grid: tuple[int, int] | None = None  # (g, e): the codebook/raw values are integers times g * 2**e
    grid_bytes: int = 0  # length of the Exp-Golomb stream of those integers

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bits(self) -> int:
        return bits_for(self.centroids) if self.kind == "shared" else 8 * RAW_DTYPES[self.dtype].itemsize

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "shape": list(self.shape), "kind": self.kind, "dtype": self.dtype}
        if self.kind == "shared":
            d.update(kept=self.kept, centroids=self.centroids, streams=[self.mask_bytes, self.codes_bytes],
                     coders=list(self.coders))
        if self.grid is not None:
            d["grid"] = list(self.grid)
            d["streams"] = [*d.get("streams", []), self.grid_bytes]
        return d


@dataclass
class SqzContents:
    """A decoded file: tensors, metadata dict, per-tensor records and section sizes."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    records: list[TensorRecord]
    file_bytes: int
    header_bytes: int
    side_bytes: int  # compressed side data
    side_raw_bytes: int

    def tensor_bytes(self, record: TensorRecord) -> float:
        """File bytes attributable to one tensor: its streams plus its share of the compressed side data."""
        share = record.side_bytes * self.side_bytes / max(1, self.side_raw_bytes)
        return record.mask_bytes + record.codes_bytes + record.grid_bytes + share


def _shuffle(data: bytes, itemsize: int) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(-1, itemsize).T.tobytes() if data else b""


def _unshuffle(data: bytes, itemsize: int) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes() if data else b""


def _shared_parts(t: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(mask, sorted codebook, codes) of a float32 tensor, or None if it has too many distinct values to share."""
    flat = np.ascontiguousarray(t, dtype="<f4").ravel()
    if not np.isfinite(flat).all():
        raise SqueezeNetError(f"{key}: non-finite weights cannot be stored")
    bits = flat.view("<u4")
    mask = bits != 0  # bit patterns: -0.0 is a value, +0.0 is "not stored"
    patterns, inverse = np.unique(bits[mask], return_inverse=True)
    if patterns.size > MAX_CENTROIDS or (patterns.size > 256 and 2 * patterns.size > mask.sum()):
        return None  # not weight-shared: a codebook would be as big as the tensor
    order = np.argsort(patterns.view("<f4"), kind="stable")  # codebook sorted by value: smooth code statistics
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return mask, patterns[order].view("<f4"), rank[inverse]


def float_grid(values: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """``(n, g, e)`` with ``values == n * g * 2**e`` exactly, for integers ``n`` (int64) and the largest such step;
    ``None`` when there is none worth having (a -0.0, a non-finite value, or integers beyond 2**52)."""
    bits = np.ascontiguousarray(values, dtype="<f4").ravel().view("<u4").astype(np.int64)
    if bits.size == 0 or (bits == 0x80000000).any() or (((bits >> 23) & 0xFF) == 0xFF).any():
        return None
    biased = (bits >> 23) & 0xFF
    mantissa = np.where(biased > 0, (bits & 0x7FFFFF) | 0x800000, bits & 0x7FFFFF)
    exponent = np.where(biased > 0, biased - 150, -149)
    nonzero = mantissa != 0
    if not nonzero.any():
        return None
    shift = np.log2((mantissa & -mantissa)[nonzero]).astype(np.int64)  # trailing zero bits of each mantissa
    odd, place = mantissa[nonzero] >> shift, exponent[nonzero] + shift  # value = odd * 2**place
    e = int(place.min())
    if int((place - e).max()) + 24 > 52:
        return None
    ints = np.zeros(bits.size, dtype=np.int64)
    ints[nonzero] = odd << (place - e)
    ints = np.where(bits >> 31 == 1, -ints, ints)
    g = int(np.gcd.reduce(np.abs(ints[nonzero])))
    return ints // g, g, e


def grid_values(ints: np.ndarray, g: int, e: int) -> np.ndarray | None:
    """float32 values ``n * g * 2**e``, or ``None`` if any is not exactly a float32 (a corrupt grid)."""
    exact = np.ldexp((ints * g).astype(np.float64), e)
    values = exact.astype("<f4")
    return values if np.array_equal(values.astype(np.float64), exact) else None


def _grid_code(values: np.ndarray, sorted_distinct: bool) -> tuple[bytes, tuple[int, int]] | None:
    """The Exp-Golomb stream of a grid's integers when it beats raw float32 by :data:`GRID_GAIN`."""
    found = float_grid(values)
    if found is None:
        return None
    ints, g, e = found
    if np.abs(ints).max() * g >= MAX_GRID_INT:
        return None
    symbols = np.concatenate([zigzag(ints[:1]), np.diff(ints) - 1]) if sorted_distinct else zigzag(ints)
    stream = golomb_encode(symbols)
    return (stream, (g, e)) if len(stream) < GRID_GAIN * 4 * values.size else None


def _grid_decode(stream: bytes, count: int, grid: tuple[int, int], sorted_distinct: bool) -> np.ndarray | None:
    symbols = golomb_decode(stream, count)
    ints = np.cumsum(np.concatenate([unzigzag(symbols[:1]), symbols[1:] + 1])) if sorted_distinct else unzigzag(symbols)
    if count and np.abs(ints).max() * grid[0] >= MAX_GRID_INT:
        return None
    return grid_values(ints, *grid)


def encode_sqz(state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[bytes, list[TensorRecord]]:
    """The bytes of a ``.sqz`` file for these tensors and metadata, and its tensor records."""
    records: list[TensorRecord] = []
    streams: list[bytes] = []
    side_f32: list[bytes] = []
    side_other: list[bytes] = []
    for key, tensor in state_dict.items():
        t = tensor.detach().cpu()
        shape = tuple(int(s) for s in t.shape)
        if t.dtype == torch.float32 and t.dim() >= 2 and (parts := _shared_parts(t.numpy(), key)) is not None:
            mask, codebook, codes = parts
            kept = int(mask.sum())
            mask_stream = encode_stream(mask.astype(np.int64), 2, bernoulli(kept, mask.size))
            code_stream: EncodedStream = encode_stream(codes, max(1, codebook.size))
            streams += [mask_stream.to_bytes(), code_stream.to_bytes()]
            coded = _grid_code(codebook, sorted_distinct=True)
            if coded is None:
                side_f32.append(codebook.tobytes())
            else:
                streams.append(coded[0])
            records.append(TensorRecord(key, shape, "shared", "float32", kept, int(codebook.size),
                                        len(streams[-2 - (coded is not None)]), len(streams[-1 - (coded is not None)]),
                                        (mask_stream.method_name, code_stream.method_name),
                                        4 * int(codebook.size) if coded is None else 0,
                                        None if coded is None else coded[1], 0 if coded is None else len(coded[0])))
        else:
            name = {torch.float32: "float32", torch.int64: "int64"}.get(t.dtype)
            if name is None:
                raise SqueezeNetError(f"{key}: {t.dtype} tensors cannot be stored in .sqz (float32 and int64 can)")
            coded = _grid_code(t.numpy(), sorted_distinct=False) if name == "float32" and t.numel() <= MAX_GRID_RAW else None
            if coded is not None:
                streams.append(coded[0])
                records.append(TensorRecord(key, shape, "raw", name, grid=coded[1], grid_bytes=len(coded[0])))
                continue
            data = np.ascontiguousarray(t.numpy(), dtype=RAW_DTYPES[name]).tobytes()
            (side_f32 if name == "float32" else side_other).append(data)
            records.append(TensorRecord(key, shape, "raw", name, side_bytes=len(data)))
    raw_side = _shuffle(b"".join(side_f32), 4) + b"".join(side_other)
    side = lzma.compress(raw_side, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    header = {"format": "squeezenet.sqz", "meta": meta, "tensors": [r.to_json() for r in records],
              "side": [len(side), len(raw_side), sum(map(len, side_f32))]}
    header_bytes = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    version = VERSION if any(r.grid is not None for r in records) else 1  # readable by older toolkits when it can be
    body = MAGIC + struct.pack(PREFIX, version, len(header_bytes)) + header_bytes + b"".join(streams) + side
    return body + hashlib.sha256(body).digest(), records


def bytes_per_tensor(data: bytes, records: list[TensorRecord]) -> dict[str, float]:
    """The bytes each tensor takes in the file ``data`` that :func:`encode_sqz` wrote with ``records``: its mask,
    codes and grid streams, plus its share of the compressed side data (in proportion to its raw side bytes)."""
    _, header_len = struct.unpack_from(PREFIX, data, len(MAGIC))
    streams = sum(r.mask_bytes + r.codes_bytes + r.grid_bytes for r in records)
    side = len(data) - len(MAGIC) - struct.calcsize(PREFIX) - header_len - streams - DIGEST_BYTES
    side_raw = sum(r.side_bytes for r in records)
    return {r.key: r.mask_bytes + r.codes_bytes + r.grid_bytes + r.side_bytes * side / max(1, side_raw)
            for r in records}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SqueezeNetError(message)


def _record(d: Any, index: int) -> TensorRecord:
    _check(isinstance(d, dict), f"tensor record {index} is not an object")
    key, shape, kind, dtype = d.get("key"), d.get("shape"), d.get("kind"), d.get("dtype", "float32")
    _check(isinstance(key, str) and len(key) <= 200 and isinstance(shape, list) and len(shape) <= 8
           and all(type(s) is int and 0 <= s < 2**31 for s in shape), f"tensor record {index} has a malformed key or shape")
    _check(isinstance(kind, str) and kind in ("shared", "raw") and isinstance(dtype, str) and dtype in RAW_DTYPES,
           f"{key}: unknown storage {brief(kind)}/{brief(dtype)}")
    grid, streams = d.get("grid"), d.get("streams", [])
    _check(grid is None or (isinstance(grid, list) and len(grid) == 2 and all(type(v) is int for v in grid)
                            and 1 <= grid[0] < MAX_GRID_INT and -400 <= grid[1] <= 400 and dtype == "float32"),
           f"{key}: malformed grid")
    _check(isinstance(streams, list) and all(type(s) is int and s >= 0 for s in streams)
           and len(streams) == (2 if kind == "shared" else 0) + (grid is not None), f"{key}: malformed stream lengths")
    numel = math.prod(shape)
    if grid is not None:  # an Exp-Golomb code of a value below 2**52 is at most 105 bits: bound the stream first
        values = numel if kind == "raw" else d.get("centroids")
        _check(isinstance(values, int) and 0 <= values <= MAX_CENTROIDS and streams[-1] <= 14 * values + 8,
               f"{key}: a grid stream of {count(streams[-1])} bytes for {brief(values)} values")
    if kind == "raw":
        _check(grid is None or numel <= MAX_GRID_RAW, f"{key}: a grid-coded raw tensor of {count(numel)} entries")
        side = 0 if grid is not None else numel * RAW_DTYPES[dtype].itemsize
        return TensorRecord(key, tuple(shape), "raw", dtype, side_bytes=side,
                            grid=None if grid is None else (grid[0], grid[1]), grid_bytes=streams[0] if grid else 0)
    kept, centroids, coders = d.get("kept"), d.get("centroids"), d.get("coders", [])
    _check(dtype == "float32" and type(kept) is int and type(centroids) is int
           and isinstance(coders, list) and all(isinstance(c, str) for c in coders), f"{key}: malformed record")
    _check(0 <= kept <= numel and 0 <= centroids <= min(kept, MAX_CENTROIDS) and (centroids > 0) == (kept > 0),
           f"{key}: {count(kept)} kept entries and {count(centroids)} centroids do not fit a {count(numel)}-entry tensor")
    return TensorRecord(key, tuple(shape), "shared", dtype, kept, centroids, streams[0], streams[1],
                        tuple(str(c) for c in coders), 0 if grid else 4 * centroids,
                        None if grid is None else (grid[0], grid[1]), streams[2] if grid else 0)


Expect = Callable[[dict[str, Any]], dict[str, tuple[tuple[int, ...], torch.dtype]]]


def decode_sqz(data: bytes, where: str, expect: Expect | None = None) -> SqzContents:
    """Parse and verify a ``.sqz`` file's bytes.

    ``expect`` maps the file's metadata to the tensors (key -> shape, dtype) of the architecture it
    describes; they are checked before any tensor is allocated. ``None`` only for trusted data.
    """
    _check(len(data) >= len(MAGIC) + struct.calcsize(PREFIX) + DIGEST_BYTES,
           f"{where}: too short to be a .sqz file ({len(data)} bytes)")
    _check(data[:len(MAGIC)] == MAGIC, f"{where}: not a .sqz file (wrong magic bytes)")
    version, header_len = struct.unpack_from(PREFIX, data, len(MAGIC))
    _check(version >= 1, f"{where}: .sqz version {version} does not exist (corrupt header)")
    _check(version <= VERSION, f"{where}: .sqz version {version}; this toolkit reads up to {VERSION} (upgrade squeezenet)")
    _check(hashlib.sha256(data[:-DIGEST_BYTES]).digest() == data[-DIGEST_BYTES:],
           f"{where}: checksum mismatch: the file is corrupted or truncated")
    start = len(MAGIC) + struct.calcsize(PREFIX)
    _check(header_len <= len(data) - DIGEST_BYTES - start, f"{where}: header length {header_len:,} runs past the end of the file")
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data[start:start + header_len], MAX_HEADER_BYTES)
        _check(not inflater.unconsumed_tail, f"{where}: .sqz header over {MAX_HEADER_BYTES:,} bytes once inflated")
    except zlib.error as exc:
        raise SqueezeNetError(f"{where}: unreadable .sqz header ({exc})") from None
    header = parse_json(text, f"{where}: .sqz header")
    _check(isinstance(header, dict) and isinstance(header.get("tensors"), list) and isinstance(header.get("meta"), dict)
           and isinstance(header.get("side"), list) and len(header["side"]) == 3
           and all(isinstance(v, int) and v >= 0 for v in header["side"]), f"{where}: malformed .sqz header")
    try:
        records = [_record(d, i) for i, d in enumerate(header["tensors"])]
    except ValueError as exc:
        raise SqueezeNetError(f"{where}: {exc}") from None
    _check(len({r.key for r in records}) == len(records), f"{where}: a tensor is listed twice")
    total = sum(r.numel for r in records)
    _check(total <= MAX_ELEMENTS, f"{where}: claims {count(total)} weights, more than any model this toolkit builds")
    if expect is not None:
        expected = expect(header["meta"])
        keys = {r.key for r in records}
        missing, extra = set(expected) - keys, keys - set(expected)
        _check(not missing and not extra, f"{where}: tensors do not match the architecture in its metadata: "
               f"{names_mismatch(sorted(missing), sorted(extra))}")
        for r in records:
            shape, dtype = expected[r.key]
            _check(tuple(shape) == r.shape, f"{where}: {r.key} has shape {list(r.shape)}, the architecture says {list(shape)}")
            _check(dtype == (torch.float32 if r.dtype == "float32" else torch.int64), f"{where}: {r.key} has dtype {r.dtype}")

    side_len, side_raw_len, side_f32_len = header["side"]
    body = ByteReader(data, start + header_len, len(data) - DIGEST_BYTES)
    state: dict[str, torch.Tensor] = {}
    shared: list[tuple[TensorRecord, np.ndarray, np.ndarray]] = []
    gridded: dict[str, np.ndarray] = {}
    try:
        for r in records:
            if r.kind == "raw" and r.grid is not None:
                values = _grid_decode(body.take(r.grid_bytes), r.numel, r.grid, sorted_distinct=False)
                _check(values is not None, f"{r.key}: grid values that are not float32")
                state[r.key] = torch.from_numpy(values.reshape(r.shape))  # type: ignore[union-attr]
            if r.kind == "shared":
                stream_start = body.offset
                mask = decode_stream(body, r.numel, 2, bernoulli(r.kept, r.numel) if r.numel else None).astype(bool)
                _check(body.offset - stream_start == r.mask_bytes, f"{r.key}: mask stream length disagrees with the header")
                _check(int(mask.sum()) == r.kept, f"{r.key}: mask has {int(mask.sum()):,} entries, the header says {r.kept:,}")
                stream_start = body.offset
                codes = decode_stream(body, r.kept, max(1, r.centroids))
                _check(body.offset - stream_start == r.codes_bytes, f"{r.key}: codes stream length disagrees with the header")
                shared.append((r, mask, codes))
                if r.grid is not None:
                    values = _grid_decode(body.take(r.grid_bytes), r.centroids, r.grid, sorted_distinct=True)
                    _check(values is not None, f"{r.key}: grid values that are not float32")
                    gridded[r.key] = values  # type: ignore[assignment]
        _check(body.remaining == side_len, f"side data is {body.remaining:,} bytes, the header says {count(side_len)}")
        expect_f32 = sum(r.side_bytes for r in records if r.dtype == "float32")
        expect_raw = expect_f32 + sum(r.side_bytes for r in records if r.dtype != "float32")
        _check(side_raw_len == expect_raw and side_f32_len == expect_f32, "side data size disagrees with the tensor records")
        unpacker = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
        raw = unpacker.decompress(body.take(side_len), max_length=side_raw_len + 1)
        _check(len(raw) == side_raw_len, f"side data decompresses to {len(raw):,} bytes, expected {count(side_raw_len)}")
    except (ValueError, lzma.LZMAError, OverflowError, RuntimeError) as exc:
        raise SqueezeNetError(f"{where}: corrupt .sqz data ({exc})") from None
    floats = ByteReader(_unshuffle(raw[:side_f32_len], 4))
    others = ByteReader(raw[side_f32_len:])
    codebooks: dict[str, np.ndarray] = {}
    for r in records:
        if r.kind == "raw" and r.grid is not None:
            continue
        if r.grid is not None:
            values = gridded[r.key]
        else:
            reader = floats if r.dtype == "float32" else others
            values = np.frombuffer(reader.take(r.side_bytes), dtype=RAW_DTYPES[r.dtype])
        if r.kind == "raw":
            state[r.key] = torch.from_numpy(values.copy().reshape(r.shape))
        else:
            _check(bool(np.isfinite(values).all()) and bool((values.view("<u4") != 0).all()),
                   f"{where}: {r.key} has a non-finite or +0.0 codebook entry (corrupt)")
            codebooks[r.key] = values
    for r, mask, codes in shared:
        flat = np.zeros(r.numel, dtype="<f4")
        flat[mask] = codebooks[r.key][codes]
        state[r.key] = torch.from_numpy(flat.reshape(r.shape))
    ordered = {r.key: state[r.key] for r in records}
    return SqzContents(ordered, header["meta"], records, len(data), header_len, side_len, side_raw_len)


def read_sqz_bytes(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SqueezeNetError(f"{path}: {size:,} bytes is far larger than any .sqz model")
    return path.read_bytes()
