"""The metadata every deployable file carries: flat string properties a client reads without this package.

ONNX files keep them as ``metadata_props`` (OpenVINO shows the same map as ``rt_info["framework"]``);
ExecuTorch programs as a constant method ``squeezenet_metadata`` returning their JSON. The keys: ``format``,
``format_version``, ``precision``, ``config`` (architecture, JSON), ``classes`` (JSON list), ``source``, and the
preprocessing both as readable flat keys (``resize``, ``resize_mode``, ``crop``, ``mean``, ``std``,
``channel_order``, ``value_range``, ``interpolation``, ``input_layout``) and as one JSON object
(``preprocessing``) that :func:`meta_from_properties` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..common.jsonsafe import parse_json
from ..errors import SqueezeNetError, brief
from ..models import ModelMeta, Network, Preprocessing, config_from_dict

META_FORMAT = "squeezenet.onnx"  # the value of ``format`` in every file we write (kept from the first ONNX files)
MAX_PROPERTY_CHARS = 4_000_000  # 1000 class names and a config are ~40 KB; a bigger property is not ours


def preprocessing_metadata(pre: Preprocessing) -> dict[str, str]:
    """Flat, self-explanatory keys a client reads without this package."""
    return {
        "resize": str(pre.resize), "resize_mode": pre.resize_mode, "crop": str(pre.crop),
        "mean": json.dumps(list(pre.mean)), "std": json.dumps(list(pre.std)), "channel_order": pre.channel_order,
        "value_range": str(pre.value_range), "interpolation": pre.interpolation,
        "input_layout": "NCHW float32: resize (shorter side to `resize`, or to resize x resize if resize_mode is "
                        "square), centre-crop `crop`, scale pixels to 0..value_range, order channels as "
                        "channel_order, subtract mean, divide by std",
        "preprocessing": json.dumps(pre.to_dict()),
    }


def model_properties(model: Network, precision: str, **extra: str) -> dict[str, str]:
    """Every property of a file exported from ``model`` stored at ``precision`` (``fp32``, ``int8``...)."""
    props = {"format": META_FORMAT, "format_version": "1", "precision": precision,
             "config": json.dumps(model.meta.config.to_dict()), "classes": json.dumps(list(model.meta.classes))}
    if model.meta.source:
        props["source"] = model.meta.source
    props.update(preprocessing_metadata(model.meta.preprocessing))
    props.update(extra)
    return props


def meta_from_properties(props: Mapping[str, str], where: str) -> tuple[ModelMeta, str]:
    """The model contract and precision from a file's properties; ``SqueezeNetError`` naming ``where`` when they
    are absent (a file not exported by us: its preprocessing is unknown) or unreadable."""
    if props.get("format") != META_FORMAT:
        raise SqueezeNetError(f"{where}: a file without squeezenet metadata (export it with `squeezenet export`); "
                              "its preprocessing is unknown, so it is not used")
    if props.get("format_version", "1") != "1":
        raise SqueezeNetError(f"{where}: squeezenet metadata format_version {brief(props.get('format_version'), 20)}; "
                              "this squeezenet reads version 1 (upgrade squeezenet-toolkit)")
    try:
        if any(len(str(v)) > MAX_PROPERTY_CHARS for v in props.values()):
            raise ValueError(f"a property longer than {MAX_PROPERTY_CHARS:,} characters")
        config = config_from_dict(parse_json(props["config"], f"{where}: config"), f"{where}: config")
        pre = Preprocessing.from_dict(parse_json(props["preprocessing"], f"{where}: preprocessing"), f"{where}: preprocessing")
        classes = parse_json(props["classes"], f"{where}: classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("classes must be a list of names")
        meta = ModelMeta(config, pre, tuple(classes), props.get("source") or where)
    except SqueezeNetError as exc:  # the readers name the file; ModelMeta's own checks (class count) do not
        if str(exc).startswith(where):
            raise
        raise SqueezeNetError(f"{where}: {exc}") from None
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise SqueezeNetError(f"{where}: unreadable squeezenet metadata ({str(exc)[:300]})") from None
    return meta, str(props.get("precision", "fp32"))


def native_message(exc: BaseException, limit: int = 200) -> str:
    """The first line of a native runtime's error (C++ messages run to many lines), cut to ``limit`` characters;
    the exception's type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


