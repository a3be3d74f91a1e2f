"""Pictures people would rather look at than read: boxes drawn on images (torchvision's ``draw_bounding_boxes``) and
masks tinted over them (``draw_segmentation_masks``)."""

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


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def draw_mask_overlay(image: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """``image`` (uint8 3xHxW) with each class of ``mask`` (HxW indices) but the background (0) tinted in its
    class's colour (torchvision's ``draw_segmentation_masks``)."""
    from torchvision.utils import draw_segmentation_masks

    present = [int(c) for c in mask.unique().tolist() if 0 < int(c) < 255]
    if not present:
        return image
    masks = torch.stack([mask == c for c in present])
    return draw_segmentation_masks(image, masks, alpha=alpha, colors=[_rgb(PALETTE[c % len(PALETTE)]) for c in present])


def write_mask(source: str | Path, out_dir: Path, mask: torch.Tensor) -> tuple[Path, Path]:
    """For the image at ``source``: ``out_dir/<stem>.png`` with the mask tinted over it, and ``out_dir/masks/
    <stem>.png``, the mask itself (a palette PNG of class indices, as VOC's, readable back by ``eval``)."""
    image = load_rgb_image(source)
    stem = Path(source).stem
    overlay, index = out_dir / f"{stem}.png", out_dir / "masks" / f"{stem}.png"
    with atomic_path(overlay) as tmp:
        Image.fromarray(draw_mask_overlay(image, mask).permute(1, 2, 0).numpy()).save(tmp, format="PNG")
    palette = [v for c in range(256) for v in (_rgb(PALETTE[c % len(PALETTE)]) if c else (0, 0, 0))]
    indices = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    indices.putpalette(palette)
    index.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(index) as tmp:
        indices.save(tmp, format="PNG")
    return overlay, index
