"""Preprocessing inside the file: an ONNX classifier that takes decoded pixels (uint8, height x width x 3 RGB, any
size) and does in its graph what ``meta.preprocessing.transforms()`` does in PyTorch.

Why: a client that follows our metadata with another image library does not get our answers (resize
implementations differ and SqueezeNet's margins are small: an OpenCV client agreed with ``squeezenet predict`` on 235
of 250 held-out images). With the preprocessing in the graph, any client that can decode a JPEG gets PyTorch's
answers. Each step reproduces torchvision's v2 pipeline exactly where it can:

- resize: the shorter side to ``resize`` with the longer one ``int(resize * long / short)`` (torchvision's rule,
  computed without branching on which side is shorter, so one graph serves every orientation), or a warp to
  ``resize x resize``; bilinear with antialiasing (ONNX ``Resize`` with ``antialias=1``), rounded to whole values
  as torchvision's uint8 kernel rounds;
- centre crop: torchvision's offsets, ``round((size - crop) / 2)`` with Python's round half to even;
- channel order, value range, mean and std as the metadata says.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.extras import require_extra
from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..models import Network
from .metadata import model_properties
from .ort import ort_session

PIXELS_INPUT = "pixels"
MIN_SIDE, MAX_SIDE = 8, 16384


def _centre_offset(size: torch.SymInt | int, crop: int) -> torch.SymInt | int:
    """``int(round((size - crop) / 2))`` with round half to even (torchvision's center_crop), in integers."""
    d = size - crop
    half = d // 2
    return half + (d % 2) * (half % 2)


class PixelsToLogits(nn.Module):
    """``model`` behind its own preprocessing: uint8 H x W x 3 RGB pixels in, 1 x classes logits out."""

    def __init__(self, model: Network):
        super().__init__()
        p = model.meta.preprocessing
        if p.interpolation != "bilinear":
            raise SqueezeNetError(f"preprocessing inside the file supports bilinear resizing; these weights use "
                                  f"{p.interpolation}")
        self.model = model.eval()
        self.resize, self.crop, self.square = p.resize, p.crop, p.resize_mode == "square"
        self.scale = 1.0 / 255.0 if p.value_range == 1.0 else 1.0
        self.bgr = p.channel_order == "BGR"
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(p.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(p.std).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        h, w = pixels.shape[0], pixels.shape[1]
        new_h: int | torch.SymInt = self.resize
        new_w: int | torch.SymInt = self.resize
        if not self.square:
            short = torch.sym_min(h, w)
            new_h, new_w = (self.resize * h) // short, (self.resize * w) // short
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,  # type: ignore[arg-type]
                          antialias=True)  # (symbolic sizes while exported)
        x = x.round().clamp(0, 255)  # torchvision resizes uint8 images to uint8
        top, left = _centre_offset(new_h, self.crop), _centre_offset(new_w, self.crop)
        x = x.narrow(2, top, self.crop).narrow(3, left, self.crop)
        # the crop fits (the resized short side is `resize` >= `crop`), which the exporter cannot prove alone
        torch._check(x.shape[2] == self.crop)
        torch._check(x.shape[3] == self.crop)
        if self.bgr:
            x = x.flip(1)
        x = (x * self.scale - self.mean) / self.std
        return self.model(x)


def export_pixels_onnx(model: Network, path: str | Path, *, check_images: list[torch.Tensor],
                       opset: int = 18, min_agreement: float = 0.99) -> dict[str, float]:
    """Write ``model`` with its preprocessing inside to ``path`` (ONNX, one image a call), after checking it
    against PyTorch's own pipeline on ``check_images`` (uint8 3 x H x W tensors, as decoded): top-1 must agree on
    ``min_agreement`` of them, else nothing is written. Returns the check's figures."""
    require_extra("deploy", "ONNX export")
    if model.meta.task != "classify":
        raise SqueezeNetError("preprocessing inside the file is for classifiers (detectors and segmenters return "
                              "maps at the network's input size)")
    if not check_images:
        raise SqueezeNetError("export --with-preprocessing checks the file on real images: give --check DIR")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise SqueezeNetError(f"{path}: preprocessing inside the file is written as ONNX; name the output *.onnx")
    wrapper = PixelsToLogits(model)
    example = torch.zeros(300, 400, 3, dtype=torch.uint8)
    height = torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE)
    width = torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=[PIXELS_INPUT],
                                    output_names=["logits"], dynamic_shapes=({0: height, 1: width},),
                                    opset_version=opset, external_data=False, verbose=False)
    assert program is not None
    import onnx

    proto = program.model_proto
    props = model_properties(model, "fp32")
    props.update(input_layout="HWC", input_dtype="uint8", preprocessing_in_graph="true")
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    session = ort_session_from_bytes(data)
    transform = model.meta.preprocessing.transforms()
    same, worst = 0, 0.0
    with torch.inference_mode():
        for image in check_images:
            reference = model(transform(image).unsqueeze(0))[0]
            got = torch.from_numpy(session.run(None, {PIXELS_INPUT: image.permute(1, 2, 0).contiguous().numpy()})[0][0])
            same += int(reference.argmax()) == int(got.argmax())
            worst = max(worst, float((reference - got).abs().max()))
    agreement = same / len(check_images)
    if agreement < min_agreement:
        raise SqueezeNetError(f"the file with preprocessing inside agrees with PyTorch on {agreement:.3f} of "
                              f"{len(check_images)} images (at least {min_agreement} needed); not written")
    with atomic_path(path) as out:
        out.write_bytes(data)
    return {"images": float(len(check_images)), "top1_agreement": agreement, "max_abs_diff": worst}


def ort_session_from_bytes(data: bytes):
    """An onnxruntime session on a model held in memory (the file is written only once it passed)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".onnx") as tmp:
        tmp.write(data)
        tmp.flush()
        return ort_session(tmp.name)
