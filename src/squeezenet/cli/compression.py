"""Verbs of Deep Compression: ``compress`` and ``sensitivity``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .args import add_data_root, add_json, add_labelled_data, add_set, add_weights, nonnegative_int, positive_int, verb


def _compress_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p)
    p.add_argument("-o", "--output", required=True, help="output .sqz file")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--density", metavar="SPEC",
                        help="fraction of weights kept: 0.33, or per layer '0.3,conv1=1,fire9=0.5,conv10=0.2' "
                             "(paper names or module paths; the bare number is the default)")
    target.add_argument("--quality", metavar="SPEC",
                        help="Han et al.'s threshold: prune |w| <= quality x std of the layer (same syntax)")
    p.add_argument("--bits", default="6", metavar="SPEC",
                   help="codebook index bits: 6, or per layer '5,conv1=8,conv10=6' (default 6)")
    p.add_argument("--data", help="training data for fine-tuning, as `squeezenet train --data` takes it")
    add_data_root(p)
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=0,
                   help="epochs of fine-tuning while pruning (needs --data; default 0)")
    p.add_argument("--centroid-epochs", type=nonnegative_int, default=None,
                   help="epochs of centroid fine-tuning after weight sharing (default 1 with --finetune-epochs); with "
                        "--calibration and no --data: epochs of distillation of codebooks and biases on the calibration "
                        "images (default 0: measured no better than reconstruction alone, docs/compression.md)")
    p.add_argument("--distill", type=_share, default=0.0, metavar="W",
                   help="with --data: share W (0..1) of the fine-tuning loss taken from the input model's outputs "
                        "(KL, knowledge distillation), the rest from the labels (default 0)")
    p.add_argument("--schedule", choices=("gradual", "oneshot"), default="gradual",
                   help="with fine-tuning: prune along a cubic schedule, or all at once first (default gradual)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate while pruning (cosine; default: SGD at 0.02 for classifiers, a detector's "
                        "recipe optimizer, AdamW, at a tenth of its rate: 1e-4)")
    p.add_argument("--centroid-lr", type=float, default=1e-4,
                   help="learning rate of the centroid fine-tuning (Adam; default 1e-4)")
    p.add_argument("--budget", type=float, metavar="SECONDS", help="time limit per fine-tuning phase")
    p.add_argument("--init", choices=("linear", "optimal"),
                   help="k-means start: linear (Han et al.; default with fine-tuning) or optimal (least squares, "
                        "default without)")
    p.add_argument("--recipe", help="base recipe for fine-tuning (default: cifar10 for small inputs, else torchvision)")
    add_set(p, "override a fine-tuning recipe field, repeatable: --set batch_size=64 --set data.limit_train=5000")
    p.add_argument("--calibration", metavar="DIR",
                   help="a folder of unlabelled images (a few hundred): each layer's weights are then chosen for its "
                        "output on them (GPTQ-style reconstruction) instead of rounded to the nearest centroid")
    p.add_argument("--max-bytes", type=positive_int, metavar="N",
                   help="the .sqz must fit N bytes: with --calibration, a grid per layer chosen by measured sensitivity "
                        "per byte; without, the finest side data (codebooks, biases) that fits, which keeps every answer")
    p.add_argument("--eval", metavar="DIR",
                   help="labelled image folder: the compressed file against the input weights on it (top-1/top-5 of "
                        "both, top-1 agreement, KL, paired interval of the top-1 difference); detectors: a box folder "
                        "as `train --data` takes it, judged on its validation images (mAP@.5 and mAP of both, "
                        "bootstrap interval of the mAP@.5 difference); segmenters: likewise, mIoU)")
    p.add_argument("--work-dir", help="where fine-tuning runs go (default OUTPUT-runs/ beside the output)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed compression: the same command plus --resume picks up its work directory "
                        "(finished phases are skipped, the running one continues from its last epoch)")
    add_json(p, "print the report as JSON")


def _sensitivity_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p)
    add_labelled_data(p)
    p.add_argument("-o", "--output", required=True, help="heat map file (.png, .svg or .pdf)")
    p.add_argument("--densities", type=_densities, default="0.8,0.6,0.4,0.3,0.2,0.1,0.05", help="comma-separated densities")
    p.add_argument("--limit", type=positive_int, help="use a fixed random subset of N images")
    add_json(p, "print the results as JSON")


@verb("compress", _compress_arguments)
def cmd_compress(args: argparse.Namespace) -> int:
    """Deep Compression: prune, share weights, entropy-code into .sqz.

    Deep Compression (Han et al. 2016) of any weights: magnitude pruning (--density or --quality, per layer if
    you like), per-layer k-means weight sharing (--bits), then Huffman/ANS coding into a self-describing .sqz
    file that every command reads. With --data, pruning happens gradually during --finetune-epochs of
    fine-tuning and the centroids are fine-tuned afterwards (--centroid-epochs; fine-tuning needs the [train]
    extra), learning from the labels and, with --distill W, from the input model's outputs; without it this is
    post-training compression. --calibration DIR (unlabelled images) chooses each
    layer's weights for its output on them instead of rounding to the nearest centroid; --max-bytes N makes the
    file fit N bytes (a grid per layer chosen by measured sensitivity with --calibration; without it, only the
    precision of codebooks and biases is spent, which keeps every answer). Prints the per-layer table (density,
    bits, bytes) and, for a budget, what it chose per layer and why.
    """
    from ..common.dist import is_first_process
    from ..compress import CompressionSpec, compress_model
    from ..errors import SqueezeNetError
    from ..inference import compare
    from ..inference.detection import compare_detectors
    from ..inference.segmentation import compare_segmenters
    from ..report.compression import compression_report, compression_summary, print_compression_summary
    from ..weights import load_weights, save_weights

    out = Path(args.output)
    if out.suffix.lower() != ".sqz":
        raise SqueezeNetError(f"{out}: the output of compress is a .sqz file")
    spec = CompressionSpec(density=args.density, quality=args.quality, bits=args.bits, schedule=args.schedule,
                           finetune_epochs=args.finetune_epochs, centroid_epochs=args.centroid_epochs, lr=args.lr,
                           budget_s=args.budget, init=args.init, recipe=args.recipe, overrides=dict(args.options),
                           centroid_lr=args.centroid_lr, max_bytes=args.max_bytes, distill=args.distill)
    model = load_weights(args.weights)
    first = is_first_process()  # under torchrun the other ranks only help fine-tune
    fp32 = 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.stem + "-runs")
    compressed, log = compress_model(model, spec, data=args.data, data_root=args.data_root, work_dir=work,
                                     progress_bar=False if args.json else None, resume=args.resume,
                                     calibration=args.calibration)
    if not first:
        return 0
    save_weights(compressed, out, source=f"squeezenet compress {Path(str(args.weights)).name}", max_bytes=args.max_bytes)
    report = compression_report(out)
    paired: Any = None  # the input is reloaded: compression changed `model` in place
    if args.eval and compressed.meta.task == "detect":
        paired = compare_detectors(load_weights(out), load_weights(args.weights), args.eval, split="val")
    elif args.eval and compressed.meta.task == "segment":
        paired = compare_segmenters(load_weights(out), load_weights(args.weights), args.eval, split="val")
    elif args.eval:
        paired = compare(load_weights(out), load_weights(args.weights), args.eval, progress=not args.json)
    summary = compression_summary(report, fp32, paired, log.phases)
    summary.update(method=log.method, budget=log.budget)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_compression_summary(report, summary, args.eval)
    return 0


@verb("sensitivity", _sensitivity_arguments, extra="train")
def cmd_sensitivity(args: argparse.Namespace) -> int:
    """Per-layer pruning sensitivity: table and plot.

    Prune one layer at a time to each density (no fine-tuning), measure top-1 on an image folder, and print the
    table and write a heat map of the top-1 lost per layer and density (Han et al. 2015, Fig. 6, as a grid: 26
    curves cannot be told apart). Guides per-layer --density targets.
    """
    from ..compress.sensitivity import check_plot_path, plot_sensitivity, sensitivity
    from ..inference.preloaded import load_images
    from ..report.render import console_for_output
    from ..report.tables import sensitivity_table
    from ..weights import load_weights

    check_plot_path(args.output)  # before minutes of measuring, not after
    densities = [float(d) for d in args.densities.split(",") if d.strip()]
    model = load_weights(args.weights)
    images, labels = load_images(model, args.data, args.limit)
    result = sensitivity(model, images, labels, densities, progress=not args.json)
    plot_sensitivity(result, args.output, title=f"pruning sensitivity: {Path(str(args.weights)).name}")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    console = console_for_output()
    console.print(sensitivity_table(result))
    console.print(f"plot: {args.output}")
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _densities(text: str) -> str:
    try:
        [float(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return text
