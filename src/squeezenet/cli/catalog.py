"""Verbs that describe what there is: ``models``, ``weights``, ``info``, ``convert``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import WEIGHTS_HELP, add_json, add_set, verb

MODEL_FILES = (".net", ".pth", ".pt", ".safetensors", ".onnx", ".pte", ".tflite")


def _models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'squeezenet1_*'")
    p.add_argument("--options", action="store_true", help="also list each builder's options and defaults")
    add_json(p)


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a registered model name (see `squeezenet models`), a weights file or an .onnx file")
    p.add_argument("--input-size", type=int, default=None, metavar="H",
                   help="square input side in pixels (default: the model's native size, 224 or 32)")
    add_json(p, "print one JSON object: model, input_size, params, macs, size_bytes, layers")
    add_set(p, "a builder option, repeatable: e.g. --set batch_norm=true --set sr=0.25 (see `squeezenet models --options`)")


def _weights_arguments(p: argparse.ArgumentParser) -> None:
    add_json(p)


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="input " + WEIGHTS_HELP)
    p.add_argument("-o", "--output", required=True, help="output file (.sqz, .pth, .pt or .safetensors)")


@verb("models", _models_arguments)
def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models with their sizes.

    List the registered models: parameter count, native input size and a one-line description.
    """
    import torch

    from ..errors import SqueezeNetError
    from ..models import create_model, get_model_entry, list_models
    from ..report.listing import models_table
    from ..report.render import console_for_output

    rows = []
    for name in list_models(args.pattern):
        entry = get_model_entry(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append({"name": name, "params": params, "input_size": entry.input_size,
                     "description": entry.description, "options": entry.options()})
    if not rows:
        raise SqueezeNetError(f"no model matches {args.pattern!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        console_for_output().print(models_table(rows, options=args.options))
    return 0


@verb("info", _info_arguments)
def cmd_info(args: argparse.Namespace) -> int:
    """Per-layer report of a model or a file (the paper's Table 1).

    Print a per-layer table of a model: output shape, Fire dimensions (s1x1, e1x1, e3x3), parameters and
    multiply-accumulates, then totals and the fp32 size. Nothing is allocated: shapes and MACs are measured on
    PyTorch's meta device. Given a .sqz file: density, bits, centroids and bytes per layer, the compression
    ratio and the decoding time. Given another weights file (.net, .pth, .pt, .safetensors) or an exported
    .onnx: the table of the architecture it holds at its own crop size, then its preprocessing, classes and
    remaining (non-zero) weights.
    """
    from ..errors import SqueezeNetError
    from ..report import architecture_report, print_architecture

    if args.model.lower().endswith(".sqz"):
        from ..report.compression import compression_report, print_compression

        sqz = compression_report(args.model)
        print(json.dumps(sqz.to_dict(), indent=2)) if args.json else print_compression(sqz)
        return 0
    if Path(args.model).suffix.lower() in MODEL_FILES:
        if args.options:
            raise SqueezeNetError("--set changes a model name's builder options; a file carries its own architecture")
        from ..deploy import load_model
        from ..deploy.runtime import FILE_RUNTIMES
        from ..report.architecture import file_summary
        from ..report.render import file_line

        # the first runtime that reads the file: info needs its metadata, not the fastest runtime (auto would time them)
        model = load_model(args.model, runtime=FILE_RUNTIMES.get(Path(args.model).suffix.lower(), ("auto",))[0])
        report = architecture_report(model, args.input_size or model.meta.preprocessing.crop)  # type: ignore[arg-type]
        info = file_summary(model, args.model)
        if args.json:
            print(json.dumps({**report.to_dict(), "file": info}, indent=2))
        else:
            print_architecture(report)
            print(file_line(info))
        return 0
    report = architecture_report(args.model, args.input_size, **dict(args.options))
    print(json.dumps(report.to_dict(), indent=2)) if args.json else print_architecture(report)
    return 0


@verb("weights", _weights_arguments)
def cmd_weights(args: argparse.Namespace) -> int:
    """List the named published weights.

    List the named weight sets load_weights/--weights accept, their preprocessing and whether they are already
    in the torch hub cache.
    """
    from ..report.listing import weights_table
    from ..report.render import console_for_output
    from ..weights import PRETRAINED

    rows = [{"name": w.name, "preprocessing": w.preprocessing.name, "cached": w.cache_path().is_file(),
             "url": w.url, "description": w.description} for w in PRETRAINED.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        console_for_output().print(weights_table(rows))
    return 0


@verb("convert", _convert_arguments)
def cmd_convert(args: argparse.Namespace) -> int:
    """Convert weights between formats (.sqz, .net, .pth, .safetensors).

    Convert weights between formats, chosen by extension: .net (Deep Compression, read only), .pth/.pt
    (torchvision-style state_dict), .safetensors and .sqz (entropy-coded, weight-shared). The output carries the
    architecture and preprocessing, so it loads with no flags; tensors are copied bit for bit (.sqz too: it
    stores what it is given losslessly; `compress` is what makes weights small).
    """
    import logging

    from ..weights import convert_weights

    out = convert_weights(args.src, args.output)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    if out.suffix.lower() == ".sqz":
        from ..report.compression import compression_report

        raw = [r.layer for r in compression_report(out).rows if r.bits == 32 and len(r.shape) > 1]
        if raw:
            logging.getLogger("squeezenet.cli").warning(
                f"{len(raw)} weight tensors are not weight-shared and were stored raw ({', '.join(raw[:3])}...): "
                "`squeezenet compress` prunes and quantizes them")
    return 0