class FileModel:
    """What every runtime's model shares (:class:`~squeezenet.models.InferenceModel`): the ``meta`` read from the
    file, its ``path``, the ``runtime`` that runs it (a name of :data:`squeezenet.deploy.RUNTIMES`), the file's
    ``precision`` (``fp32`` or ``int8``), the ``batch`` it was exported for (``None``: any), and the check that a
    batch has the shape the file takes."""

    meta: ModelMeta
    path: Path
    runtime: str
    precision: str = "fp32"
    batch: int | None = None

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (detectors: raw anchor outputs; segmenters: per-pixel logits) of a preprocessed float batch."""
        raise NotImplementedError

    def eval(self) -> FileModel:
        return self

    def checked_batch(self, images: torch.Tensor) -> np.ndarray:
        """``images`` as a contiguous float32 NCHW array; ``SqueezeNetError`` when the shape is not the file's."""
        crop = self.meta.preprocessing.crop
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.meta.config.in_chans, crop, crop):
            raise SqueezeNetError(f"{self.path.name} takes N x {self.meta.config.in_chans} x {crop} x {crop} batches, "
                                  f"got {list(images.shape)}")
        return np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)

    def check_signature(self, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]]) -> None:
        """The graph's inputs and outputs (name, dims; a dim that is not an int is dynamic) against the metadata:
        one ``image`` input N x C x crop x crop and a ``logits`` output N x classes. A file edited after export
        fails here, at load, instead of at its first image."""
        crop, chans = self.meta.preprocessing.crop, self.meta.config.in_chans
        if len(inputs) == 1 and inputs[0][0] == "pixels":
            raise SqueezeNetError(f"{self.path}: takes decoded pixels, its preprocessing inside (export "
                                  "--with-preprocessing): a file for clients; squeezenet's commands run the plain export")
        if len(inputs) != 1 or inputs[0][0] != "image" or not _dims_fit(inputs[0][1], [None, chans, crop, crop]):
            raise SqueezeNetError(f"{self.path}: expected one input 'image' of N x {chans} x {crop} x {crop}, the graph has "
                                  f"{_signature(inputs)}")
        shape = list(self.meta.config.output_shape())
        if not outputs or outputs[0][0] != "logits" or not _dims_fit(outputs[0][1], [None, *shape]):
            raise SqueezeNetError(f"{self.path}: expected an output 'logits' of N x {' x '.join(map(str, shape))} "
                                  f"({_OUTPUT_WORDS.get(len(shape), 'its outputs')}), the graph "
                                  f"has {_signature(outputs)}")

    def checked_output(self, logits: object, images: int) -> torch.Tensor:
        """The runtime's answer as an N x classes (detectors: N x anchors x (4 + 1 + classes)) float tensor;
        ``SqueezeNetError`` when it is anything else."""
        out = torch.as_tensor(np.asarray(logits))
        if tuple(out.shape) != (images, *self.meta.config.output_shape()):
            raise SqueezeNetError(f"{self.path}: returned {list(out.shape)} for {images} images of "
                                  f"{self.meta.num_classes} classes (the file's graph disagrees with its metadata)")
        return out.float()


_OUTPUT_WORDS = {1: "its class list", 2: "anchors x (4 + 1 + classes)", 3: "classes x height x width"}


def _dims_fit(dims: list, expected: list) -> bool:
    return len(dims) == len(expected) and all(not isinstance(d, int) or e is None or d == e for d, e in zip(dims, expected))


def _signature(values: list[tuple[str, list]]) -> str:
    return ", ".join(f"{name[:40]!r} {[d if isinstance(d, int) else '?' for d in dims][:8]}" for name, dims in values[:3]) \
        or "none"
