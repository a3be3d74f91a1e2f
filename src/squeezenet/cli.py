"""The ``squeezenet`` command: thin glue over the Python API.

Each subcommand is one function ``cmd_<name>(args) -> int``; heavy imports happen inside them so
that ``squeezenet --help`` answers at once. User errors (``ValueError``, ``OSError``) are printed as
one line on stderr with a non-zero exit; set ``SQUEEZENET_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROG = "squeezenet"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("squeezenet")
    except PackageNotFoundError:
        return "unknown"


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, true/false), else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.replace("-", "_"), value


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="options", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
        help="a builder option, repeatable: e.g. --set batch_norm=true --set sr=0.25 "
             "(see `squeezenet models --options`)",
    )


# --- subcommands ----------------------------------------------------------------------------------

def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .models import create_model, get_model_entry, list_models
    from .report.render import console_for_output

    rows = []
    for name in list_models(args.pattern):
        entry = get_model_entry(name)
        with torch.device("meta"):
            params = sum(p.numel() for p in create_model(name).parameters())
        rows.append({"name": name, "params": params, "input_size": entry.input_size,
                     "description": entry.description, "options": entry.options()})
    if not rows:
        raise ValueError(f"no model matches {args.pattern!r}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (("model", "left"), ("params", "right"), ("input", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["name"], f"{r['params']:,}", str(r["input_size"]), r["description"])
        if args.options:
            opts = ", ".join(f"{k}={v!r}" for k, v in r["options"].items())
            table.add_row("", "", "", f"[dim]options: {opts}[/dim]")
    console_for_output().print(table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .report import architecture_report, print_architecture

    if args.model.lower().endswith(".sqz"):
        from .report.compression import compression_report, print_compression

        sqz = compression_report(args.model)
        if args.json:
            print(json.dumps(sqz.to_dict(), indent=2))
        else:
            print_compression(sqz)
        return 0
    if Path(args.model).suffix.lower() in (".net", ".pth", ".pt", ".safetensors", ".onnx"):
        if args.options:
            raise ValueError("--set changes a model name's builder options; a file carries its own architecture")
        from .report.render import human_bytes

        report, file_info = _file_architecture(args.model, args.input_size)
        if args.json:
            print(json.dumps({**report.to_dict(), "file": file_info}, indent=2))
        else:
            print_architecture(report)
            extra = (f"precision {file_info['precision']}" if "precision" in file_info else
                     f"non-zero weights {file_info['nonzero_weights']:,} of {file_info['weights']:,} "
                     f"({file_info['nonzero_weights'] / max(file_info['weights'], 1):.1%})")
            print(f"file {file_info['file']} ({human_bytes(file_info['bytes'])})   preprocessing "
                  f"{file_info['preprocessing']}, {file_info['crop']} crop   {file_info['classes']} classes   {extra}")
        return 0
    report = architecture_report(args.model, args.input_size, **dict(args.options))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_architecture(report)
    return 0


def _file_architecture(path: str, input_size: int | None) -> tuple[Any, dict[str, Any]]:
    """The architecture report of the model a weights or ONNX file holds, at the file's own crop size."""
    from .deploy import load_model
    from .models import model_from_config
    from .report import architecture_report

    model = load_model(path)
    config = model.config if isinstance(model.config, dict) else model.config.to_dict()
    report = architecture_report(model_from_config(config), input_size or model.preprocessing.crop)
    info: dict[str, Any] = {"file": path, "bytes": Path(path).stat().st_size,
                            "preprocessing": model.preprocessing.name, "crop": model.preprocessing.crop,
                            "classes": len(model.class_names or []) or model.num_classes}
    if hasattr(model, "precision"):  # onnxruntime
        info["precision"] = model.precision
    else:  # pruned files: how many weights are left
        import torch

        weights = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
        info["weights"] = sum(p.numel() for p in weights)
        info["nonzero_weights"] = sum(int(torch.count_nonzero(p)) for p in weights)
    return report, info


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def cmd_weights(args: argparse.Namespace) -> int:
    from .weights import PRETRAINED

    rows = [{"name": w.name, "preprocessing": w.preprocessing.name, "cached": w.cache_path().is_file(),
             "url": w.url, "description": w.description} for w in PRETRAINED.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich import box
    from rich.table import Table

    from .report.render import console_for_output

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("weights", "preprocessing", "cached", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["preprocessing"], "yes" if r["cached"] else "no", r["description"])
    console_for_output().print(table)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .weights import convert_weights

    out = convert_weights(args.src, args.output)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    if out.suffix.lower() == ".sqz":
        from .report.compression import compression_report

        raw = [r.layer for r in compression_report(out).rows if r.bits == 32 and len(r.shape) > 1]
        if raw:
            _warn(f"{len(raw)} weight tensors are not weight-shared and were stored raw ({', '.join(raw[:3])}...): "
                  "`squeezenet compress` prunes and quantizes them")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from .compress import CompressionSpec, compress_model
    from .inference import evaluate
    from .report.compression import ALEXNET_BYTES, compression_report, print_compression
    from .weights import load_weights, save_weights

    out = Path(args.output)
    if out.suffix.lower() != ".sqz":
        raise ValueError(f"{out}: the output of compress is a .sqz file")
    spec = CompressionSpec(density=args.density, quality=args.quality, bits=args.bits, schedule=args.schedule,
                           finetune_epochs=args.finetune_epochs, centroid_epochs=args.centroid_epochs, lr=args.lr,
                           budget_s=args.budget, init=args.init, recipe=args.recipe, overrides=dict(args.options),
                           centroid_lr=args.centroid_lr)
    model = load_weights(args.weights)
    first_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun the other ranks only help fine-tune
    before = evaluate(model, args.eval, progress=not args.json) if args.eval and first_process else None
    fp32 = 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.stem + "-runs")
    compressed, log = compress_model(model, spec, data=args.data, data_root=args.data_root, work_dir=work,
                                     quiet=args.json or not first_process, resume=args.resume,
                                     log=None if first_process else (lambda _: None))
    if not first_process:
        return 0
    save_weights(compressed, out, source=f"squeezenet compress {Path(str(args.weights)).name}")
    report = compression_report(out)
    after = evaluate(load_weights(out), args.eval, progress=not args.json) if args.eval else None
    summary = {**report.to_dict(), "input_fp32_bytes": fp32, "ratio_to_input": fp32 / report.file_bytes,
               "ratio_to_alexnet": ALEXNET_BYTES / report.file_bytes,
               "before": before.to_dict() if before else None, "after": after.to_dict() if after else None,
               "phases": log.phases}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print_compression(report)
    print(f"input weights {fp32:,} bytes -> {report.file_bytes:,} bytes: {fp32 / report.file_bytes:.1f}x smaller")
    if before and after:
        print(f"top-1 {before.top1:.4f} -> {after.top1:.4f} ({100 * (after.top1 - before.top1):+.2f} pt)   "
              f"top-5 {before.top5:.4f} -> {after.top5:.4f}   on {after.n:,} images of {args.eval}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy import export_onnx
    from .inference.preloaded import load_images
    from .weights import load_weights

    if args.format != "onnx":
        raise ValueError(f"unknown export format {args.format!r}; supported: onnx")
    if args.int8 and not args.calibration:
        raise ValueError("--int8 needs --calibration DIR (images the int8 ranges are measured on)")
    model = load_weights(args.weights)
    check_dir = args.check or args.calibration
    if check_dir:
        images = load_images(model, check_dir, args.check_images)[0]
    else:
        crop = model.preprocessing.crop
        images = torch_randn(args.check_images, crop)
        _warn("no --check DIR: the export is checked on random inputs, not real images")
    calibration = load_images(model, args.calibration, args.calibration_images)[0] if args.int8 else None
    check = export_onnx(model, args.output, check_images=images, opset=args.opset, int8=args.int8,
                        calibration=calibration, keep_first_last_fp32=args.keep_fp32_ends, tolerance=args.tolerance)
    size = Path(args.output).stat().st_size
    if args.json:
        print(json.dumps({"output": args.output, "bytes": size, **check.to_dict()}))
    else:
        print(f"wrote {args.output} ({size:,} bytes, {'int8' if args.int8 else 'fp32'}, opset {args.opset}); "
              f"checked on {check.images} images: max |logit diff| {check.max_abs_diff:.3g}, "
              f"same top-1 on {100 * check.top1_agreement:.1f}%")
    return 0


def torch_randn(n: int, size: int):
    import torch

    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def cmd_bench(args: argparse.Namespace) -> int:
    from .deploy.bench import bench

    work = Path(args.work_dir or "bench-onnx")
    rows = bench(args.weights, args.data, work, calibration=args.calibration, threads=args.threads,
                 repeats=args.repeats, limit=args.limit, alexnet=not args.no_alexnet,
                 log=lambda s: None if args.json else _note(s))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    from rich import box
    from rich.table import Table

    from .report.render import console_for_output, human_bytes

    base = rows[0].latency_ms
    table = Table(title=f"{Path(str(args.weights)).name} on {args.data}: {args.threads} threads, medians",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("format", "file", "size", "top-1", "top-5", "batch-1 ms", "speed-up", "batch-32 img/s"):
        table.add_column(col, justify="left" if col in ("format", "file") else "right")
    for r in rows:
        acc = (f"{r.top1:.4f}", f"{r.top5:.4f}") if r.top1 is not None else ("-", "-")
        table.add_row(r.format, r.file, human_bytes(r.size_bytes), *acc, f"{r.latency_ms:.2f}", f"{base / r.latency_ms:.2f}x",
                      f"{r.throughput:,.0f}")
    console = console_for_output()
    console.print(table)
    console.print(f"ONNX files in {work}/")
    return 0


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from .compress.sensitivity import check_plot_path, plot_sensitivity, sensitivity
    from .inference.preloaded import load_images
    from .weights import load_weights

    check_plot_path(args.output)  # before minutes of measuring, not after
    densities = [float(d) for d in args.densities.split(",") if d.strip()]
    model = load_weights(args.weights)
    images, labels = load_images(model, args.data, args.limit)
    result = sensitivity(model, images, labels, densities, progress=not args.json)
    plot_sensitivity(result, args.output, title=f"pruning sensitivity: {Path(str(args.weights)).name}")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    from rich import box
    from rich.table import Table

    from .report.render import console_for_output

    table = Table(title=f"top-1 with one layer pruned ({result.images} images, unpruned {result.baseline:.4f})",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer")
    table.add_column("params", justify="right")
    for d in densities:
        table.add_column(f"{d:g}", justify="right")
    for name, scores in result.top1.items():
        table.add_row(name, f"{result.params[name]:,}", *[f"{s:.3f}" for s in scores])
    console = console_for_output()
    console.print(table)
    console.print(f"plot: {args.output}")
    return 0


def _load_any(weights: str):
    """PyTorch for weights files, onnxruntime for .onnx (imported only then)."""
    if weights.lower().endswith(".onnx"):
        from .deploy.runtime import OnnxModel

        return OnnxModel(weights)
    from .weights import load_weights

    return load_weights(weights)


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict

    model = _load_any(args.weights)
    results = predict(model, args.images, topk=args.topk, progress=not args.json and sys.stderr.isatty())
    failed = [r for r in results if r.error]
    for r in failed:
        _warn(r.error or "")
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif len(failed) < len(results):
        from rich import box
        from rich.table import Table

        from .report.render import console_for_output

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)  # one table, a section per image
        for column, justify in (("image", "left"), ("#", "right"), ("class", "left"), ("index", "right"),
                                ("probability", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for r in (r for r in results if not r.error):
            for rank, (index, name, prob) in enumerate(r.top, 1):
                table.add_row(r.image if rank == 1 else "", str(rank), name, str(index), f"{prob:.4f}",
                              end_section=rank == len(r.top))
        console_for_output().print(table)
    if len(failed) == len(results):
        raise ValueError(f"none of the {len(results)} images could be read")
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .inference import evaluate

    model = _load_any(args.weights)
    result = evaluate(model, args.data, batch_size=args.batch_size, workers=args.workers,
                      progress=not args.json and sys.stderr.isatty())
    for message in result.skipped_files:
        _warn(f"skipped {message}")
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"top-1 {result.top1:.4f}   top-5 {result.top5:.4f}   images {result.n:,}   skipped {result.skipped:,}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import load_recipe, load_run, train

    overrides: dict[str, Any] = dict(args.options)
    for key, value in (("model", args.model), ("epochs", args.epochs), ("batch_size", args.batch_size),
                       ("optimizer.lr", args.lr)):
        if value is not None:
            overrides[key] = value
    if args.resume:
        run = load_run(args.resume)
        from .train.recipe import Recipe, apply_overrides

        recipe = Recipe.from_dict(apply_overrides(run["recipe"], overrides), f"{args.resume}/run.json").validate()
        data, run_dir, data_root = run["data"], args.resume, args.data_root or run.get("data_root") or None
    else:
        if not args.output or not args.data:
            raise ValueError("train needs --data and -o RUN_DIR (or --resume RUN_DIR)")
        recipe, data, run_dir, data_root = load_recipe(args.recipe, overrides), args.data, args.output, args.data_root
    metrics = train(recipe, data, run_dir, data_root=data_root, resume=bool(args.resume), accelerator=args.accelerator,
                    devices=args.devices, compile=args.compile, progress_bar=False if args.no_progress else None).metrics
    if metrics.get("world_size", 1) == 1 or os.environ.get("RANK", "0") == "0":
        print(json.dumps(metrics, indent=2) if args.json else
              f"top-1 {metrics['top1']:.4f}   top-5 {metrics['top5']:.4f}   epochs {metrics['epochs']}   "
              f"{metrics['fit_time_s']:.0f} s   weights {run_dir}/best.safetensors")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .train import list_recipes, load_recipe

    for name in list_recipes():
        print(f"{name:12s} {load_recipe(name).description}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import print_demo, run_demo

    if args.resume and (args.output or args.epochs):
        raise ValueError("demo --resume RUN_DIR continues that run as it was started: drop -o and --epochs")
    run_dir = args.resume or args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    print_demo(run_demo(run_dir, epochs=args.epochs, data_root=args.data_root, resume=bool(args.resume)))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


# --- parser ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SqueezeNet toolkit: define, load, train, compress and deploy SqueezeNet "
                    "(Iandola et al. 2016) in PyTorch.",
        epilog="Run `squeezenet COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        p.set_defaults(func=func)
        return p

    p = add("models", cmd_models, "list the registered models with their sizes",
            "List the registered models: parameter count, native input size and a one-line description.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'squeezenet1_*'")
    p.add_argument("--options", action="store_true", help="also list each builder's options and defaults")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("info", cmd_info, "per-layer report of a model or a file (the paper's Table 1)",
            "Print a per-layer table of a model: output shape, Fire dimensions (s1x1, e1x1, e3x3), "
            "parameters and multiply-accumulates, then totals and the fp32 size. Nothing is allocated: "
            "shapes and MACs are measured on PyTorch's meta device. Given a .sqz file: density, bits, "
            "centroids and bytes per layer, the compression ratio and the decoding time. Given another weights "
            "file (.net, .pth, .pt, .safetensors) or an exported .onnx: the table of the architecture it holds at "
            "its own crop size, then its preprocessing, classes and remaining (non-zero) weights.")
    p.add_argument("model", help="a registered model name (see `squeezenet models`), a weights file or an .onnx file")
    p.add_argument("--input-size", type=int, default=None, metavar="H",
                   help="square input side in pixels (default: the model's native size, 224 or 32)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: model, input_size, params, macs, size_bytes, layers")
    _add_model_options(p)

    weights_help = ("weights: a file (.sqz, .net, .pth, .pt, .safetensors) or a named set "
                    "(see `squeezenet weights`, e.g. squeezenet1_1.tv_in1k)")
    p = add("weights", cmd_weights, "list the named published weights",
            "List the named weight sets load_weights/--weights accept, their preprocessing and whether "
            "they are already in the torch hub cache.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = add("convert", cmd_convert, "convert weights between formats (.sqz, .net, .pth, .safetensors)",
            "Convert weights between formats, chosen by extension: .net (Deep Compression, read only), "
            ".pth/.pt (torchvision-style state_dict), .safetensors and .sqz (entropy-coded, weight-shared). The "
            "output carries the architecture and preprocessing, so it loads with no flags; tensors are copied "
            "bit for bit (.sqz too: it stores what it is given losslessly; `compress` is what makes weights small).")
    p.add_argument("src", help="input " + weights_help)
    p.add_argument("-o", "--output", required=True, help="output file (.sqz, .pth, .pt or .safetensors)")

    p = add("predict", cmd_predict, "top-k classes of images",
            "Classify images with published or trained weights, using the preprocessing that the weights "
            "carry (Caffe BGR/mean or torchvision RGB/mean/std). Images are read one batch at a time; a "
            "folder stands for every image below it. Unreadable images are reported and skipped "
            "(exit status 1).")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, GIF, BMP, TIFF) or folders of them")
    p.add_argument("-w", "--weights", required=True, help=weights_help + "; or an .onnx file from `squeezenet export`")
    p.add_argument("-k", "--topk", type=_positive_int, default=5, help="how many classes to list (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = add("eval", cmd_eval, "top-1/top-5 accuracy on an image folder",
            "Measure top-1/top-5 accuracy on an ImageFolder tree (one folder per class: ImageNet wnids or "
            "the model's class names) or a flat folder of <wnid>_<anything>.JPEG files. Unreadable images "
            "are skipped and counted.")
    p.add_argument("-w", "--weights", required=True, help=weights_help + "; or an .onnx file from `squeezenet export`")
    p.add_argument("-d", "--data", required=True, help="image folder")
    p.add_argument("-b", "--batch-size", type=_positive_int, default=50, help="images per batch (default 50)")
    p.add_argument("-j", "--workers", type=_nonnegative_int, default=0,
                   help="data-loading worker processes (default 0: load in the main process)")
    p.add_argument("--json", action="store_true", help='print {"top1", "top5", "n", "skipped"} as JSON')

    p = add("train", cmd_train, "train a model (CIFAR-10, ImageFolder, ImageNet) with a recipe",
            "Train with Lightning on whatever hardware is present (CPU, one or more GPUs; bf16 on GPU). "
            "For several GPUs or nodes, launch the same command with torchrun. A checkpoint is written every "
            "epoch; --resume RUN_DIR continues exactly. RUN_DIR gets best.safetensors, metrics.json, curves.png "
            "and CSV/TensorBoard logs.")
    p.add_argument("--data", help="'cifar10' (under $SQUEEZENET_DATA, downloaded if absent) or a folder with "
                                  "train/ and val/ or test/ (one sub-folder per class)")
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="new run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--recipe", default="cifar10", help="a named recipe (see `squeezenet recipes`) or a YAML file")
    p.add_argument("--model", help="override the recipe's model (see `squeezenet models`)")
    p.add_argument("--epochs", type=_positive_int, help="override the number of epochs")
    p.add_argument("--batch-size", type=_positive_int, help="override the global batch size")
    p.add_argument("--lr", type=float, help="override the peak learning rate")
    p.add_argument("--set", dest="options", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
                   help="override any recipe field, repeatable: --set model_options.batch_norm=false "
                        "--set data.workers=8 --set label_smoothing=0")
    p.add_argument("--data-root", help="where named datasets live (default $SQUEEZENET_DATA)")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (default auto)")
    p.add_argument("--devices", default="auto", help="devices per node (default auto; torchrun sets it)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")

    p = add("compress", cmd_compress, "Deep Compression: prune, share weights, entropy-code into .sqz",
            "Deep Compression (Han et al. 2016) of any weights: magnitude pruning (--density or --quality, per "
            "layer if you like), per-layer k-means weight sharing (--bits), then Huffman/ANS coding into a "
            "self-describing .sqz file that every command reads. With --data, pruning happens gradually during "
            "--finetune-epochs of fine-tuning and the centroids are fine-tuned afterwards (--centroid-epochs); "
            "without it this is post-training compression. Prints the per-layer table (density, bits, bytes).")
    p.add_argument("-w", "--weights", required=True, help=weights_help)
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
    p.add_argument("--data-root", help="where named datasets live (default $SQUEEZENET_DATA)")
    p.add_argument("--finetune-epochs", type=_nonnegative_int, default=0,
                   help="epochs of fine-tuning while pruning (needs --data; default 0)")
    p.add_argument("--centroid-epochs", type=_nonnegative_int, default=None,
                   help="epochs of centroid fine-tuning after weight sharing (default 1 with --finetune-epochs)")
    p.add_argument("--schedule", choices=("gradual", "oneshot"), default="gradual",
                   help="with fine-tuning: prune along a cubic schedule, or all at once first (default gradual)")
    p.add_argument("--lr", type=float, default=0.02, help="peak learning rate while pruning (SGD, cosine; default 0.02)")
    p.add_argument("--centroid-lr", type=float, default=1e-4,
                   help="learning rate of the centroid fine-tuning (Adam; default 1e-4)")
    p.add_argument("--budget", type=float, metavar="SECONDS", help="time limit per fine-tuning phase")
    p.add_argument("--init", choices=("linear", "optimal"),
                   help="k-means start: linear (Han et al.; default with fine-tuning) or optimal (least squares, "
                        "default without)")
    p.add_argument("--recipe", help="base recipe for fine-tuning (default: cifar10 for small inputs, else torchvision)")
    p.add_argument("--set", dest="options", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
                   help="override a fine-tuning recipe field, repeatable: --set batch_size=64 --set data.limit_train=5000")
    p.add_argument("--eval", metavar="DIR", help="image folder to measure top-1/top-5 before and after")
    p.add_argument("--work-dir", help="where fine-tuning runs go (default OUTPUT-runs/ beside the output)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed compression: the same command plus --resume picks up its work directory "
                        "(finished phases are skipped, the running one continues from its last epoch)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add("sensitivity", cmd_sensitivity, "per-layer pruning sensitivity: table and plot",
            "Prune one layer at a time to each density (no fine-tuning), measure top-1 on an image folder, and "
            "print the table and write a heat map of the top-1 lost per layer and density (Han et al. 2015, Fig. 6, "
            "as a grid: 26 curves cannot be told apart). Guides per-layer --density targets.")
    p.add_argument("-w", "--weights", required=True, help=weights_help)
    p.add_argument("-d", "--data", required=True, help="labelled image folder (as for `squeezenet eval`)")
    p.add_argument("-o", "--output", required=True, help="heat map file (.png, .svg or .pdf)")
    p.add_argument("--densities", default="0.8,0.6,0.4,0.3,0.2,0.1,0.05", help="comma-separated densities")
    p.add_argument("--limit", type=_positive_int, help="use a fixed random subset of N images")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = add("export", cmd_export, "export to ONNX (fp32 or int8) with preprocessing metadata",
            "Export weights to ONNX with a dynamic batch dimension. The preprocessing (resize, crop, mean/std or "
            "Caffe mean, channel order, value range), class names and architecture go into the file's metadata, "
            "so a client needs nothing else. The file is checked against PyTorch on real images (--check DIR) and "
            "not written if it differs. --int8: static quantization with onnxruntime's tools, calibrated on "
            "--calibration DIR.")
    p.add_argument("-w", "--weights", required=True, help=weights_help)
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--format", default="onnx", help="export format (onnx)")
    p.add_argument("--int8", action="store_true", help="static int8 quantization (QDQ, per-channel weights)")
    p.add_argument("--calibration", metavar="DIR", help="images for int8 calibration (labelled or not)")
    p.add_argument("--calibration-images", type=_positive_int, default=64, help="how many to use (default 64)")
    p.add_argument("--keep-fp32-ends", action="store_true", help="int8: keep the first and last conv in fp32")
    p.add_argument("--check", metavar="DIR", help="images to check the export against PyTorch (default: --calibration)")
    p.add_argument("--check-images", type=_positive_int, default=32, help="how many (default 32)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="fp32: largest allowed |logit difference| (1e-3)")
    p.add_argument("--opset", type=_positive_int, default=18,
                   help="ONNX opset (default 18; 10-17 for older runtimes, written by PyTorch's TorchScript exporter; "
                        "int8 needs 13+)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")

    p = add("bench", cmd_bench, "size, accuracy and speed of PyTorch, ONNX fp32 and ONNX int8 side by side",
            "Benchmark every deployable form of one set of weights on this machine: PyTorch eager fp32, ONNX fp32 "
            "and ONNX int8 (onnxruntime), plus AlexNet fp32 as the paper's baseline: file size, top-1/top-5 on an "
            "image folder, batch-1 latency and batch-32 throughput (medians), same thread count for all.")
    p.add_argument("-w", "--weights", required=True, help=weights_help)
    p.add_argument("-d", "--data", required=True, help="labelled image folder (as for `squeezenet eval`)")
    p.add_argument("--calibration", metavar="DIR", help="int8 calibration images (default: 64 of --data)")
    p.add_argument("--threads", type=_positive_int, default=2, help="intra-op threads for every runtime (default 2)")
    p.add_argument("--repeats", type=_positive_int, default=50, help="timed batch-1 runs per format (default 50)")
    p.add_argument("--limit", type=_positive_int, help="accuracy on a fixed random subset of N images (default: all)")
    p.add_argument("--no-alexnet", action="store_true", help="skip the AlexNet baseline row")
    p.add_argument("--work-dir", help="where the ONNX files go (default ./bench-onnx)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")

    add("recipes", cmd_recipes, "list the named training recipes", "List the training recipes shipped with the package.")

    p = add("demo", cmd_demo, "train, compress, evaluate and summarise a small SqueezeNet on CIFAR-10",
            "The main job, end to end: train the cifar10 recipe on CIFAR-10 (from $SQUEEZENET_DATA, or downloaded), "
            "evaluate the exported weights on the test set, Deep-Compress them into model.sqz (pruning while "
            "fine-tuning, 4-bit weight sharing, entropy coding), evaluate that file too and print both with their "
            "sizes and ratios to fp32 and to AlexNet's 240 MB. About 20 minutes on a 2-core CPU.")
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="run directory (default runs/demo-TIMESTAMP)")
    p.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    p.add_argument("--data-root", help="where cifar10/ lives (default $SQUEEZENET_DATA)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed demo: finished steps are kept, training and compression continue from "
                        "their last epoch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        if os.environ.get("SQUEEZENET_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
