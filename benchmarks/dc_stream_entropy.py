"""How small can the published Deep Compression SqueezeNet be re-encoded? (groundwork for issue #5)

For each of the 26 layers of ``compressed_SqueezeNet.net``: the zeroth-order entropy of its codebook
indices and of its 4-bit position increments, and what Huffman coding and ANS (both from the
``constriction`` package, with a per-layer model built from the exact symbol counts) really produce,
plus what the per-layer count tables cost to store. Codebooks and biases are counted raw (float32).

    python benchmarks/dc_stream_entropy.py [PATH.net]
"""

from __future__ import annotations

import sys
from pathlib import Path

import constriction
import numpy as np

from squeezenet.weights.deep_compression import read_deep_compression

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "deep-compression" / "compressed_SqueezeNet.net"


def entropy_bits(symbols: np.ndarray, alphabet: int) -> float:
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(counts[counts > 0] * np.log2(p)).sum())


def ans_bytes(symbols: np.ndarray, alphabet: int) -> int:
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), model)
    return 4 * len(coder.get_compressed())


def huffman_bytes(symbols: np.ndarray, alphabet: int) -> int:
    counts = np.bincount(symbols, minlength=alphabet).astype(np.float64)
    present = counts > 0
    remap = np.cumsum(present) - 1  # constriction's trees need strictly positive probabilities
    tree = constriction.symbol.huffman.EncoderHuffmanTree(counts[present] / counts.sum())
    encoder = constriction.symbol.QueueEncoder()
    for s in remap[symbols]:
        encoder.encode_symbol(int(s), tree)
    _, bits = encoder.get_compressed()
    return (bits + 7) // 8


def varint_bytes(values: np.ndarray) -> int:
    return int(sum(max(1, (int(v).bit_length() + 6) // 7) for v in values))


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    layers = read_deep_compression(path)
    rows = []
    for layer in layers:
        gaps = np.diff(np.concatenate([[-1], layer.positions])) - 1
        codes = layer.codes.astype(np.int64)
        rows.append({
            "layer": layer.key.removesuffix(".weight"), "entries": len(codes),
            "H_codes": entropy_bits(codes, 256) / 8, "H_gaps": entropy_bits(gaps, 16) / 8,
            "ans_codes": ans_bytes(codes, 256), "ans_gaps": ans_bytes(gaps, 16),
            "huf_codes": huffman_bytes(codes, 256), "huf_gaps": huffman_bytes(gaps, 16),
            "table_codes": varint_bytes(np.bincount(codes, minlength=256)),
            "raw": 4 * (len(layer.codebook) + len(layer.bias)),
        })
    from rich.console import Console
    from rich.table import Table

    cols = ["layer", "entries", "H_codes", "H_gaps", "ans_codes", "ans_gaps", "huf_codes", "huf_gaps", "table_codes", "raw"]
    table = Table(title=f"{path.name}: bytes per stream")
    for c in cols:
        table.add_column(c, justify="left" if c == "layer" else "right")
    for r in rows:
        table.add_row(*[r[c] if c == "layer" else f"{r[c]:,.0f}" for c in cols])
    tot = {c: sum(r[c] for r in rows) for c in cols[1:]}
    table.add_row("total", *[f"{tot[c]:,.0f}" for c in cols[1:]], style="bold")
    Console(width=150).print(table)
    entropy = tot["H_codes"] + tot["H_gaps"] + tot["raw"]
    best = sum(min(r["ans_codes"], r["huf_codes"]) + min(r["ans_gaps"], r["huf_gaps"]) for r in rows)
    print(f"zeroth-order entropy of codes + gaps + raw codebooks/biases: {entropy:,.0f} bytes")
    print(f"best of ANS/Huffman per stream + raw: {best + tot['raw']:,.0f} bytes "
          f"(+ exact count tables {tot['table_codes']:,.0f}) vs release {path.stat().st_size:,} and target 545,000")


if __name__ == "__main__":
    main()
