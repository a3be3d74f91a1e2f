"""Verbs that run a model: ``predict`` and ``eval``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from .args import add_device, add_json, add_weights, nonnegative_int, positive_int, verb

logger = logging.getLogger("squeezenet.cli")


def load_for_inference(args: argparse.Namespace) -> Any:
    """The model for ``--weights`` on ``--device`` / ``--provider`` (onnxruntime only for .onnx files)."""
    from ..deploy import load_model

    return load_model(args.weights, device=args.device, providers=args.provider, runtime=args.runtime)


def _compare(args: argparse.Namespace, model: Any) -> int:
    from ..deploy import load_model
    from ..inference import compare
    from ..report.render import paired_lines

    # the reference keeps its own precision (runtime auto never picks bf16), whatever --runtime runs the candidate
    reference = load_model(args.reference, device=args.device, providers=args.provider)
    result = compare(model, reference, args.data, batch_size=args.batch_size, progress=not args.json and sys.stderr.isatty())
    _report_skipped(result.skipped_files, args.strict)
    print(json.dumps(result.to_dict()) if args.json else "\n".join(paired_lines(result)))
    return 0


def _report_skipped(skipped: list[str], strict: bool) -> None:
    """Each unreadable image as a warning; with ``--strict`` any of them fails the command (pipelines that must
    not report a figure measured on fewer images than they hold)."""
    from ..errors import SqueezeNetError

    if strict and skipped:  # one line: the count and the first file
        raise SqueezeNetError(f"--strict: {len(skipped)} image(s) could not be read (first: {skipped[0]}); nothing reported")
    for message in skipped:
        logger.warning(f"skipped {message}")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, GIF, BMP, TIFF) or folders of them")
    add_weights(p, onnx=True)
    p.add_argument("-k", "--topk", type=positive_int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--threshold", type=float, default=None, metavar="SCORE",
                   help="detectors: list boxes scoring at least this (default 0.3)")
    p.add_argument("-o", "--output", metavar="OUT_DIR",
                   help="detectors: write each image with its boxes drawn into OUT_DIR (same file names)")
    add_device(p)
    add_json(p, "print JSON instead of tables")


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p, onnx=True)
    p.add_argument("-d", "--data", required=True, help="image folder")
    p.add_argument("-b", "--batch-size", type=positive_int, default=50, help="images per batch (default 50)")
    p.add_argument("-j", "--workers", type=nonnegative_int, default=0,
                   help="data-loading worker processes (default 0: load in the main process)")
    p.add_argument("--reference", metavar="WEIGHTS",
                   help="compare with these weights on the same images (the uncompressed or fp32 model): both "
                        "accuracies, top-1 agreement, mean KL(reference || candidate), the paired 95%% interval of the "
                        "top-1 difference and McNemar's exact p")
    p.add_argument("--split", choices=("all", "train", "val"), default="all",
                   help="detectors: all labelled images of a YOLO folder (default), or the training or validation part "
                        "as `squeezenet train` splits it (every fifth image validates; or its train/ and val/)")
    p.add_argument("--interval", action="store_true",
                   help="detectors: 95%% bootstrap intervals (the images resampled with replacement, 1,000 times) of "
                        "mAP, mAP@.5 and each class's AP@.5")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 1, nothing measured) if any image cannot be read; by default unreadable images "
                        "are skipped, counted and named in warnings")
    add_device(p)
    add_json(p, 'print {"top1", "top5", "n", "skipped"} (detectors: {"map", "map50", "per_class", ...}; with '
                '--reference: and the paired statistics) as JSON')


@verb("predict", _predict_arguments)
def cmd_predict(args: argparse.Namespace) -> int:
    """Top-k classes of images; boxes for detectors (-o: drawn on the images).

    Classify images with published or trained weights, using the preprocessing that the weights carry (Caffe
    BGR/mean or torchvision RGB/mean/std). Images are read one batch at a time; a folder stands for every image
    below it. Unreadable images are reported and skipped (exit status 1).
    """
    from ..errors import SqueezeNetError
    from ..inference import predict
    from ..report.render import console_for_output
    from ..report.tables import predictions_table

    model = load_for_inference(args)
    if model.meta.task == "detect":
        return _predict_boxes(args, model)
    if model.meta.task == "segment":
        return _predict_masks(args, model)
    if args.threshold is not None or args.output:
        raise SqueezeNetError("--threshold and -o are for detectors; this model classifies")
    results = predict(model, args.images, topk=args.topk, progress=not args.json and sys.stderr.isatty())
    failed = [r for r in results if r.error]
    for r in failed:
        logger.warning(r.error or "")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif len(failed) < len(results):
        console_for_output().print(predictions_table(results))
    if len(failed) == len(results) and not args.json:  # with --json the per-image errors are the document
        raise SqueezeNetError(f"none of the {len(results)} images could be read")
    return 1 if failed else 0


@verb("eval", _eval_arguments)
def cmd_eval(args: argparse.Namespace) -> int:
    """Top-1/top-5 accuracy on an image folder; COCO mAP for detectors.

    Measure top-1/top-5 accuracy on an ImageFolder tree (one folder per class: ImageNet wnids or the model's
    class names) or a flat folder of <wnid>_<anything>.JPEG files. Unreadable images are skipped and counted.
    A detector is measured on a YOLO folder (images/, labels/, classes.txt): COCO mAP@[.5:.95] and mAP@.5 overall
    and per class (pycocotools), JSON keys map and map50.
    """
    from ..inference import evaluate

    model = load_for_inference(args)
    if model.meta.task in ("detect", "segment"):
        return _eval_dense(args, model)
    if args.reference:
        return _compare(args, model)
    result = evaluate(model, args.data, batch_size=args.batch_size, workers=args.workers,
                      progress=not args.json and sys.stderr.isatty())
    _report_skipped(result.skipped_files, args.strict)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"top-1 {result.top1:.4f}   top-5 {result.top5:.4f}   images {result.n:,}   skipped {result.skipped:,}")
    return 0


def _predict_boxes(args: argparse.Namespace, model: Any) -> int:
    """``predict`` for a detector: boxes, labels and scores per image; with ``-o``, the images with boxes drawn."""
    from pathlib import Path

    from ..data.images import expand_image_paths
    from ..errors import SqueezeNetError
    from ..inference.detection import DEFAULT_THRESHOLD, detect
    from ..report.drawing import write_annotated

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        raise SqueezeNetError(f"--threshold must be in 0..1, got {args.threshold}")
    paths = expand_image_paths(args.images)
    results = detect(model, paths, threshold=threshold)
    failed = [r for r in results if r.error]
    for r in failed:
        logger.warning(r.error or "")
    if args.output:
        out = Path(args.output)
        for r in results:
            if not r.error:
                write_annotated(r.path, out, r.boxes, r.names, r.scores, r.labels)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                continue
            found = ", ".join(f"{name} {float(s):.2f} [{', '.join(f'{float(v):.0f}' for v in b)}]"
                              for name, s, b in zip(r.names, r.scores, r.boxes)) or "nothing"
            print(f"{r.path}: {len(r.names)} object(s) at score >= {threshold:g}: {found}")
        if args.output:
            print(f"annotated images in {args.output}/")
    if len(failed) == len(results) and not args.json:
        raise SqueezeNetError(f"none of the {len(results)} images could be read")
    return 1 if failed else 0


def _eval_dense(args: argparse.Namespace, model: Any) -> int:
    """``eval`` for a detector (COCO mAP@[.5:.95] and mAP@.5) or a segmenter (mIoU and pixel accuracy), overall
    and per class; with ``--reference``, both models on the same images and the bootstrap interval of the
    difference of the headline figure (mAP@.5, mIoU)."""
    from ..deploy import load_model
    from ..inference.detection import BOOTSTRAP_RESAMPLES, compare_detectors, evaluate_detector
    from ..inference.segmentation import compare_segmenters, evaluate_segmenter
    from ..report.tables import detection_table, segmentation_table

    detect = model.meta.task == "detect"
    if args.reference:
        reference = load_model(args.reference, device=args.device, providers=args.provider)
        paired: Any = (compare_detectors if detect else compare_segmenters)(model, reference, args.data,
                                                                             split=args.split)
        if args.json:
            print(json.dumps(paired.to_dict()))
            return 0
        d = paired.to_dict()
        head, other = (("map50", "mAP@.5"), ("map", "mAP")) if detect else (("miou", "mIoU"),
                                                                              ("pixel_accuracy", "pixel accuracy"))
        print(f"{head[1]} {d[head[0]]:.4f} vs reference {d['reference_' + head[0]]:.4f}: difference "
              f"{d[head[0] + '_diff']:+.4f}, 95% interval [{d[head[0] + '_diff_ci95'][0]:+.4f}, "
              f"{d[head[0] + '_diff_ci95'][1]:+.4f}] ({d['resamples']} bootstrap resamples of {d['images']} images)\n"
              f"{other[1]} {d[other[0]]:.4f} vs reference {d['reference_' + other[0]]:.4f}")
        return 0
    resamples = BOOTSTRAP_RESAMPLES if args.interval else 0
    scores: Any = (evaluate_detector(model, args.data, split=args.split, batch_size=min(args.batch_size, 16),
                                     resamples=resamples) if detect else
                   evaluate_segmenter(model, args.data, split=args.split, batch_size=min(args.batch_size, 8),
                                      resamples=resamples))
    _report_skipped(scores.skipped, args.strict)
    if args.json:
        print(json.dumps(scores.to_dict()))
        return 0
    from ..report.render import console_for_output

    console_for_output().print(detection_table(scores) if detect else segmentation_table(scores))
    ci = scores.intervals
    figures = (f"mAP@[.5:.95] {scores.map:.4f}{_band(ci, 'map')}   mAP@.5 {scores.map50:.4f}{_band(ci, 'map50')}"
               f"   images {scores.images:,}   objects {scores.objects:,}" if detect else
               f"mIoU {scores.miou:.4f}{_band(ci, 'miou')}   pixel accuracy {scores.pixel_accuracy:.4f}"
               f"{_band(ci, 'pixel_accuracy')}   images {scores.images:,}")
    print(f"{figures}   skipped {len(scores.skipped):,}" + ("   (95% bootstrap intervals over images)" if ci else ""))
    return 0


def _predict_masks(args: argparse.Namespace, model: Any) -> int:
    """``predict`` for a segmenter: the classes each image shows and their share of its pixels; with ``-o``, the
    image with the mask tinted over it and the mask itself (masks/<name>.png, palette indices)."""
    from pathlib import Path

    from ..data.images import expand_image_paths, load_rgb_image
    from ..errors import SqueezeNetError
    from ..inference.segmentation import segment_images
    from ..report.drawing import write_mask

    if args.threshold is not None:
        raise SqueezeNetError("--threshold is for detectors; a segmenter labels every pixel")
    paths = expand_image_paths(args.images)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in paths:
        try:
            image = load_rgb_image(path)
        except ValueError as exc:
            logger.warning(str(exc))
            results.append({"path": str(path), "error": str(exc)})
            failed += 1
            continue
        mask = segment_images(model, [image])[0]
        counts = mask.flatten().bincount(minlength=len(model.meta.classes))
        shares = {model.meta.classes[c]: float(n) / mask.numel() for c, n in enumerate(counts.tolist()) if n}
        results.append({"path": str(path), "classes": dict(sorted(shares.items(), key=lambda kv: -kv[1]))})
        if args.output:
            write_mask(path, Path(args.output), mask)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" not in r:
                shown = ", ".join(f"{name} {share:.1%}" for name, share in r["classes"].items())
                print(f"{r['path']}: {shown}")
        if args.output:
            print(f"overlays in {args.output}/, masks in {args.output}/masks/")
    if failed == len(results) and not args.json:
        raise SqueezeNetError(f"none of the {len(results)} images could be read")
    return 1 if failed else 0


def _band(intervals: dict[str, tuple[float, float]], key: str) -> str:
    """`` [low, high]`` of a bootstrap interval, or nothing when none was measured."""
    return f" [{intervals[key][0]:.4f}, {intervals[key][1]:.4f}]" if key in intervals else ""
