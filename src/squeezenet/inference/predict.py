"""Top-k classification of image files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import load_rgb_image


@dataclass
class Prediction:
    """Top-k classes of one image: (class index, class name, probability), most likely first."""

    image: str
    top: list[tuple[int, str, float]] = field(default_factory=list)
    error: str | None = None  # set instead of ``top`` when the image could not be read

    def to_dict(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "top": [{"index": i, "label": n, "prob": p} for i, n, p in self.top]}


@torch.inference_mode()
def predict(model: nn.Module, images: Sequence[str | Path], topk: int = 5, batch_size: int = 32) -> list[Prediction]:
    """Classify image files with a model from :func:`squeezenet.weights.load_weights`.

    Unreadable images get a :class:`Prediction` with ``error`` set; the others are classified.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    topk = min(topk, model.num_classes)
    transform = model.preprocessing.transforms()
    model.eval()
    results = [Prediction(str(p)) for p in images]
    ready: list[tuple[int, torch.Tensor]] = []
    for i, path in enumerate(images):
        try:
            ready.append((i, transform(load_rgb_image(path))))
        except ValueError as exc:
            results[i].error = str(exc)
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        probs = model(torch.stack([x for _, x in chunk])).softmax(dim=1)
        values, indices = probs.topk(topk, dim=1)
        for (i, _), vals, idxs in zip(chunk, values.tolist(), indices.tolist()):
            results[i].top = [(k, model.class_names[k], v) for k, v in zip(idxs, vals)]
    return results
