"""Our detectors beside torchvision's ``ssdlite320_mobilenet_v3_large``: parameters, MACs, file size, batch-1 latency.

All three networks at a 320x320 input with 80 object classes (+ background), measured in one process with
interleaved medians (``OMP_WAIT_POLICY=PASSIVE`` set before torch loads). Each is timed from the preprocessed
image to its raw outputs (backbone + head): the decoding and NMS after it are the same kind of work for all
three (torchvision's ``postprocess_detections`` or our ``decode_detections``) and are timed in a separate row.
mAP needs training (issue #25's figures: README "Detect objects"); this script gives the cost side.

    python benchmarks/detectors.py [--threads 2] [--repeats 30] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from squeezenet import create_model  # noqa: E402
from squeezenet.common.cpu import cpu_summary  # noqa: E402
from squeezenet.deploy.bench import interleaved_medians  # noqa: E402
from squeezenet.models import decode_detections  # noqa: E402

SIZE, CLASSES = 320, 80


class TorchvisionRaw(torch.nn.Module):
    """torchvision's SSDLite without its resize/normalise transform and postprocessing: backbone + head."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        self.net = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = list(self.net.backbone(x).values())
        out = self.net.head(features)
        return torch.cat([out["bbox_regression"], out["cls_logits"]], -1)


def macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"squeezedet (SqueezeNet v1.0 body)": create_model("squeezedet", num_classes=CLASSES, image_size=SIZE),
              "ssdlite_squeezenet (v1.0 body)": create_model("ssdlite_squeezenet", num_classes=CLASSES, image_size=SIZE),
              "ssdlite_squeezenet (v1.1 body)": create_model("ssdlite_squeezenet", num_classes=CLASSES, image_size=SIZE,
                                                             body="v1.1"),
              "torchvision ssdlite320_mobilenet_v3_large": TorchvisionRaw()}
    x = torch.randn(1, 3, SIZE, SIZE)
    rows = {}
    for name, model in models.items():
        model.eval()
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            out = model(x)
        rows[name] = {"params": params, "macs": macs(model, x), "fp32_bytes": 4 * params, "anchors": out.shape[1]}
    ours = models["squeezedet (SqueezeNet v1.0 body)"]
    with torch.no_grad():
        raw = ours(x)
    runners = {name: (lambda m=m: m(x)) for name, m in models.items()}
    runners["decode + NMS (squeezedet outputs)"] = lambda: decode_detections(raw, ours.anchors, SIZE)  # type: ignore[arg-type]
    with torch.inference_mode():
        medians = interleaved_medians(runners, args.repeats)
    anchor = medians["torchvision ssdlite320_mobilenet_v3_large"]
    result = {"cpu": cpu_summary(), "threads": args.threads, "input": SIZE, "classes": CLASSES, "rows": rows,
              "ms": {k: 1000 * v for k, v in medians.items()}, "vs_torchvision": {k: v / anchor for k, v in medians.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['cpu']}, {args.threads} threads, batch 1 at {SIZE}x{SIZE}, {CLASSES} classes, medians of {args.repeats}")
    print(f"{'network':45s} {'params':>11s} {'GMACs':>7s} {'fp32 MB':>8s} {'anchors':>8s} {'ms':>8s} {'x tv':>6s}")
    for name in runners:
        r = rows.get(name)
        head = (f"{r['params']:11,d} {r['macs'] / 1e9:7.2f} {r['fp32_bytes'] / 1e6:8.2f} {r['anchors']:8d}" if r
                else f"{'':11s} {'':7s} {'':8s} {'':8s}")
        print(f"{name:45s} {head} {1000 * medians[name]:8.1f} {medians[name] / anchor:6.2f}")


if __name__ == "__main__":
    main()
