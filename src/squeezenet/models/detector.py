"""Object detectors on SqueezeNet bodies: SqueezeDet (Wu et al. 2017) and an SSDLite head on two feature levels.

Both are plain networks from a preprocessed ``S x S`` batch to one tensor ``N x A x (4 + 1 + C)``: per anchor, four
box deltas (torchvision's ``BoxCoder`` with SSD's weights 10, 10, 5, 5) and the logits of background and the ``C``
classes. That single tensor is what every runtime computes (ONNX, ExecuTorch: no data-dependent ops inside);
:func:`decode_detections` (softmax, box decoding, torchvision's ``batched_nms``) turns it into boxes in every
loader alike. The anchors follow from the config alone (``detector.anchors``, never stored in a file).

Design decisions, measured or taken from the papers:

- **SqueezeDet**: the v1.0 body to fire9 (stride 16), Wu et al.'s fire10 and fire11 (squeeze 96, expand 384+384),
  dropout, and ConvDet: one 3x3 convolution predicting, per cell and anchor, the deltas and class scores. The
  anchors' shapes are fitted to the training boxes (k-means with 1 - IoU, as YOLOv2/SqueezeDet did) and stored in
  the config. Its confidence score is the background class of a softmax, as SSD has it, so both detectors share one
  loss (matching + hard negatives), one decoder and one export path.
- **SSDLite**: torchvision's ``SSDLiteHead`` (depthwise-separable predictors) and ``DefaultBoxGenerator`` on the
  stride-8 and stride-16 maps of the body and three depthwise extra blocks (strides 32, 64, 128), as
  ``ssdlite320_mobilenet_v3_large`` builds them.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import Conv2dNormActivation, batched_nms, box_iou, clip_boxes_to_image

from ..common.schema import from_dict
from ..errors import SqueezeNetError
from .config import CONFIG_VERSION, MAX_CLASSES, FireSpec, SqueezeNetConfig, _check_int
from .fire import Fire
from .meta import ModelMeta, Network
from .squeezenet import squeezenet_body as _body

Head = Literal["convdet", "ssdlite"]
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # SSD's delta scaling (torchvision's SSD and SSDLite use the same)
#: SqueezeDet's nine KITTI anchor shapes scaled to a square image, until k-means on the user's boxes replaces them
DEFAULT_ANCHORS: tuple[tuple[float, float], ...] = (
    (0.03, 0.05), (0.08, 0.12), (0.15, 0.10), (0.12, 0.30), (0.30, 0.22),
    (0.25, 0.50), (0.50, 0.40), (0.45, 0.80), (0.85, 0.75))
MAX_ANCHORS = 64
MIN_BOX = 0.01  # a decoded box narrower or lower than this (input pixels) is dropped
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that rebuilds a detector: the body, the head, the input side and (ConvDet) the anchor shapes.

    ``num_classes`` counts object classes (the background is extra); ``anchors`` are (width, height) fractions of
    the input side; ``extra_fire`` is fire10 and fire11 of SqueezeDet."""

    head: Head
    num_classes: int
    backbone: SqueezeNetConfig
    image_size: int = 320
    anchors: tuple[tuple[float, float], ...] = DEFAULT_ANCHORS
    extra_fire: FireSpec = field(default_factory=lambda: FireSpec(96, 384, 384))
    dropout: float = 0.5
    arch: str = field(default="detector", init=False)
    version: int = field(default=CONFIG_VERSION, init=False)

    def __post_init__(self) -> None:
        _check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        _check_int("image_size", self.image_size, 32, MAX_IMAGE_SIZE)
        if self.head not in ("convdet", "ssdlite"):
            raise SqueezeNetError(f"head must be convdet or ssdlite, got {self.head!r}")
        if not 1 <= len(self.anchors) <= MAX_ANCHORS or not all(0 < w <= 4 and 0 < h <= 4 for w, h in self.anchors):
            raise SqueezeNetError(f"anchors: 1 to {MAX_ANCHORS} (width, height) pairs in (0, 4] expected")
        if not 0 <= self.dropout < 1:
            raise SqueezeNetError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def task(self) -> str:
        return "detect"

    @property
    def in_chans(self) -> int:
        return self.backbone.in_chans

    def num_parameters(self) -> int:
        """Counted on the meta device: nothing is allocated."""
        with torch.device("meta"):
            return sum(p.numel() for p in build_detector(self).parameters())

    def largest_activation(self, size: int) -> int:
        return self.backbone.largest_activation(size)

    def output_shape(self) -> tuple[int, ...]:
        """Per image: anchors x (4 box deltas + background + classes)."""
        return (len(anchors_for(self)), 4 + 1 + self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "version": self.version, "head": self.head, "num_classes": self.num_classes,
                "backbone": self.backbone.to_dict(), "image_size": self.image_size,
                "anchors": [list(a) for a in self.anchors], "extra_fire": [*vars(self.extra_fire).values()],
                "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: Any, where: str = "detector config") -> DetectorConfig:
        if isinstance(data, dict) and isinstance(data.get("extra_fire"), list) and len(data["extra_fire"]) == 3:
            s, e1, e3 = data["extra_fire"]
            data = {**data, "extra_fire": {"squeeze": s, "expand1x1": e1, "expand3x3": e3}}
        return from_dict(cls, data, where)


def _on_meta(run: Any, config: Any) -> list[torch.Tensor]:
    """The feature maps ``run`` (a module or a bound method) makes of one input, computed on a meta-device copy:
    only the shapes, at no cost (the grid of anchors follows from them)."""
    module = run if isinstance(run, nn.Module) else run.__self__
    probe = copy.deepcopy(module).to("meta").eval()
    fn = probe if isinstance(run, nn.Module) else getattr(probe, run.__name__)
    out = fn(torch.empty(1, config.in_chans, config.image_size, config.image_size, device="meta"))
    return list(out.values()) if isinstance(out, dict) else out if isinstance(out, list) else [out]


class Detector(Network):
    """The base of our detectors: ``forward(x) -> N x A x (4 + 1 + C)``, ``anchors`` (A x 4, input pixels)."""

    anchors: torch.Tensor

    @property
    def config(self) -> DetectorConfig:
        return self.meta.config  # type: ignore[return-value]

    def _set_anchors(self, anchors: torch.Tensor) -> None:
        self.register_buffer("anchors", anchors.float(), persistent=False)  # from the config: never in a file

    def get_classifier(self) -> nn.Conv2d:
        raise SqueezeNetError("a detector has no classifier layer; its head predicts boxes and classes together")

    def reset_classifier(self, num_classes: int) -> None:
        raise SqueezeNetError("a detector's classes are set when it is built (num_classes=)")


def grid_anchors(size: int, grid: tuple[int, int], shapes: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """``x1, y1, x2, y2`` anchors (pixels of a ``size`` x ``size`` input) centred on every cell of ``grid`` (rows,
    columns), every shape at every cell, in the order ConvDet's output is laid out: row, column, shape."""
    rows, cols = grid
    cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * size / rows
    cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * size / cols
    wh = torch.tensor(shapes, dtype=torch.float64) * size
    centres = torch.stack(torch.meshgrid(cx, cy, indexing="xy"), -1).reshape(-1, 1, 2)
    return torch.cat([centres - wh / 2, centres + wh / 2], -1).reshape(-1, 4).float()


class SqueezeDet(Detector):
    """Wu, Iandola, Jin, Keutzer (2017): SqueezeNet body, fire10/fire11, ConvDet (see the module docstring)."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        self.backbone, _, body_names = _body(config.backbone)
        channels = config.backbone.num_features
        s, e1, e3 = config.extra_fire.squeeze, config.extra_fire.expand1x1, config.extra_fire.expand3x3
        bn = config.backbone.batch_norm
        self.fire10 = Fire(channels, s, e1, e3, batch_norm=bn)
        self.fire11 = Fire(e1 + e3, s, e1, e3, batch_norm=bn)
        self.dropout = nn.Dropout(config.dropout)
        self.per_anchor = 4 + 1 + config.num_classes
        self.convdet = nn.Conv2d(e1 + e3, len(config.anchors) * self.per_anchor, kernel_size=3, padding=1)
        nn.init.normal_(self.convdet.weight, std=0.001)
        nn.init.zeros_(self.convdet.bias)  # type: ignore[arg-type]
        self.layer_names = {**body_names, "fire10": ["fire10"], "fire11": ["fire11"], "convdet": ["convdet"]}
        rows, cols = _on_meta(self.backbone, config)[-1].shape[-2:]
        with torch.device("cpu"):
            self._set_anchors(grid_anchors(config.image_size, (rows, cols), config.anchors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convdet(self.dropout(self.fire11(self.fire10(self.backbone(x)))))
        n, _, h, w = y.shape  # N x (K * per) x H x W -> N x (H * W * K) x per: row, column, anchor
        return y.permute(0, 2, 3, 1).reshape(n, h * w * (y.shape[1] // self.per_anchor), self.per_anchor)


def _extra_block(cin: int, cout: int) -> nn.Sequential:
    """torchvision's SSDLite extra layer: 1x1 down to cout/2, depthwise 3x3 stride 2, 1x1 up (BN + ReLU6 each)."""
    mid = cout // 2
    act = functools.partial(Conv2dNormActivation, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    return nn.Sequential(act(cin, mid, kernel_size=1), act(mid, mid, kernel_size=3, stride=2, groups=mid),
                         act(mid, cout, kernel_size=1))


class SSDLiteSqueeze(Detector):
    """SSDLite (torchvision's head and default boxes) on the stride-8 and -16 maps of a SqueezeNet body."""

    EXTRA = (512, 256, 256)  # channels of the extra maps (strides 32, 64, 128)

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.meta = ModelMeta.default(config)
        body, info, body_names = _body(config.backbone)
        taps = [f for f in info if f.reduction in (8, 16)]
        if len(taps) != 2:
            raise SqueezeNetError("ssdlite needs a body with stride-8 and stride-16 maps (an ImageNet stem)")
        self._taps = [int(f.module.rsplit(".", 1)[1]) for f in taps]
        self.backbone = nn.Sequential(*list(body)[: self._taps[-1] + 1])
        channels = [f.num_chs for f in taps]
        extras, cin = [], channels[-1]
        for cout in self.EXTRA:
            extras.append(_extra_block(cin, cout))
            cin = cout
        self.extras = nn.ModuleList(extras)
        self.anchor_generator = DefaultBoxGenerator([[2, 3]] * (2 + len(self.EXTRA)), min_ratio=0.2, max_ratio=0.95)
        self.head = SSDLiteHead(channels + list(self.EXTRA), self.anchor_generator.num_anchors_per_location(),
                                config.num_classes + 1, functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))
        kept = {f"backbone.{i}" for i in range(len(self.backbone))}
        self.layer_names = {**{k: v for k, v in body_names.items() if all(p in kept for p in v)},
                            "extras": [f"extras.{i}" for i in range(len(extras))], "head": ["head"]}
        size = config.image_size
        maps = _on_meta(self._maps, config)
        with torch.device("cpu"):  # (also when the model is built on the meta device: the anchors are data)
            images = ImageList(torch.zeros(1, 0, size, size), [(size, size)])
            anchors = self.anchor_generator(images, [torch.zeros(1, 0, *m.shape[-2:]) for m in maps])[0]
        self._set_anchors(anchors)

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self._taps:
                maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self._maps(x))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], dim=-1)


