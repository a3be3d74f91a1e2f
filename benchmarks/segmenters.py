"""Our segmenters beside torchvision's ``lraspp_mobilenet_v3_large``: parameters, MACs, file size, batch-1 latency,
and (``--runs``) the mIoU of trained runs of each on the same images.

All networks at a 320x320 input with COCO's 80 classes and the background, measured in one process with interleaved
medians (``OMP_WAIT_POLICY=PASSIVE`` set before torch loads), from the preprocessed image to full-resolution logits.
torchvision's network is our registered ``lraspp_mobilenet_v3`` (its own builder, unwrapped:
models/mobilenet_segmenter.py).

``--runs DIR...`` adds, for run directories of ``squeezenet train`` on one dataset (``--data``, default coco128 under
$SQUEEZENET_DATA), each run's model, best.safetensors size, and mIoU and person IoU on the training and validation
split with 95% bootstrap intervals over images: the issue's "trained the same way" comparison.

    python benchmarks/segmenters.py [--threads 2] [--repeats 20] [--runs RUN...] [--data DIR] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from detectors import macs  # noqa: E402  (the same MAC count: benchmarks/detectors.py)

from squeezenet import create_model, load_weights  # noqa: E402
from squeezenet.common.cpu import cpu_summary  # noqa: E402
from squeezenet.deploy.bench import interleaved_medians  # noqa: E402
from squeezenet.inference.segmentation import evaluate_segmenter  # noqa: E402

SIZE, CLASSES = 320, 81
ANCHOR = "lraspp_mobilenet_v3 (torchvision's)"


def score_run(run: Path, data: str, resamples: int) -> dict:
    """A trained run's model, file size and mIoU on both splits of ``data`` (the split training used)."""
    weights = run / "best.safetensors"
    model = load_weights(weights).eval()
    recipe = json.loads((run / "run.json").read_text()).get("recipe", {})
    out = {"model": recipe.get("model", model.meta.config.arch), "file_bytes": weights.stat().st_size,
           "body": "ImageNet" if recipe.get("backbone_weights") else "random"}
    nan = (float("nan"), float("nan"))
    for split in ("train", "val"):
        s = evaluate_segmenter(model, data, split=split, resamples=resamples)
        out[split] = {"miou": s.miou, "miou_ci": s.intervals.get("miou", nan), "pixel_accuracy": s.pixel_accuracy,
                      "person_iou": s.per_class.get("person", {}).get("iou", float("nan")),
                      "person_iou_ci": s.intervals.get("iou person", nan)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--runs", nargs="*", default=[], metavar="RUN", help="trained run directories to score")
    parser.add_argument("--data", default=str(Path(os.environ.get("SQUEEZENET_DATA", "../shared/data")) / "coco128"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    options = {"num_classes": CLASSES, "image_size": SIZE}
    models = {"lraspp_squeezenet (v1.0 body)": create_model("lraspp_squeezenet", **options),
              "lraspp_squeezenet (v1.1 body)": create_model("lraspp_squeezenet", **options, body="v1.1"),
              "squeezeseg (v1.0 body)": create_model("squeezeseg", **options),
              "squeezeseg (v1.1 body)": create_model("squeezeseg", **options, body="v1.1"),
              ANCHOR: create_model("lraspp_mobilenet_v3", **options)}
    x = torch.randn(1, 3, SIZE, SIZE)
    rows = {}
    for name, model in models.items():
        model.eval()
        params = sum(p.numel() for p in model.parameters())
        rows[name] = {"params": params, "macs": macs(model, x), "fp32_bytes": 4 * params}
    with torch.inference_mode():
        medians = interleaved_medians({name: (lambda m=m: m(x)) for name, m in models.items()}, args.repeats)
    anchor = medians[ANCHOR]
    result = {"cpu": cpu_summary(), "threads": args.threads, "input": SIZE, "classes": CLASSES, "rows": rows,
              "ms": {k: 1000 * v for k, v in medians.items()}, "vs_torchvision": {k: v / anchor for k, v in medians.items()},
              "runs": {run: score_run(Path(run), args.data, args.resamples) for run in args.runs}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['cpu']}, {args.threads} threads, batch 1 at {SIZE}x{SIZE}, {CLASSES} classes, medians of {args.repeats}")
    print(f"{'network':40s} {'params':>11s} {'GMACs':>7s} {'fp32 MB':>8s} {'ms':>8s} {'x tv':>6s}")
    for name, r in rows.items():
        print(f"{name:40s} {r['params']:11,d} {r['macs'] / 1e9:7.2f} {r['fp32_bytes'] / 1e6:8.2f} "
              f"{1000 * medians[name]:8.1f} {medians[name] / anchor:6.2f}")
    if result["runs"]:
        print(f"\ntrained runs on {args.data} (95% bootstrap intervals over images, {args.resamples} resamples)")
        print(f"{'run':14s} {'model':20s} {'body':9s} {'file KB':>8s} {'train mIoU':>10s} {'val mIoU':>24s} "
              f"{'val pixel acc':>13s} {'val person IoU':>24s}")
        for run, r in result["runs"].items():
            t, v = r["train"], r["val"]
            print(f"{Path(run).name:14s} {r['model']:20s} {r['body']:9s} {r['file_bytes'] / 1e3:8.0f} {t['miou']:10.3f} "
                  f"{v['miou']:.3f} [{v['miou_ci'][0]:.3f}, {v['miou_ci'][1]:.3f}] {v['pixel_accuracy']:13.3f} "
                  f"{v['person_iou']:.3f} [{v['person_iou_ci'][0]:.3f}, {v['person_iou_ci'][1]:.3f}]")


if __name__ == "__main__":
    main()
