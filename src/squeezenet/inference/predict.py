"""Top-k classification of image files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from ..common.progress import image_bar
from ..data import expand_image_paths, load_rgb_image
from ..errors import SqueezeNetError
from ..models import InferenceModel, input_device

logger = logging.getLogger(__name__)


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
def predict(model: InferenceModel, images: Sequence[str | Path | Image.Image | np.ndarray], topk: int = 5, batch_size: int = 32,
            progress: bool = False) -> list[Prediction]:
    """Classify images with a model (``load_weights``, an ``OnnxModel``, anything with a ``meta``).

    ``images`` are files, folders (standing for the image files below them), PIL images or uint8
    RGB arrays (H x W x 3, as a camera or OpenCV frame after BGR -> RGB). They are
    decoded one batch at a time, so memory does not grow with their number. Unreadable images get a
    :class:`Prediction` with ``error`` set; the others are classified.
    """
    if topk < 1 or batch_size < 1:
        raise SqueezeNetError(f"topk and batch size must be >= 1, got {topk} and {batch_size}")
    meta = model.meta
    if topk > meta.num_classes:  # said once, not per image: asking for more classes than exist is legal
        logger.warning(f"topk={topk}: the model has {meta.num_classes} classes; listing all {meta.num_classes}")
        topk = meta.num_classes
    transform = meta.preprocessing.transforms()
    model.eval()
    device = input_device(model)
    paths: list[Path | Image.Image] = []
    for item in images:
        if isinstance(item, np.ndarray):  # a decoded frame: H x W x 3 (RGB) or H x W, uint8
            if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (3, 4)):
                raise SqueezeNetError(f"arrays must be H x W x 3 (RGB), H x W x 4 or H x W uint8, got {item.dtype} "
                                 f"{list(item.shape)}")
            item = Image.fromarray(item)
        paths.extend([item] if isinstance(item, Image.Image) else expand_image_paths([item]))
    results = [Prediction(f"<image {i}>" if isinstance(p, Image.Image) else str(p)) for i, p in enumerate(paths)]
    with image_bar("predict", len(paths), progress) as advance:
        for start in range(0, len(paths), batch_size):
            ready: list[tuple[int, torch.Tensor]] = []
            for i in range(start, min(start + batch_size, len(paths))):
                try:
                    item = paths[i]
                    pixels = pil_to_tensor(item.convert("RGB")) if isinstance(item, Image.Image) else load_rgb_image(item)
                    ready.append((i, transform(pixels)))
                except ValueError as exc:
                    results[i].error = str(exc)
            if ready:
                logits = model(torch.stack([x for _, x in ready]).to(device)).float().cpu()
                finite = torch.isfinite(logits).all(dim=1).tolist()
                values, indices = logits.softmax(dim=1).topk(topk, dim=1)
                for (i, _), ok, vals, idxs in zip(ready, finite, values.tolist(), indices.tolist()):
                    if ok:
                        results[i].top = [(k, meta.classes[k], v) for k, v in zip(idxs, vals)]
                    else:  # NaN/inf weights or overflow: no answer rather than a meaningless one (or invalid JSON)
                        results[i].error = "the model's outputs for this image are not finite (NaN or infinity)"
            advance(min(batch_size, len(paths) - start))
    return results
