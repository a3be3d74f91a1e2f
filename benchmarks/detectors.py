"""Our detectors beside torchvision's ``ssdlite320_mobilenet_v3_large``: parameters, MACs, file size, batch-1 latency,
and (``--runs``) the mAP@.5 of trained runs of each on the same images.

All networks at a 320x320 input with 80 object classes (+ background), measured in one process with interleaved
medians (``OMP_WAIT_POLICY=PASSIVE`` set before torch loads). torchvision's network is our registered
``ssdlite_mobilenet_v3`` (its own builder, unwrapped: models/mobilenet_detector.py). Each is timed from the
preprocessed image to its raw outputs (backbone + head): the decoding and NMS after it are the same for all (our
``decode_detections``) and are timed in a separate row.

``--runs DIR...`` adds, for run directories of ``squeezenet train`` on one dataset (``--data``, default coco128 under
$SQUEEZENET_DATA), each run's model, best.safetensors size and COCO mAP@.5 on the training and validation split
with 95% bootstrap intervals: the issue's "trained the same way, same budget" comparison (README "Detect objects").

    python benchmarks/detectors.py [--threads 2] [--repeats 30] [--runs RUN...] [--data DIR] [--json]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from squeezenet import create_model, load_weights  # noqa: E402
from squeezenet.common.cpu import cpu_summary  # noqa: E402
from squeezenet.deploy.bench import interleaved_medians  # noqa: E402
from squeezenet.inference.detection import evaluate_detector  # noqa: E402
from squeezenet.models import decode_detections  # noqa: E402

SIZE, CLASSES = 320, 80
ANCHOR = "ssdlite_mobilenet_v3 (torchvision's)"


def macs(model: torch.nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def score_run(run: Path, data: str, resamples: int) -> dict:
    """A trained run's model, file size and mAP on both splits of ``data`` (the split training used)."""
    weights = run / "best.safetensors"
    model = load_weights(weights).eval()
    recipe = json.loads((run / "run.json").read_text()).get("recipe", {})
    out = {"model": recipe.get("model", model.meta.config.arch), "body": "ImageNet" if recipe.get("backbone_weights")
           else "random", "file_bytes": weights.stat().st_size}
    for split in ("train", "val"):
        scores = evaluate_detector(model, data, split=split, resamples=resamples)
        lo, hi = scores.intervals.get("map50", (float("nan"), float("nan")))
        person = scores.per_class.get("person", {}).get("ap50", float("nan"))
        out[split] = {"map50": scores.map50, "map": scores.map, "map50_lo": lo, "map50_hi": hi, "person_ap50": person,
                      "person_ap50_ci": scores.intervals.get("ap50 person", (float("nan"), float("nan")))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--runs", nargs="*", default=[], metavar="RUN", help="trained run directories to score")
    parser.add_argument("--data", default=str(Path(os.environ.get("SQUEEZENET_DATA", "../shared/data")) / "coco128"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"squeezedet (SqueezeNet v1.0 body)": create_model("squeezedet", num_classes=CLASSES, image_size=SIZE),
              "ssdlite_squeezenet (v1.0 body)": create_model("ssdlite_squeezenet", num_classes=CLASSES, image_size=SIZE),
              "ssdlite_squeezenet (v1.1 body)": create_model("ssdlite_squeezenet", num_classes=CLASSES, image_size=SIZE,
                                                             body="v1.1"),
              ANCHOR: create_model("ssdlite_mobilenet_v3", num_classes=CLASSES, image_size=SIZE)}
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
    anchor = medians[ANCHOR]
    result = {"cpu": cpu_summary(), "threads": args.threads, "input": SIZE, "classes": CLASSES, "rows": rows,
              "ms": {k: 1000 * v for k, v in medians.items()}, "vs_torchvision": {k: v / anchor for k, v in medians.items()},
              "runs": {run: score_run(Path(run), args.data, args.resamples) for run in args.runs}}
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
    if result["runs"]:
        print(f"\ntrained runs on {args.data} (mAP@.5 with 95% bootstrap intervals over images, {args.resamples} resamples)")
        print(f"{'run':28s} {'model':22s} {'body':12s} {'file KB':>8s} {'train mAP50':>24s} {'val mAP50':>24s} "
              f"{'val mAP':>8s} {'val person AP50':>24s}")
        for run, r in result["runs"].items():
            t, v = r["train"], r["val"]
            print(f"{Path(run).name:28s} {r['model']:22s} {r['body']:12s} {r['file_bytes'] / 1e3:8.0f} "
                  f"{t['map50']:.3f} [{t['map50_lo']:.3f}, {t['map50_hi']:.3f}] "
                  f"{v['map50']:.3f} [{v['map50_lo']:.3f}, {v['map50_hi']:.3f}] {v['map']:8.3f} "
                  f"{v['person_ap50']:.3f} [{v['person_ap50_ci'][0]:.3f}, {v['person_ap50_ci'][1]:.3f}]")


if __name__ == "__main__":
    main()
