"""Verbs of Deep Compression: ``compress`` and ``sensitivity``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from .args import add_json, add_labelled_data, add_set, add_weights, positive_int, verb

#: when each method applies, in the words of the flags that choose it
_WHEN = {"FineTune": "with --data", "Reconstruct": "with --calibration", "SideDataOnly": "with --max-bytes alone",
         "PostTraining": "without data"}


def _method_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every field of the compression methods (``compress/methods.py``) once: its flag and the field."""
    from ..compress import METHODS

    found: dict[str, tuple[str, dataclasses.Field]] = {}
    for cls in METHODS:
        for f in dataclasses.fields(cls):
            found.setdefault(f.name, (f.metadata.get("flag", "--" + f.name.replace("_", "-")), f))
    return found


def _defaults(name: str) -> str:
    """`` (default 1 with --data, 0 with --calibration)``: each method's own default, read from its dataclass."""
    from ..compress import METHODS

    values = {}
    for cls in METHODS:
        f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if f is not None and f.default is not dataclasses.MISSING and f.default is not None:
            values[cls.__name__] = f.default
    if not values:
        return ""
    if len(set(map(str, values.values()))) == 1:
        return f" (default {next(iter(values.values()))})"
    return " (default " + ", ".join(f"{v} {_WHEN[k]}" for k, v in values.items()) + ")"


def _compress_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p)
    p.add_argument("-o", "--output", required=True, help="output .sqz file")
    for name, (flag, f) in _method_fields().items():  # flags, help and defaults from the method dataclasses
        if flag == "--set":
            add_set(p, f.metadata["help"])
            continue
        options = {k: f.metadata[k] for k in ("metavar", "choices", "type") if k in f.metadata}
        p.add_argument(flag, dest=name, default=None, help=f.metadata["help"] + _defaults(name), **options)
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


def method_from_args(args: argparse.Namespace) -> Any:
    """The method the flags name: --data fine-tunes, --calibration reconstructs, --max-bytes alone spends the side
    data, none of them is post-training; a flag of another method is one line saying which it belongs to."""
    from ..compress import FineTune, PostTraining, Reconstruct, SideDataOnly
    from ..errors import SqueezeNetError

    fields = _method_fields()
    given = {name: getattr(args, name) for name in fields if name != "overrides" and getattr(args, name) is not None}
    if args.options:
        given["overrides"] = dict(args.options)
    cls = (FineTune if "data" in given else Reconstruct if "calibration" in given else
           SideDataOnly if "max_bytes" in given else PostTraining)
    own = {f.name for f in dataclasses.fields(cls)}
    stray = [fields[name][0] for name in given if name not in own]
    if stray:
        raise SqueezeNetError(f"{', '.join(stray)}: not for compression {_WHEN[cls.__name__]} ({cls.__name__}); "
                              f"see `squeezenet compress --help`")
    return cls(**given)


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
    from ..compress import compress_model
    from ..errors import SqueezeNetError
    from ..inference import compare
    from ..inference.detection import compare_detectors
    from ..inference.segmentation import compare_segmenters
    from ..report.compression import compression_report, compression_summary, print_compression_summary
    from ..weights import load_weights, save_weights

    out = Path(args.output)
    if out.suffix.lower() != ".sqz":
        raise SqueezeNetError(f"{out}: the output of compress is a .sqz file")
    method = method_from_args(args)
    model = load_weights(args.weights)
    first = is_first_process()  # under torchrun the other ranks only help fine-tune
    fp32 = 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.stem + "-runs")
    compressed, log = compress_model(model, method, work_dir=work, progress_bar=False if args.json else None,
                                     resume=args.resume)
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


def _densities(text: str) -> str:
    try:
        [float(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return text
