"""Entropy coding of symbol streams for ``.sqz`` files: ANS and Huffman from ``constriction``.

A stream is coded with a per-stream model of its symbol frequencies. The model travels as a compact
table: each count rounded to a quarter (or half, eighth...) of a power of two, ``level = 1 +
round(r * log2(count))``, written as Exp-Golomb codes of the differences between neighbours (the
distributions of sorted k-means codes are smooth, so the differences are small). Rounding costs a
fraction of a byte per stream; storing exact counts would cost thousands of bytes over a model.

Both coders are tried and the smaller output kept (Huffman, as in Deep Compression, only on streams
up to :data:`HUFFMAN_MAX_SYMBOLS`: constriction's Huffman coder is driven symbol by symbol from Python,
and on long streams ANS, within a few bytes of the model's cross-entropy, always wins).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import constriction
import numpy as np

from ..errors import SqueezeNetError

METHOD_CONSTANT, METHOD_ANS, METHOD_HUFFMAN = 0, 1, 2
METHOD_NAMES = {METHOD_CONSTANT: "constant", METHOD_ANS: "ans", METHOD_HUFFMAN: "huffman"}
RESOLUTIONS = (1, 2, 4, 8)  # levels per octave a table may use
HUFFMAN_MAX_SYMBOLS = 1 << 16
MAX_ALPHABET = 1 << 16


def _bit_lengths(values: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each non-negative value (exact: frexp's exponent of an integer below 2**53)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def pack_bits(values: np.ndarray, widths: np.ndarray) -> bytes:
    """Each value (below 2**62) in its width of bits, MSB first, one after another, zero-padded to whole bytes
    (numpy: a table of 65,536 codes was two million Python calls). Widths may exceed a value's bits: leading zeros."""
    if not values.size:
        return b""
    shifts = np.arange(int(widths.max()) - 1, -1, -1)
    bits = (values[:, None] >> np.minimum(shifts, 62)) & 1  # a shift past 62 would wrap; those bits are 0
    return np.packbits(bits[shifts[None, :] < widths[:, None]].astype(np.uint8)).tobytes()


class BitReader:
    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, bits: int) -> int:
        if bits > self.left:
            raise SqueezeNetError("frequency table ends early")
        self.left -= bits
        return (self.value >> self.left) & ((1 << bits) - 1)

    def read_golomb(self, k: int) -> int:
        zeros = 0
        while self.read(1) == 0:
            zeros += 1
            if zeros > 40:
                raise SqueezeNetError("malformed Exp-Golomb code in a frequency table")
        return ((1 << (zeros + k)) | self.read(zeros + k)) - (1 << k)


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def table_levels(counts: np.ndarray, resolution: int) -> np.ndarray:
    """Quantised log-counts: 0 for an absent symbol, ``1 + round(r * log2(count))`` otherwise."""
    levels = np.zeros(counts.size, dtype=np.int64)
    present = counts > 0
    levels[present] = 1 + np.rint(resolution * np.log2(counts[present])).astype(np.int64)
    return levels


def level_probabilities(levels: np.ndarray, resolution: int) -> np.ndarray:
    """The model a table describes (identical on both sides: computed from integers only)."""
    present = levels > 0
    weights = np.zeros(levels.size, dtype=np.float64)
    top = levels[present].max()
    weights[present] = np.exp2((levels[present] - top) / resolution)
    return weights / weights.sum()


def _write_table(levels: np.ndarray, resolution: int) -> bytes:
    """2 bits of resolution, 2 bits of ``k``, then the zigzagged differences as Exp-Golomb codes of the order ``k``
    that is shortest (the code of ``u`` is ``u + 2**k`` in ``2 * bit_length(u + 2**k) - k - 1`` bits)."""
    deltas = _zigzag(np.diff(levels.astype(np.int64), prepend=0))
    k = min(range(4), key=lambda order: golomb_bits(deltas, order))
    values = np.concatenate([[RESOLUTIONS.index(resolution), k], deltas + (1 << k)])
    return pack_bits(values, np.concatenate([[2, 2], golomb_widths(deltas, k)]))


def _read_table(data: bytes, alphabet: int) -> tuple[np.ndarray, int]:
    r = BitReader(data)
    resolution = RESOLUTIONS[r.read(2)]
    k = r.read(2)
    levels = np.zeros(alphabet, dtype=np.int64)
    level = 0
    for i in range(alphabet):
        level += _unzigzag(r.read_golomb(k))
        if not 0 <= level <= 64 * resolution:
            raise SqueezeNetError("frequency table level out of range")
        levels[i] = level
    if not levels.any():
        raise SqueezeNetError("frequency table has no symbols")
    return levels, resolution