def build_detector(config: DetectorConfig) -> Detector:
    """The network a detector config describes."""
    return SqueezeDet(config) if config.head == "convdet" else SSDLiteSqueeze(config)


@functools.lru_cache(maxsize=16)
def anchors_for(config: DetectorConfig) -> torch.Tensor:
    """The anchors of a config (A x 4, input pixels), built once per config on the meta device (loaders of ONNX and
    ExecuTorch files check and decode every batch against them)."""
    with torch.device("meta"):  # the anchors themselves are computed on the CPU even then
        return build_detector(config).anchors


# --- decoding: the same for PyTorch, ONNX and ExecuTorch outputs ----------------------------------------------


def box_coder() -> det_utils.BoxCoder:
    return det_utils.BoxCoder(weights=BOX_WEIGHTS)


def decode_detections(outputs: torch.Tensor, anchors: torch.Tensor, size: int, *, score_threshold: float = 0.01,
                      nms_iou: float = 0.45, max_detections: int = 100, candidates: int = 400,
                      image_sizes: list[tuple[int, int]] | None = None) -> list[dict[str, torch.Tensor]]:
    """Boxes, scores and 0-based labels per image from ``N x A x (4 + 1 + C)`` outputs, as torchvision's SSD does it:
    softmax, per class the ``candidates`` best above ``score_threshold``, ``batched_nms`` at ``nms_iou``, the best
    ``max_detections``. Boxes are in pixels of the input, or of each original image (``image_sizes``: height,
    width) when given: the input is the image warped to ``size`` x ``size``."""
    coder = box_coder()
    results = []
    for n in range(outputs.shape[0]):
        deltas, logits = outputs[n, :, :4].float(), outputs[n, :, 4:].float()
        scores = logits.softmax(-1)[:, 1:]
        boxes = clip_boxes_to_image(coder.decode_single(deltas, anchors.to(deltas.device)), (size, size))
        empty = ((boxes[:, 2] - boxes[:, 0]) < MIN_BOX) | ((boxes[:, 3] - boxes[:, 1]) < MIN_BOX)
        scores = scores.masked_fill(empty[:, None], 0.0)  # clipped to a line at the border: no box at all
        # per class, its best `candidates` anchors above the threshold: one topk over all classes at once
        top, anchor = scores.topk(min(candidates, scores.shape[0]), dim=0)  # k x C
        chosen = top > score_threshold
        s, lab = top[chosen], torch.nonzero(chosen)[:, 1]
        b = boxes[anchor[chosen]]
        keep = batched_nms(b, s, lab, nms_iou)[:max_detections]
        b, s, lab = b[keep], s[keep], lab[keep]
        if image_sizes is not None:
            h, w = image_sizes[n]
            b = b * torch.tensor([w / size, h / size, w / size, h / size], device=b.device)
        results.append({"boxes": b, "scores": s, "labels": lab})
    return results


