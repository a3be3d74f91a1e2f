"""Weight file formats, chosen by extension: ``.net`` (read only), ``.pth``/``.pt``, ``.safetensors``, ``.sqz``.

Files we write carry a :class:`WeightsMeta` (architecture config, preprocessing, class names) so they
load with no flags. In ``.safetensors`` it is the header metadata entry ``squeezenet`` (JSON); in
``.pth`` it rides in the state_dict's own ``_metadata`` attribute, so the file stays a plain
torchvision-style state_dict that ``model.load_state_dict(torch.load(f))`` accepts unchanged.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .preprocessing import Preprocessing

META_KEY = "squeezenet"
PTH_META_KEY = "__squeezenet__"
META_VERSION = 1

READ_FORMATS = (".net", ".pth", ".pt", ".safetensors", ".sqz")
WRITE_FORMATS = (".pth", ".pt", ".safetensors", ".sqz")


@dataclass
class WeightsMeta:
    """What a weights file says about itself beyond the tensors."""

    config: dict[str, Any] | None = None
    preprocessing: Preprocessing | None = None
    classes: list[str] | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": META_VERSION,
            "config": self.config,
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "classes": self.classes,
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, where: str) -> WeightsMeta:
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            version = d.get("version")
            if not isinstance(version, int) or version > META_VERSION:
                raise ValueError(f"metadata version {version!r}; this toolkit reads up to {META_VERSION}")
            pre = d.get("preprocessing")
            classes = d.get("classes")
            if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
                raise ValueError("classes must be a list of strings")
            return cls(config=d.get("config"), preprocessing=Preprocessing.from_dict(pre) if pre else None,
                       classes=classes, source=d.get("source"))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: unreadable squeezenet metadata ({exc})") from None


@dataclass
class WeightsFile:
    """Tensors and metadata read from one file."""

    state_dict: dict[str, torch.Tensor]
    meta: WeightsMeta = field(default_factory=WeightsMeta)
    format: str = ""


def _suffix(path: Path, allowed: tuple[str, ...], verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{path}: cannot {verb} '{suffix or 'no extension'}' files; use one of {', '.join(allowed)}")
    return suffix


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it, then put it back
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    A run killed mid-write leaves the previous file intact and at worst a stray ``.tmp`` file. The file gets
    the permissions ``open()`` would give it (``mkstemp`` makes it private to its owner).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read any supported weights file; ``ValueError`` with the reason if it is not readable."""
    path = Path(path)
    suffix = _suffix(path, READ_FORMATS, "read")
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if suffix == ".net":
        from .deep_compression import deep_compression_state_dict, read_deep_compression
        from .preprocessing import CAFFE

        state = deep_compression_state_dict(read_deep_compression(path))
        config = _caffe_v1_0_config()
        return WeightsFile(state, WeightsMeta(config=config, preprocessing=CAFFE, source=f"deep-compression:{path.name}"), ".net")
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".sqz":
        return read_sqz(path)[0]
    return _read_pth(path)


def read_sqz(path: str | Path) -> tuple[WeightsFile, Any]:
    """A ``.sqz`` file's weights and its decoded contents (records and section sizes, for reports).

    The tensor records are checked against the architecture in the file's own config before decoding.
    """
    from .imagenet import imagenet_names
    from .sqz import IMAGENET_CLASSES, decode_sqz, read_sqz_bytes

    path, where = Path(path), str(path)
    found: list[WeightsMeta] = []

    def expect(meta_dict: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        d = dict(meta_dict)
        imagenet = d.get("classes") == IMAGENET_CLASSES
        if imagenet:
            d["classes"] = None
        meta = WeightsMeta.from_json(json.dumps(d), where)
        if meta.config is None:
            raise ValueError(f"{where}: .sqz metadata has no architecture config")
        if imagenet:
            meta.classes = list(imagenet_names())
        found.append(meta)
        return _expected_tensors(meta.config, where)

    contents = decode_sqz(read_sqz_bytes(path), where, expect)
    return WeightsFile(contents.state_dict, found[0], ".sqz"), contents


def _expected_tensors(config: dict[str, Any] | None, where: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    from ..models import model_from_config

    try:
        with torch.device("meta"):
            model = model_from_config(config)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"{where}: the architecture in its metadata is invalid ({_first_line(exc)})") from None
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def _caffe_v1_0_config() -> dict[str, Any]:
    from ..models import create_model

    with torch.device("meta"):
        return create_model("squeezenet1_0", caffe_compat=True).config.to_dict()


def _read_safetensors(path: Path) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    meta = WeightsMeta.from_json(metadata[META_KEY], str(path)) if META_KEY in metadata else WeightsMeta()
    return WeightsFile(state, meta, ".safetensors")


def _read_pth(path: Path) -> WeightsFile:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, AttributeError,
            UnicodeDecodeError, ImportError) as exc:
        raise ValueError(f"{path}: not a readable PyTorch weights file ({_first_line(exc)})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a training checkpoint: take its weights
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                          for k, v in obj.items()):
        raise ValueError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    meta = WeightsMeta()
    extra = getattr(obj, "_metadata", None) or {}
    if PTH_META_KEY in extra:
        meta = WeightsMeta.from_json(extra[PTH_META_KEY].get("json", ""), str(path))
    return WeightsFile(dict(obj), meta, ".pth")


def write_weights_file(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: WeightsMeta) -> Path:
    """Write tensors and metadata atomically in the format the extension names."""
    path = Path(path)
    suffix = _suffix(path, WRITE_FORMATS, "write")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if suffix == ".sqz":
            from .imagenet import imagenet_names
            from .sqz import IMAGENET_CLASSES, encode_sqz

            meta_dict = meta.to_dict()
            if meta.classes is not None and list(meta.classes) == list(imagenet_names()):
                meta_dict["classes"] = IMAGENET_CLASSES
            tmp.write_bytes(encode_sqz(tensors, meta_dict)[0])
        elif suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.clone() for k, v in tensors.items()}, str(tmp),
                      metadata={"format": "pt", META_KEY: meta.to_json()})
        else:
            from collections import OrderedDict

            od: OrderedDict[str, torch.Tensor] = OrderedDict(tensors)
            od._metadata = OrderedDict({PTH_META_KEY: {"json": meta.to_json()}})  # type: ignore[attr-defined]
            torch.save(od, tmp)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
