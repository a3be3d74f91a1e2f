"""Weight file formats, chosen by extension: ``.net`` (read only), ``.pth``/``.pt``, ``.safetensors``, ``.sqz``.

Files we write carry the model's :class:`~squeezenet.models.ModelMeta` (architecture config, preprocessing,
class names, source) so they load with no flags. In ``.safetensors`` it is the header metadata entry
``squeezenet`` (JSON); in ``.pth`` it rides in the state_dict's own ``_metadata`` attribute, so the file stays a
plain torchvision-style state_dict that ``model.load_state_dict(torch.load(f))`` accepts unchanged. Reading
always yields a complete meta: what a file does not say (a torchvision ``.pth``) is inferred or defaulted.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..common.imagenet import imagenet_names
from ..common.io import atomic_path
from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError, names_mismatch
from ..models import CAFFE, ModelMeta, create_model, model_from_config
from ..models.config import MAX_PARAMETERS

META_KEY = "squeezenet"
PTH_META_KEY = "__squeezenet__"

MAX_FILE_BYTES = 1 << 30  # AlexNet in float32 is 244 MB; more is not a model this toolkit builds
READ_FORMATS = (".net", ".pth", ".pt", ".safetensors", ".sqz")
WRITE_FORMATS = (".pth", ".pt", ".safetensors", ".sqz")


@dataclass
class WeightsFile:
    """Tensors and metadata read from one file; ``described`` says whether the file carried our metadata
    (if not, ``meta`` was inferred from the tensors and defaults)."""

    state_dict: dict[str, torch.Tensor]
    meta: ModelMeta
    format: str = ""
    described: bool = True


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture of a plain torchvision-style state_dict (torchvision's SqueezeNets and AlexNet)."""
    stem = state_dict.get("features.0.weight")
    head = state_dict.get("classifier.1.weight")
    if stem is not None and head is not None and stem.dim() == 4:
        num_classes, in_chans = int(head.shape[0]), int(stem.shape[1])
        kernel = tuple(stem.shape[-2:])
        if "features.3.squeeze.weight" in state_dict and kernel in ((7, 7), (3, 3)):
            name = "squeezenet1_0" if kernel == (7, 7) else "squeezenet1_1"
            with torch.device("meta"):
                return create_model(name, num_classes=num_classes, in_chans=in_chans).config.to_dict()
        last = state_dict.get("classifier.6.weight")
        if kernel == (11, 11) and last is not None:
            with torch.device("meta"):
                return create_model("alexnet", num_classes=int(last.shape[0]), in_chans=in_chans).config.to_dict()
    raise SqueezeNetError("cannot tell the architecture of these weights: they carry no squeezenet metadata and are not "
                          "a torchvision SqueezeNet/AlexNet state_dict")


def parse_meta(text_or_dict: str | Mapping[str, Any] | None, where: str,
               state_dict: Mapping[str, torch.Tensor] | None = None) -> ModelMeta:
    """A file's metadata (JSON text or a dict; ``None`` for files without) as a complete :class:`ModelMeta`.
    A missing config is inferred from ``state_dict``; missing preprocessing and classes get the defaults."""
    if text_or_dict is None:
        data: Any = {}
    elif isinstance(text_or_dict, str):
        data = parse_json(text_or_dict, f"{where}: squeezenet metadata")
    else:
        data = text_or_dict
    if not isinstance(data, Mapping):
        raise SqueezeNetError(f"{where}: unreadable squeezenet metadata (not a JSON object)")
    if data.get("config") is None:
        if state_dict is None:
            raise SqueezeNetError(f"{where}: metadata has no architecture config")
        data = {**data, "config": infer_config(state_dict)}
    return ModelMeta.from_dict(data, where)