def _cross_entropy_bits(counts: np.ndarray, probabilities: np.ndarray) -> float:
    present = counts > 0
    return float(-(counts[present] * np.log2(probabilities[present])).sum())


def _ans_encode(symbols: np.ndarray, probabilities: np.ndarray) -> bytes:
    model = constriction.stream.model.Categorical(probabilities, perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), model)
    return coder.get_compressed().astype("<u4").tobytes()


def _ans_decode(payload: bytes, probabilities: np.ndarray, count: int) -> np.ndarray:
    if len(payload) % 4:
        raise SqueezeNetError("ANS stream length is not a whole number of 32-bit words")
    model = constriction.stream.model.Categorical(probabilities, perfect=False)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    symbols = coder.decode(model, count)
    if not coder.is_empty():
        raise SqueezeNetError("ANS stream has data left after its last symbol")
    return np.asarray(symbols, dtype=np.int64)


def _huffman_encode(symbols: np.ndarray, probabilities: np.ndarray) -> bytes:
    present = probabilities > 0
    rank = np.cumsum(present) - 1  # constriction's trees take strictly positive probabilities
    tree = constriction.symbol.huffman.EncoderHuffmanTree(probabilities[present])
    coder = constriction.symbol.QueueEncoder()
    for s in rank[symbols]:
        coder.encode_symbol(int(s), tree)
    words, _ = coder.get_compressed()
    return np.asarray(words, dtype="<u4").tobytes()


def _huffman_decode(payload: bytes, probabilities: np.ndarray, count: int) -> np.ndarray:
    if len(payload) % 4 or count > 32 * len(payload) + 32:
        raise SqueezeNetError("Huffman stream is too short for its symbol count")
    present = np.flatnonzero(probabilities > 0)
    if present.size == 1:
        return np.full(count, present[0], dtype=np.int64)
    tree = constriction.symbol.huffman.DecoderHuffmanTree(probabilities[present])
    coder = constriction.symbol.QueueDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    out = np.fromiter((coder.decode_symbol(tree) for _ in range(count)), dtype=np.int64, count=count)
    return present[out]


class EncodedStream(NamedTuple):
    """One coded stream: how it was coded, its frequency table and the coded symbols."""

    method: int
    table: bytes
    payload: bytes

    def to_bytes(self) -> bytes:
        return bytes([self.method]) + _varint(len(self.table)) + self.table + _varint(len(self.payload)) + self.payload

    @property
    def method_name(self) -> str:
        return METHOD_NAMES[self.method]


