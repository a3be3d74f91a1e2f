"""Pictures people would rather look at than read: boxes drawn on images (torchvision's ``draw_bounding_boxes``)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from ..common.io import atomic_path
from ..data.images import load_rgb_image

#: one colour per class, cycled (matplotlib's tab10, which people read apart)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: list[str], scores: torch.Tensor,
                    classes: torch.Tensor) -> torch.Tensor:
    """``image`` (uint8 3xHxW) with each box outlined in its class's colour and labelled ``name 0.87``."""
    width = max(2, round(max(image.shape[-2:]) / 300))
    captions = [f"{name} {float(s):.2f}" for name, s in zip(labels, scores)]
    colours = [PALETTE[int(c) % len(PALETTE)] for c in classes]
    if len(boxes) == 0:
        return image
    font = _font()
    return draw_bounding_boxes(image, boxes, labels=captions, colors=colours, width=width, font=font,
                               font_size=max(11, round(max(image.shape[-2:]) / 45)) if font else None,
                               fill_labels=True, label_colors="white")


@functools.lru_cache(maxsize=1)
def _font() -> str | None:
    """A TrueType font for readable captions: DejaVu Sans from matplotlib or the system; else Pillow's tiny bitmap."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    candidates = [Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"] if spec and spec.origin else []
    candidates.append(Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    return next((str(p) for p in candidates if p.is_file()), None)


def write_annotated(source: str | Path, out_dir: Path, boxes: torch.Tensor, labels: list[str], scores: torch.Tensor,
                    classes: torch.Tensor) -> Path:
    """The image at ``source`` with its boxes drawn, written (atomically) as ``out_dir/<name>`` (JPEG or PNG)."""
    image = load_rgb_image(source)
    drawn = draw_detections(image, boxes, labels, scores, classes)
    name = Path(source).name
    target = out_dir / (name if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png") else f"{Path(name).stem}.png")
    with atomic_path(target) as tmp:
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(tmp, format="PNG" if target.suffix.lower() == ".png" else "JPEG",
                                                             quality=92)
    return target
