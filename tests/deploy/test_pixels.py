"""Preprocessing inside the file (``export --with-preprocessing``): the graph does what torchvision's pipeline does,
so a client that decodes with another image library (OpenCV here) gets PyTorch's answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import require_shared
from squeezenet.data.images import expand_image_paths, load_rgb_image
from squeezenet.deploy.pixels import PixelsToLogits, export_pixels_onnx
from squeezenet.errors import SqueezeNetError
from squeezenet.models import Preprocessing
from squeezenet.weights import load_weights

DC = ("deep-compression", "compressed_SqueezeNet.net")


def _models():
    """The published model with its Caffe pipeline (a 256 x 256 warp), and the same weights behind a shorter-side
    resize (torchvision's rule for the long side): both resize paths, on a model whose answers vary."""
    warp = load_weights(require_shared(*DC)).eval()
    shorter = load_weights(require_shared(*DC)).eval()
    p = shorter.meta.preprocessing
    shorter.meta = shorter.meta.replace(preprocessing=Preprocessing(
        "caffe-shorter", resize=256, crop=227, mean=p.mean, std=p.std, channel_order="BGR", value_range=255.0))
    return {"warp": warp, "shorter": shorter}


@pytest.mark.parametrize("kind", ["warp", "shorter"])
def test_the_graph_in_pytorch_equals_torchvisions_pipeline_on_real_images(kind) -> None:
    model = _models()[kind]
    wrapped = PixelsToLogits(model).eval()
    transform = model.meta.preprocessing.transforms()
    paths = expand_image_paths([require_shared("imagenet-samples")])[:24]  # portrait and landscape sizes among them
    same, diffs, kls = 0, [], []
    with torch.inference_mode():
        for path in paths:
            image = load_rgb_image(path)
            reference = model(transform(image).unsqueeze(0))[0]
            got = wrapped(image.permute(1, 2, 0).contiguous())[0]
            same += int(reference.argmax() == got.argmax())
            diffs.append(float((reference - got).abs().max()))
            kls.append(float(torch.nn.functional.kl_div(got.log_softmax(0), reference.log_softmax(0), log_target=True,
                                                        reduction="sum")))
    # rounding inside the resize kernels differs by at most one grey level on some pixels
    assert same == len(paths) and max(kls) < 5e-3 and np.median(diffs) < 0.1, (same, max(kls), np.median(diffs))


@pytest.mark.slow
def test_an_opencv_client_of_the_file_answers_as_squeezenet_predict(tmp_path) -> None:
    import cv2

    from squeezenet.deploy.ort import ort_session
    from squeezenet.inference import predict

    model = _models()["shorter"]
    samples = require_shared("imagenet-samples")
    paths = expand_image_paths([samples])
    out = tmp_path / "pixels.onnx"
    check = export_pixels_onnx(model, out, check_images=[load_rgb_image(p) for p in paths[:8]])
    assert check["top1_agreement"] == 1.0
    session = ort_session(out)
    names = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    ours = predict(model, paths[8:88], topk=1)
    same = 0
    for path, prediction in zip(paths[8:88], ours):
        pixels = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)  # another decoder
        logits = session.run(None, {"pixels": pixels})[0][0]
        same += names[int(logits.argmax())] == prediction.top[0][1]
    assert same >= 79, same  # >= 99% of 80 held-out images: what a client following the metadata did not reach

    with pytest.raises(SqueezeNetError, match="takes decoded pixels"):  # our loaders take the plain export
        from squeezenet.deploy import load_model
        load_model(out)
