"""How many answers a client gets right when it preprocesses with another image library (OpenCV) than ours:
following the file's metadata by hand (the plain ONNX export), or feeding decoded pixels to the file with the
preprocessing inside (``export --with-preprocessing``). Both against ``squeezenet predict`` (PyTorch) on the same
images. Prints the counts; run: ``python benchmarks/preprocessing_clients.py [--images DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from squeezenet.data.images import expand_image_paths, load_rgb_image  # noqa: E402
from squeezenet.deploy import export_onnx  # noqa: E402
from squeezenet.deploy.ort import ort_session  # noqa: E402
from squeezenet.deploy.pixels import export_pixels_onnx  # noqa: E402
from squeezenet.inference import predict  # noqa: E402
from squeezenet.weights import load_weights  # noqa: E402

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def metadata_client(session, path: Path) -> int:
    """What a client does with only the metadata: OpenCV decode, resize, crop, channel order, mean and std."""
    props = session.get_modelmeta().custom_metadata_map
    resize, crop = int(props["resize"]), int(props["crop"])
    mean, std = np.array(json.loads(props["mean"])), np.array(json.loads(props["std"]))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR
    h, w = image.shape[:2]
    if props["resize_mode"] == "square":
        size = (resize, resize)
    else:
        short = min(h, w)
        size = (resize * w // short, resize * h // short)
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
    image = image[top:top + crop, left:left + crop].astype(np.float32)
    if props["channel_order"] == "RGB":
        image = image[..., ::-1]
    if float(props["value_range"]) == 1.0:
        image = image / 255.0
    x = ((image - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    return int(session.run(None, {"image": x})[0][0].argmax())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", default=str(SHARED / "imagenet-samples"))
    parser.add_argument("--weights", default=str(SHARED / "deep-compression" / "compressed_SqueezeNet.net"))
    args = parser.parse_args()
    model = load_weights(args.weights).eval()
    paths = expand_image_paths([args.images])
    ours = [p.top[0][0] for p in predict(model, paths, topk=1)]
    with tempfile.TemporaryDirectory() as tmp:
        plain, inside = Path(tmp) / "plain.onnx", Path(tmp) / "pixels.onnx"
        transform = model.meta.preprocessing.transforms()
        export_onnx(model, plain, check_images=__import__("torch").stack([transform(load_rgb_image(p)) for p in paths[:8]]))
        export_pixels_onnx(model, inside, check_images=[load_rgb_image(p) for p in paths[:8]])
        by_metadata, by_graph = ort_session(plain), ort_session(inside)
        same_metadata = sum(metadata_client(by_metadata, p) == k for p, k in zip(paths, ours))
        same_graph = 0
        for p, k in zip(paths, ours):
            pixels = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            same_graph += int(by_graph.run(None, {"pixels": pixels})[0][0].argmax()) == k
    print(f"{len(paths)} images, {Path(args.weights).name} ({model.meta.preprocessing.name} preprocessing)")
    print(f"OpenCV client following the metadata (plain export): same top-1 as squeezenet predict on {same_metadata}")
    print(f"OpenCV client feeding pixels (--with-preprocessing):  same top-1 as squeezenet predict on {same_graph}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
