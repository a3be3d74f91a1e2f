"""``Classifier``: one object for inference from any file this toolkit reads or writes.

``.onnx`` files run in onnxruntime (their preprocessing and class names come from the file's
metadata); ``.sqz``, ``.safetensors``, ``.pth``, ``.pt`` and ``.net`` files run in PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..inference.predict import Prediction, predict
from ..weights import Preprocessing, load_weights
from .onnx import INPUT_NAME, META_FORMAT, OUTPUT_NAME, ort_session


class OnnxModel:
    """An onnxruntime session that quacks like our PyTorch models where inference needs it:
    called on a float batch it returns logits; it has ``num_classes``, ``class_names``, ``preprocessing``."""

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such ONNX file: {path}")
        try:
            self.session = ort_session(path, threads)
        except Exception as exc:  # onnxruntime raises its own exception types for malformed files
            raise ValueError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != META_FORMAT:
            raise ValueError(f"{path}: an ONNX file without squeezenet metadata (export it with `squeezenet export`); "
                             "its preprocessing is unknown, so it is not used")
        try:
            self.preprocessing = Preprocessing.from_dict(json.loads(meta["preprocessing"]))
            self.class_names = list(json.loads(meta["classes"]))
            self.config = json.loads(meta["config"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable squeezenet metadata in the ONNX file ({exc})") from None
        self.num_classes = len(self.class_names)
        self.precision = meta.get("precision", "fp32")
        self.path = path
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME]:
            raise ValueError(f"{path}: expected one input called {INPUT_NAME!r}")

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        crop = self.preprocessing.crop
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, crop, crop):
            raise ValueError(f"{self.path.name} takes N x 3 x {crop} x {crop} batches, got {list(images.shape)}")
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])


def load_model(path: str | Path, threads: int | None = None) -> nn.Module | OnnxModel:
    """A model for ``predict``/``evaluate``: onnxruntime for ``.onnx``, PyTorch for every other weights file."""
    if str(path).lower().endswith(".onnx"):
        return OnnxModel(path, threads)
    return load_weights(path)


class Classifier:
    """Top-k classification of images from any supported file.

    >>> clf = Classifier.load("model.sqz")          # or .onnx, .safetensors, .pth, .net, a named weight set
    >>> clf.predict(["cat.jpg"], topk=5)[0].top     # [(index, label, probability), ...]
    """

    def __init__(self, model: nn.Module | OnnxModel, source: str):
        self.model, self.source = model, source

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> Classifier:
        return cls(load_model(path, threads), str(path))

    @property
    def class_names(self) -> list[str]:
        return list(self.model.class_names)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.model.preprocessing

    @property
    def backend(self) -> str:
        return f"onnxruntime ({self.model.precision})" if isinstance(self.model, OnnxModel) else "pytorch"

    def predict(self, images: Sequence[str | Path | Image.Image | np.ndarray], topk: int = 5,
                batch_size: int = 32) -> list[Prediction]:
        """Top-k (index, label, probability) per image (file, folder of files, PIL image or uint8 RGB array);
        unreadable files get ``error`` set instead."""
        return predict(self.model, images, topk=topk, batch_size=batch_size)  # type: ignore[arg-type]