def _suffix(path: Path, allowed: tuple[str, ...], verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise SqueezeNetError(f"{path}: cannot {verb} '{suffix or 'no extension'}' files; use one of {', '.join(allowed)}")
    return suffix


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read any supported weights file; ``SqueezeNetError`` with the reason if it is not readable."""
    path = Path(path)
    suffix = _suffix(path, READ_FORMATS, "read")
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if suffix == ".net":
        from .deep_compression import deep_compression_state_dict, read_deep_compression

        state = deep_compression_state_dict(read_deep_compression(path))
        with torch.device("meta"):
            config = create_model("squeezenet1_0", caffe_compat=True).config
        meta = ModelMeta(config, CAFFE, imagenet_names(), f"deep-compression:{path.name}")
        return WeightsFile(state, meta, ".net", described=False)
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".sqz":
        return read_sqz(path)[0]
    return _read_pth(path)


def read_sqz(path: str | Path) -> tuple[WeightsFile, Any]:
    """A ``.sqz`` file's weights and its decoded contents (records and section sizes, for reports).

    The tensor records are checked against the architecture in the file's own config before decoding.
    """
    from .sqz import IMAGENET_CLASSES, decode_sqz, read_sqz_bytes

    path, where = Path(path), str(path)
    found: list[ModelMeta] = []

    def expect(meta_dict: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        d = dict(meta_dict)
        if d.get("classes") == IMAGENET_CLASSES:
            d["classes"] = list(imagenet_names())
        meta = parse_meta(d, where)
        found.append(meta)
        return _expected_tensors(meta, where)

    contents = decode_sqz(read_sqz_bytes(path), where, expect)
    return WeightsFile(contents.state_dict, found[0], ".sqz"), contents


def _expected_tensors(meta: ModelMeta, where: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    try:
        with torch.device("meta"):
            model = model_from_config(meta.config)
    except (SqueezeNetError, RuntimeError) as exc:
        raise SqueezeNetError(f"{where}: the architecture in its metadata is invalid ({_first_line(exc)})") from None
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _read_safetensors(path: Path) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    _check_size(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            text = metadata.get(META_KEY)
            shapes = {k: _Shape(f.get_slice(k).get_shape()) for k in f.keys()}
            meta = parse_meta(text, str(path), shapes)  # type: ignore[arg-type]
            check_tensors(meta, shapes, str(path))
            state = {k: f.get_tensor(k).clone() for k in f.keys()}  # not left mapped: see _read_pth
    except (SafetensorError, ValueError, RuntimeError) as exc:
        if isinstance(exc, SqueezeNetError):
            raise
        raise SqueezeNetError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    except OSError as exc:
        raise SqueezeNetError(f"{path}: cannot read it ({exc.strerror or _first_line(exc)})") from None
    return WeightsFile(state, meta, ".safetensors", described=text is not None)


class _Shape:
    """A tensor's shape without its data (what :func:`infer_config` and :func:`check_tensors` look at)."""

    def __init__(self, shape: list[int]):
        self.shape = torch.Size(shape)

    def dim(self) -> int:
        return len(self.shape)


def check_tensors(meta: ModelMeta, state_dict: Mapping[str, Any], where: str) -> None:
    """Refuse tensors whose names or shapes are not the architecture's, before a model is built for real: the
    architecture is built on the meta device (no memory), so a file claiming a huge network costs nothing."""
    expected = _expected_tensors(meta, where)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise SqueezeNetError(f"{where}: weights do not match the {meta.config.arch} architecture in its metadata: "
                              f"{names_mismatch(missing, unexpected)}")
    for key, (shape, _) in expected.items():
        got = tuple(state_dict[key].shape)
        if got != shape:
            raise SqueezeNetError(f"{where}: weights do not match the {meta.config.arch} architecture in its metadata "
                                  f"({key} has shape {list(got)[:6]}, it needs {list(shape)})")


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SqueezeNetError(f"{path}: {size:,} bytes is larger than any weights file this toolkit reads "
                              f"({MAX_FILE_BYTES:,}); the largest model it builds has {MAX_PARAMETERS:,} parameters")


def _read_pth(path: Path) -> WeightsFile:
    _check_size(path)
    try:
        obj = _load_pickle(path)
    except OSError as exc:
        raise SqueezeNetError(f"{path}: not a readable PyTorch weights file ({exc.strerror or _first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler fails on hostile bytes with any exception type
        raise SqueezeNetError(f"{path}: not a readable PyTorch weights file ({_pickle_reason(exc)})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a training checkpoint: take its weights
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in obj.items()):
        raise SqueezeNetError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    extra = getattr(obj, "_metadata", None) or {}
    entry = extra.get(PTH_META_KEY) if isinstance(extra, Mapping) else None
    text = entry.get("json") if isinstance(entry, Mapping) else None
    state = dict(obj)
    meta = parse_meta(text, str(path), state)
    check_tensors(meta, state, str(path))
    # copied out of the mapping once they are known to fit the architecture: a tensor still mapped from the file
    # kills the process (SIGBUS) when the file is rewritten in place while the model lives (the fuzz test did)
    return WeightsFile({k: v.clone() for k, v in state.items()}, meta, ".pth", described=text is not None)


def _load_pickle(path: Path) -> Any:
    """``torch.load`` with ``weights_only`` (no code runs from the file); zip files are memory-mapped, so a file
    holding huge tensors costs no memory until they are checked against the architecture."""
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)


def _pickle_reason(exc: BaseException) -> str:
    """The line of torch's refusal that says why (its message opens with paragraphs of advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Weights only load failed"):  # the reason follows the advice
        reason = lines[1].split("WeightsUnpickler error:", 1)[-1].strip()
        return f"{reason[:160]} (refused: code in a weights file is never run)"
    if isinstance(exc, KeyError | IndexError | struct.error | EOFError | UnicodeDecodeError):
        return f"not a PyTorch file or a damaged one: {type(exc).__name__}"
    return lines[0][:200] if lines else type(exc).__name__


def sqz_bytes(state_dict: Mapping[str, torch.Tensor], meta: ModelMeta) -> bytes:
    """The ``.sqz`` file these tensors and meta make (to know its size before writing it)."""
    return encode_sqz_file(state_dict, meta)[0]


def encode_sqz_file(state_dict: Mapping[str, torch.Tensor], meta: ModelMeta) -> tuple[bytes, dict[str, float]]:
    """The ``.sqz`` file and the bytes each tensor takes in it: mask, codes and grid streams plus its share of
    the side data. (A tensor stored raw has no mask: its zeros are in its values.)"""
    from .sqz import IMAGENET_CLASSES, bytes_per_tensor, encode_sqz

    meta_dict = meta.to_dict()
    if meta.classes == imagenet_names():
        meta_dict["classes"] = IMAGENET_CLASSES
    data, records = encode_sqz({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, meta_dict)
    return data, bytes_per_tensor(data, records)


def write_weights_file(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: ModelMeta) -> Path:
    """Write tensors and metadata atomically in the format the extension names."""
    path = Path(path)
    suffix = _suffix(path, WRITE_FORMATS, "write")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta_dict = meta.to_dict()
    from safetensors import SafetensorError

    try:
        _write(path, suffix, tensors, meta, meta_dict)
    except (SafetensorError, RuntimeError) as exc:  # how safetensors and torch's zip writer report a full disk
        raise SqueezeNetError(f"{path}: could not write it ({_first_line(exc)[:120]}); nothing was replaced") from None
    return path


def _write(path: Path, suffix: str, tensors: dict[str, torch.Tensor], meta: ModelMeta, meta_dict: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        if suffix == ".sqz":
            tmp.write_bytes(sqz_bytes(tensors, meta))
        elif suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.clone() for k, v in tensors.items()}, str(tmp),
                      metadata={"format": "pt", META_KEY: json.dumps(meta_dict)})
        else:
            from collections import OrderedDict

            od: OrderedDict[str, torch.Tensor] = OrderedDict(tensors)
            od._metadata = OrderedDict({PTH_META_KEY: {"json": json.dumps(meta_dict)}})  # type: ignore[attr-defined]
            torch.save(od, tmp)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
