"""Reader for the published Deep Compression SqueezeNet (``compressed_SqueezeNet.net``), without Caffe.

Byte layout (little-endian), from the release's own decoder:

* one ``uint32`` per conv layer: how many entries that layer stores (26 layers, prototxt order:
  conv1, fire2..fire9 each squeeze/expand1x1/expand3x3, conv_final);
* then for each layer: a 256-entry ``float32`` codebook, the ``float32`` biases, one ``uint8``
  codebook index per entry, and one 4-bit position increment per entry, two per byte, low nibble
  first. Entry k lands at flat position ``cumsum(d + 1)[k] - 1`` of the weight tensor; gaps longer
  than 16 are bridged by filler entries whose code points at the codebook's 0.0.

Tensor shapes come from our own SqueezeNet v1.0 definition (Caffe-compatible, conv10 ``pad=1``);
every count and offset is checked against them and against the file size before anything is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SqueezeNetError
from ..models import create_model

CODEBOOK_SIZE = 256
MAX_FILE_BYTES = 64 * 2**20  # the release is 675,763 bytes; anything far larger is not this format


@dataclass(frozen=True)
class CompressedLayer:
    """One layer as stored: shared-weight codebook, per-entry codes and flat positions, and the bias."""

    key: str  # state_dict key of the weight, e.g. "features.3.squeeze.weight"
    shape: tuple[int, ...]
    codebook: np.ndarray  # float32 [256]
    codes: np.ndarray  # uint8 [entries]
    positions: np.ndarray  # int64 [entries], strictly increasing flat indices
    bias: np.ndarray  # float32 [out_channels]

    def dense_weight(self) -> np.ndarray:
        w = np.zeros(int(np.prod(self.shape)), dtype=np.float32)
        w[self.positions] = self.codebook[self.codes]
        return w.reshape(self.shape)


def deep_compression_layer_keys() -> list[tuple[str, tuple[int, ...], int]]:
    """(weight key, weight shape, bias length) of the 26 conv layers, in the file's order."""
    with torch.device("meta"):
        model = create_model("squeezenet1_0", caffe_compat=True)
    layers: list[tuple[str, tuple[int, ...], int]] = []
    for name, paths in model.layer_names.items():
        if name == "conv1":
            prefixes = [paths[0]]
        elif name.startswith("fire"):
            prefixes = [f"{paths[0]}.{part}" for part in ("squeeze", "expand1x1", "expand3x3")]
        elif name == "conv10":
            prefixes = ["classifier.1"]
        else:
            continue
        for prefix in prefixes:
            conv = model.get_submodule(prefix)
            layers.append((f"{prefix}.weight", tuple(conv.weight.shape), conv.bias.shape[0]))
    return layers


def read_deep_compression(path: str | Path) -> list[CompressedLayer]:
    """Parse a ``.net`` file into its 26 compressed layers; ``ValueError`` on any inconsistency."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SqueezeNetError(f"{path}: {size:,} bytes is far too large for a Deep Compression SqueezeNet .net file")
    data = path.read_bytes()
    specs = deep_compression_layer_keys()
    header = 4 * len(specs)
    if len(data) < header:
        raise SqueezeNetError(f"{path}: truncated .net file ({len(data)} bytes, the header alone needs {header})")
    counts = np.frombuffer(data, dtype="<u4", count=len(specs))
    offset = header
    layers = []
    for (key, shape, n_bias), count in zip(specs, counts):
        numel = int(np.prod(shape))
        entries = int(count)
        if not 0 < entries <= numel:
            raise SqueezeNetError(f"{path}: layer {key} claims {entries:,} entries for a {numel:,}-weight tensor "
                                  "(corrupt header)")
        need = 4 * CODEBOOK_SIZE + 4 * n_bias + entries + (entries + 1) // 2
        if offset + need > len(data):
            raise SqueezeNetError(
                f"{path}: truncated at layer {key} (needs {need:,} bytes at offset {offset:,}, file has {len(data):,})"
            )
        codebook = np.frombuffer(data, "<f4", CODEBOOK_SIZE, offset).astype(np.float32)
        offset += 4 * CODEBOOK_SIZE
        bias = np.frombuffer(data, "<f4", n_bias, offset).astype(np.float32)
        offset += 4 * n_bias
        codes = np.frombuffer(data, np.uint8, entries, offset).copy()
        offset += entries
        packed = np.frombuffer(data, np.uint8, (entries + 1) // 2, offset)
        offset += (entries + 1) // 2
        steps = np.empty(2 * packed.size, dtype=np.int64)
        steps[0::2], steps[1::2] = packed & 0x0F, packed >> 4
        positions = np.cumsum(steps[:entries] + 1) - 1
        if positions[-1] >= numel:
            raise SqueezeNetError(f"{path}: layer {key} positions run to {positions[-1]:,}, past its {numel:,} weights (corrupt)")
        if not (np.isfinite(codebook).all() and np.isfinite(bias).all()):
            raise SqueezeNetError(f"{path}: layer {key} has non-finite codebook or bias values (corrupt)")
        layers.append(CompressedLayer(key, shape, codebook, codes, positions, bias))
    if offset != len(data):
        raise SqueezeNetError(f"{path}: {len(data) - offset:,} unexpected trailing bytes after the last layer (not this format)")
    return layers


def deep_compression_state_dict(layers: list[CompressedLayer]) -> dict[str, torch.Tensor]:
    """A Caffe-compatible ``squeezenet1_0`` state_dict from decoded layers (codebook values bit-exact)."""
    state: dict[str, torch.Tensor] = {}
    for layer in layers:
        state[layer.key] = torch.from_numpy(layer.dense_weight())
        state[layer.key.removesuffix("weight") + "bias"] = torch.from_numpy(layer.bias.copy())
    return state