def fit_anchor_shapes(sizes: torch.Tensor, k: int = 9, iterations: int = 100, seed: int = 0) -> tuple[tuple[float, float], ...]:
    """``k`` (width, height) anchor shapes for boxes of these sizes (fractions of the image): k-means with 1 - IoU
    as the distance (YOLOv2's; SqueezeDet fitted KITTI's anchors this way), sorted by area. Too few boxes: the
    defaults."""
    sizes = sizes.double()
    if len(sizes) < k:
        return DEFAULT_ANCHORS[:k] if k <= len(DEFAULT_ANCHORS) else DEFAULT_ANCHORS
    g = torch.Generator().manual_seed(seed)
    centres = sizes[torch.randperm(len(sizes), generator=g)[:k]].clone()

    def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        boxes_a = torch.cat([-a / 2, a / 2], 1)
        boxes_b = torch.cat([-b / 2, b / 2], 1)
        return box_iou(boxes_a, boxes_b)

    for _ in range(iterations):
        assign = iou(sizes, centres).argmax(1)
        moved = torch.stack([sizes[assign == j].median(0).values if bool((assign == j).any()) else centres[j]
                             for j in range(k)])
        if torch.allclose(moved, centres):
            break
        centres = moved
    order = (centres[:, 0] * centres[:, 1]).argsort()
    return tuple((round(float(w), 4), round(float(h), 4)) for w, h in centres[order].clamp(min=1e-3).tolist())
