"""``Classifier``: one object for inference from any file this toolkit reads or writes.

``.onnx`` files run in onnxruntime (their meta comes from the file's metadata); ``.sqz``, ``.safetensors``,
``.pth``, ``.pt`` and ``.net`` files and named weight sets run in PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..common.device import device_kind, resolve_device
from ..errors import SqueezeNetError
from ..inference.predict import Prediction, predict
from ..models import InferenceModel, ModelMeta, Preprocessing, config_from_dict
from ..weights import load_weights
from .onnx import INPUT_NAME, META_FORMAT, OUTPUT_NAME, ort_session


class OnnxModel:
    """An onnxruntime session with the model contract (:class:`~squeezenet.models.InferenceModel`): a ``meta``
    read from the file, and a call from a float batch to logits."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such ONNX file: {path}")
        try:
            self.session = ort_session(path, threads, providers=providers)
        except SqueezeNetError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for malformed files
            raise SqueezeNetError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != META_FORMAT:
            raise SqueezeNetError(f"{path}: an ONNX file without squeezenet metadata (export it with `squeezenet export`); "
                                  "its preprocessing is unknown, so it is not used")
        try:
            config = config_from_dict(json.loads(meta["config"]), f"{path}: config")
            self.meta = ModelMeta(config, Preprocessing.from_dict(json.loads(meta["preprocessing"]), f"{path}: preprocessing"),
                                  tuple(json.loads(meta["classes"])), meta.get("source") or path.name)
        except (KeyError, ValueError, TypeError, RecursionError) as exc:
            raise SqueezeNetError(f"{path}: unreadable squeezenet metadata in the ONNX file ({exc})") from None
        self.precision = meta.get("precision", "fp32")
        self.path = path
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise SqueezeNetError(f"{path}: expected one input called {INPUT_NAME!r}")

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        crop = self.meta.preprocessing.crop
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.meta.config.in_chans, crop, crop):
            raise SqueezeNetError(f"{self.path.name} takes N x {self.meta.config.in_chans} x {crop} x {crop} batches, "
                                  f"got {list(images.shape)}")
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def load_model(source: str | Path, *, threads: int | None = None, device: str | torch.device | None = None,
               providers: Sequence[str] | None = None) -> InferenceModel:
    """A model for ``predict``/``evaluate``: onnxruntime for ``.onnx`` (on ``providers``, default the CPU),
    PyTorch for every other weights file or named weight set (moved to ``device``, default the CPU)."""
    if str(source).lower().endswith(".onnx"):
        kind = "cpu" if device in (None, "auto") else device_kind(device)
        if kind == "cuda" and not providers:
            providers = ["CUDAExecutionProvider"]
        elif kind not in ("cpu", "cuda"):
            raise SqueezeNetError(f"{source}: onnxruntime does not run on {device!r}; choose execution providers instead")
        return OnnxModel(source, threads, providers)
    if providers:
        raise SqueezeNetError(f"{source}: execution providers are for .onnx files; PyTorch models take a device")
    model = load_weights(source)
    return model.to(resolve_device(device)) if device is not None else model


class Classifier:
    """Top-k classification of images from any supported file.

    >>> clf = Classifier.load("model.sqz")          # or .onnx, .safetensors, .pth, .net, a named weight set
    >>> clf.predict(["cat.jpg"], topk=5)[0].top     # [(index, label, probability), ...]
    """

    def __init__(self, model: InferenceModel, source: str):
        self.model, self.source = model, source

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None, *, device: str | torch.device | None = None,
             providers: Sequence[str] | None = None) -> Classifier:
        """``device`` for PyTorch weights (``cuda``, ``auto``...), ``providers`` for ``.onnx`` files
        (onnxruntime execution providers, e.g. ``["CUDAExecutionProvider"]``)."""
        return cls(load_model(path, threads=threads, device=device, providers=providers), str(path))

    @property
    def meta(self) -> ModelMeta:
        return self.model.meta

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def backend(self) -> str:
        return f"onnxruntime ({self.model.precision})" if isinstance(self.model, OnnxModel) else "pytorch"

    def predict(self, images: Sequence[str | Path | Image.Image | np.ndarray], topk: int = 5,
                batch_size: int = 32) -> list[Prediction]:
        """Top-k (index, label, probability) per image (file, folder of files, PIL image or uint8 RGB array);
        unreadable files get ``error`` set instead."""
        return predict(self.model, images, topk=topk, batch_size=batch_size)