def encode_stream(symbols: np.ndarray, alphabet: int, probabilities: np.ndarray | None = None) -> EncodedStream:
    """Code ``symbols`` (ints in ``[0, alphabet)``) with the smaller of ANS and Huffman.

    ``probabilities``: a model both sides already know (no table is stored), e.g. a mask's density.
    """
    symbols = np.asarray(symbols, dtype=np.int64)
    if not 1 <= alphabet <= MAX_ALPHABET:
        raise SqueezeNetError(f"alphabet of {alphabet} symbols; streams support 1 to {MAX_ALPHABET}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise SqueezeNetError("symbol outside the stream's alphabet")
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    if symbols.size == 0 or np.count_nonzero(counts) == 1:
        return EncodedStream(METHOD_CONSTANT, _varint(int(symbols[0]) if symbols.size else 0), b"")
    table = b""
    if probabilities is None:
        options = []
        for r in RESOLUTIONS:
            levels = table_levels(counts, r)
            tbl = _write_table(levels, r)
            options.append((8 * len(tbl) + _cross_entropy_bits(counts, level_probabilities(levels, r)), tbl, levels, r))
        _, table, levels, r = min(options, key=lambda o: o[0])
        probabilities = level_probabilities(levels, r)
    candidates = [EncodedStream(METHOD_ANS, table, _ans_encode(symbols, probabilities))]
    if symbols.size <= HUFFMAN_MAX_SYMBOLS:
        candidates.append(EncodedStream(METHOD_HUFFMAN, table, _huffman_encode(symbols, probabilities)))
    return min(candidates, key=lambda s: len(s.payload))


def decode_stream(reader: ByteReader, count: int, alphabet: int, probabilities: np.ndarray | None = None) -> np.ndarray:
    """Read one stream written by :meth:`EncodedStream.to_bytes`; ``ValueError`` if it is malformed."""
    method = reader.take(1)[0]
    table = reader.take(reader.varint())
    payload = reader.take(reader.varint())
    if method == METHOD_CONSTANT:
        symbol = _varint_from(table)
        if symbol >= alphabet or payload:
            raise SqueezeNetError("constant stream names a symbol outside its alphabet")
        return np.full(count, symbol, dtype=np.int64)
    if method not in (METHOD_ANS, METHOD_HUFFMAN):
        raise SqueezeNetError(f"unknown stream coder {method}")
    if probabilities is None:
        levels, r = _read_table(table, alphabet)
        probabilities = level_probabilities(levels, r)
    elif table:
        raise SqueezeNetError("unexpected frequency table")
    decoded = (_ans_decode if method == METHOD_ANS else _huffman_decode)(payload, probabilities, count)
    if decoded.size != count or (count and (decoded.min() < 0 or decoded.max() >= alphabet)):
        raise SqueezeNetError("stream decoded to symbols outside its alphabet")
    return decoded


def bernoulli(ones: int, total: int) -> np.ndarray:
    """The two-symbol model of a mask with ``ones`` set among ``total`` (both sides know both numbers)."""
    p = ones / total if total else 0.5
    return np.array([1.0 - p, p], dtype=np.float64)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _varint_from(data: bytes) -> int:
    reader = ByteReader(data)
    value = reader.varint()
    if reader.remaining:
        raise SqueezeNetError("trailing bytes after a number")
    return value


class ByteReader:
    """Bounds-checked reading of a byte string: every read past the end is a ``ValueError``."""

    def __init__(self, data: bytes, offset: int = 0, end: int | None = None):
        self.data, self.offset = memoryview(data), offset
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.offset

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise SqueezeNetError(f"needs {n:,} bytes at offset {self.offset:,}, only {self.remaining:,} left (truncated?)")
        chunk = bytes(self.data[self.offset:self.offset + n])
        self.offset += n
        return chunk

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise SqueezeNetError("malformed length field")


def bits_for(centroids: int) -> int:
    """Index width a codebook of this size needs (what the paper's tables call bits)."""
    return max(1, math.ceil(math.log2(centroids))) if centroids > 1 else (1 if centroids else 0)


MAX_GOLOMB_ORDER = 31


def golomb_widths(values: np.ndarray, k: int) -> np.ndarray:
    """Bits of each order-``k`` Exp-Golomb code: ``u`` is written as ``u + 2**k`` in ``2 * bit_length(u + 2**k) -
    k - 1`` bits (its leading zeros say how long it is)."""
    return 2 * _bit_lengths(np.asarray(values, dtype=np.int64) + (1 << k)) - k - 1


def golomb_bits(values: np.ndarray, k: int) -> int:
    """Length in bits of the order-``k`` Exp-Golomb codes of ``values`` (non-negative ints)."""
    return int(golomb_widths(values, k).sum())


def golomb_encode(values: np.ndarray) -> bytes:
    """Non-negative ints as Exp-Golomb codes of the best order (stored in the first 5 bits), padded to bytes.

    For the few thousand grid integers of codebooks and biases: no table to store, and within a few
    percent of their entropy when their sizes fall off geometrically (sorted codebook gaps, biases)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= 1 << 52):
        raise SqueezeNetError("Exp-Golomb values must be in [0, 2**52)")
    k = min(range(MAX_GOLOMB_ORDER + 1), key=lambda order: golomb_bits(values, order))
    return pack_bits(np.concatenate([[k], values + (1 << k)]), np.concatenate([[5], golomb_widths(values, k)]))


def golomb_decode(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`golomb_encode`; ``ValueError`` if the codes end early or leave more than padding."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8)).tobytes().translate(bytes.maketrans(b"\x00\x01", b"01")).decode()
    if len(bits) < 5:
        raise SqueezeNetError("Exp-Golomb stream is too short")
    k, pos = int(bits[:5], 2), 5
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        one = bits.find("1", pos)
        zeros = one - pos
        if one < 0 or zeros + k > 52 or one + zeros + k + 1 > len(bits):
            raise SqueezeNetError("Exp-Golomb stream ends early or holds a value out of range")
        end = one + zeros + k + 1
        out[i] = int(bits[one:end], 2) - (1 << k)
        pos = end
    if len(bits) - pos >= 8 or "1" in bits[pos:]:
        raise SqueezeNetError("Exp-Golomb stream has data after its last value")
    return out


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed ints as non-negative ones (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...)."""
    values = np.asarray(values, dtype=np.int64)
    return np.where(values >= 0, 2 * values, -2 * values - 1)


def unzigzag(values: np.ndarray) -> np.ndarray:
    return np.where(values % 2 == 0, values // 2, -(values + 1) // 2)
