"""Verbs of deployment: ``export`` and ``bench`` (the ``[deploy]`` extra)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .args import add_device, add_json, add_labelled_data, add_weights, positive_int, verb

# the int8 gate's defaults, spelled here so --help imports nothing (a test keeps them equal to
# squeezenet.inference.fidelity.DEFAULT_GATE)
MIN_AGREEMENT = 0.95
MIN_SNR_DB = 15.0


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _export_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p)
    p.add_argument("-o", "--output", required=True,
                   help="output file: .onnx (onnxruntime, OpenVINO), .pte (ExecuTorch) or .tflite (LiteRT: Android, "
                        "Coral); with --format web a folder")
    p.add_argument("--format", choices=("onnx", "executorch", "litert", "web"),
                   help="export format (default: from the output's suffix, .onnx, .pte or .tflite); web: a static page that "
                        "classifies images in the browser (onnxruntime-web, the preprocessing inside the model)")
    p.add_argument("--ort-web", metavar="DIR",
                   help="--format web: onnxruntime-web's dist/ folder from its npm package (default "
                        "$SQUEEZENET_ORT_WEB, else node_modules/onnxruntime-web/dist)")
    p.add_argument("--int8", action="store_true",
                   help="static int8 (per-channel weights), checked against fp32 on the calibration images")
    p.add_argument("--calibration", metavar="DIR", help="unlabelled images for int8 ranges and the agreement check")
    p.add_argument("--calibration-images", type=positive_int, default=250, help="how many to use (default 250)")
    p.add_argument("--calibration-method", choices=("mse", "percentile", "minmax", "entropy"), default="mse",
                   help="ONNX int8 activation ranges (default mse: the clip with the least rounding error per tensor)")
    p.add_argument("--int8-weights", choices=("gptq", "nearest"), default="gptq",
                   help="int8 weight rounding (default gptq: chosen on the calibration images to keep each layer's "
                        "output; nearest: plain rounding); ONNX, ExecuTorch and LiteRT")
    p.add_argument("--min-agreement", type=_unit_interval, default=MIN_AGREEMENT,
                   help="int8: refuse to write a file whose top-1 agrees with fp32 on fewer calibration images "
                        f"(default {MIN_AGREEMENT}); for ONNX the most sensitive convolutions stay fp32 until it passes")
    p.add_argument("--min-snr", type=float, default=MIN_SNR_DB, metavar="DB",
                   help="int8: and refuse one whose logits keep less of fp32's input-dependent signal than this "
                        f"signal-to-error ratio (default {MIN_SNR_DB:g} dB; what sees a broken file when the model answers "
                        "one class for every image, where agreement reads 1.000)")
    p.add_argument("--force", action="store_true", help="int8: write the most faithful file even when it fails the gate")
    p.add_argument("--indexed-weights", action="store_true",
                   help="ONNX fp32: store shared weights (<= 256 values per layer, as in a .sqz) as uint8 indices + "
                        "codebook; bit-exact, same speed, ~20%% smaller to download (brotli)")
    p.add_argument("--batch", type=positive_int, default=1,
                   help="ExecuTorch: images per call (XNNPACK needs a fixed batch; default 1)")
    p.add_argument("--with-preprocessing", action="store_true",
                   help="ONNX classifiers: the file takes decoded uint8 RGB pixels (height x width x 3, any size) and "
                        "resizes, crops and normalises in its graph as PyTorch does, so a client using another image "
                        "library gets the same answers (needs --check DIR: refused below 99%% same top-1)")
    p.add_argument("--check", metavar="DIR", help="images to check the export against PyTorch (default: --calibration)")
    p.add_argument("--check-images", type=positive_int, default=32, help="how many (default 32)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="fp32: largest allowed |logit difference| (1e-3)")
    p.add_argument("--opset", type=positive_int, default=18,
                   help="ONNX opset (default 18; 10-17 for older runtimes, written by PyTorch's TorchScript exporter; "
                        "int8 needs 13+)")
    add_json(p, "print the check as JSON")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    add_weights(p)
    add_labelled_data(p)
    p.add_argument("--calibration", metavar="DIR", help="int8 calibration images (default: 64 of --data)")
    p.add_argument("--calibration-images", type=positive_int, default=250, help="how many (default 250)")
    # squeezenet.deploy.bench.BENCH_RUNTIMES, spelled out so that --help imports nothing (a test keeps them equal)
    p.add_argument("--runtime", action="append", choices=("pytorch", "onnxruntime", "openvino", "executorch", "litert"),
                   help="measure only these runtimes (repeatable; default: every installed one)")
    p.add_argument("--threads", type=positive_int, default=2, help="intra-op threads for every runtime (default 2)")
    p.add_argument("--repeats", type=positive_int, default=50, help="timed batch-1 runs per row (default 50)")
    p.add_argument("--brotli-quality", type=int, choices=range(12), default=11, metavar="0-11",
                   help="brotli quality of the transfer sizes (default 11, what servers precompress static files with; "
                        "lower is faster and a little larger)")
    p.add_argument("--limit", type=positive_int, help="agreement/accuracy on a fixed random subset of N images (default: all)")
    p.add_argument("--no-alexnet", action="store_true", help="skip the AlexNet baseline row")
    p.add_argument("--no-subprocess", action="store_true",
                   help="skip the load-time / peak-RSS measurement in a fresh runtime-only process per row")
    p.add_argument("--work-dir", help="where the exported files go (default ./bench-files)")
    add_device(p, onnx=False)
    add_json(p, "print the CPU, peaks and rows as JSON")


def _export_with_preprocessing(args: argparse.Namespace, model: Any, fmt: str) -> int:
    from ..data.images import expand_image_paths, load_rgb_image
    from ..deploy.pixels import export_pixels_onnx
    from ..errors import SqueezeNetError

    what = "--format web" if fmt == "web" else "--with-preprocessing"
    if fmt in ("executorch", "litert") or args.int8 or args.indexed_weights:
        raise SqueezeNetError(f"{what} writes fp32 ONNX (not --int8, --indexed-weights, .pte or .tflite)")
    if not args.check:
        raise SqueezeNetError(f"{what} checks the model on real images: give --check DIR")
    images = []
    for path in expand_image_paths([args.check])[:args.check_images]:
        try:
            images.append(load_rgb_image(path))
        except ValueError as exc:
            logging.getLogger("squeezenet.cli").warning(str(exc))
    if fmt == "web":
        return _export_web(args, model, images)
    check = export_pixels_onnx(model, args.output, check_images=images, opset=args.opset)
    size = Path(args.output).stat().st_size
    if args.json:
        print(json.dumps({"output": args.output, "format": "onnx", "bytes": size, "preprocessing_in_graph": True,
                          **check}))
    else:
        print(f"wrote {args.output} ({size:,} bytes, fp32, takes uint8 H x W x 3 RGB pixels); checked on "
              f"{int(check['images'])} images: same top-1 as PyTorch's pipeline on {100 * check['top1_agreement']:.1f}%, "
              f"max |logit diff| {check['max_abs_diff']:.3g}")
    return 0


def _export_web(args: argparse.Namespace, model: Any, images: list) -> int:
    from ..deploy.web import export_web

    result = export_web(model, args.output, check_images=images, ort_web=args.ort_web)
    if args.json:
        print(json.dumps({"output": args.output, "format": "web", **result.to_dict()}))
        return 0
    summary = result.to_dict()
    print(f"wrote {args.output}/ (serve it with any static server, e.g. `python -m http.server -d {args.output}`):")
    for name, (size, brotli) in result.files.items():
        print(f"  {name:32s} {size:>12,} bytes" + (f"   brotli {brotli:>10,}" if brotli is not None else ""))
    print(f"  {'the page downloads':32s} {summary['total_bytes']:>12,} bytes   brotli {summary['total_brotli']:>10,}\n"
          f"checked on {int(result.check['images'])} images: same top-1 as PyTorch on "
          f"{100 * result.check['top1_agreement']:.1f}%")
    return 0


@verb("export", _export_arguments, extra="deploy")
def cmd_export(args: argparse.Namespace) -> int:
    """Export to ONNX, ExecuTorch or LiteRT (fp32 or int8) with preprocessing metadata.

    Export weights to ONNX (dynamic batch; runs in onnxruntime and OpenVINO), to an ExecuTorch program with
    the XNNPACK delegate (.pte, for ARM phones and boards) or to LiteRT (.tflite, formerly TensorFlow Lite: Android
    apps, Coral and microcontroller boards). The preprocessing (resize, crop, mean/std or Caffe
    mean, channel order, value range), class names and architecture go into the file, so a client needs nothing
    else. The file is checked against PyTorch on real images (--check DIR) and not written if it differs.
    --int8: static quantization calibrated on --calibration DIR (unlabelled images), refused when its top-1
    agrees with fp32 on fewer than --min-agreement of them or its logits keep less than --min-snr of fp32's
    input-dependent signal; ONNX keeps the convolutions that change the outputs most in fp32, chosen by
    measurement, until it passes.
    """
    import torch

    from ..errors import SqueezeNetError
    from ..inference.fidelity import FidelityGate
    from ..inference.preloaded import unlabelled_images
    from ..weights import load_weights

    gate = FidelityGate(args.min_agreement, args.min_snr)

    fmt = args.format or {".onnx": "onnx", ".pte": "executorch", ".tflite": "litert"}.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise SqueezeNetError(f"{args.output}: name the output *.onnx, *.pte or *.tflite, or choose --format")
    if args.int8 and not args.calibration:
        raise SqueezeNetError("--int8 needs --calibration DIR (images the int8 ranges are measured on)")
    if args.indexed_weights and fmt != "onnx":
        raise SqueezeNetError("--indexed-weights is for ONNX files")
    if args.batch != 1 and fmt != "executorch":
        raise SqueezeNetError("--batch is for ExecuTorch programs (ONNX and LiteRT files take any batch)")
    model = load_weights(args.weights)
    if args.with_preprocessing or fmt == "web":
        return _export_with_preprocessing(args, model, fmt)
    check_dir = args.check or args.calibration
    if check_dir:  # (unlabelled: any folder of images)
        images = unlabelled_images(model.meta, check_dir, args.check_images)
    else:
        crop = model.meta.preprocessing.crop
        images = torch.randn(args.check_images, model.meta.config.in_chans, crop, crop,
                             generator=torch.Generator().manual_seed(0))
        logging.getLogger("squeezenet.cli").warning("no --check DIR: the export is checked on random inputs, not real images")
    calibration = unlabelled_images(model.meta, args.calibration, args.calibration_images) if args.int8 else None
    if fmt == "litert":
        from ..deploy.litert import export_litert

        check = export_litert(model, args.output, check_images=images, int8=args.int8, calibration=calibration,
                              gate=gate, force=args.force, tolerance=args.tolerance, int8_weights=args.int8_weights)
    elif fmt == "executorch":
        from ..deploy.executorch import export_executorch

        check = export_executorch(model, args.output, check_images=images, int8=args.int8, calibration=calibration,
                                  batch=args.batch, gate=gate, force=args.force,
                                  tolerance=args.tolerance, int8_weights=args.int8_weights)
    else:
        from ..deploy import export_onnx

        check = export_onnx(model, args.output, check_images=images, opset=args.opset, int8=args.int8,
                            calibration=calibration, gate=gate,
                            calibration_method=args.calibration_method, force=args.force, tolerance=args.tolerance,
                            indexed_weights=args.indexed_weights, int8_weights=args.int8_weights)
    size = Path(args.output).stat().st_size
    if args.json:
        print(json.dumps({"output": args.output, "format": fmt, "bytes": size, **check.to_dict()}))
        return 0
    what = f"{'int8' if args.int8 else 'fp32'}, " + {"onnx": f"opset {args.opset}", "executorch": f"batch {args.batch}",
                                                      "litert": "any batch"}[fmt]
    print(f"wrote {args.output} ({size:,} bytes, {what}); checked on {check.images} images: "
          f"max |logit diff| {check.max_abs_diff:.3g}, same top-1 on {100 * check.top1_agreement:.1f}%")
    if check.int8 is not None:
        q = check.int8
        kept = f"; fp32 kept for {', '.join(q.fp32_layers)}" if q.fp32_layers else ""
        print(f"int8 vs fp32 on {q.images} calibration images: top-1 agreement {q.agreement:.3f}, "
              f"logit SNR {q.snr_db:.1f} dB, KL {q.kl:.4f}{kept}")
    return 0


@verb("bench", _bench_arguments, extra="deploy")
def cmd_bench(args: argparse.Namespace) -> int:
    """Every runtime x precision side by side: size, download, load, memory, speed, agreement.

    Export the weights to every installed runtime (ONNX for onnxruntime and OpenVINO, .pte for ExecuTorch, .tflite
    for LiteRT; fp32 and int8) and measure each on this machine: file size and what a device downloads (gzip, brotli), load time
    and peak RSS of a process importing only that runtime, batch-1 latency and batch-32 throughput (medians,
    interleaved), speed relative to onnxruntime fp32, the fraction of this CPU's measured peak, the kernels the
    runtime reports, and top-1 agreement/KL with the fp32 PyTorch model. The CPU model and instruction sets are
    printed with the table; PyTorch runs with OMP_WAIT_POLICY=PASSIVE.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spin-waiting made eager 6x slower
    from ..deploy.bench import bench
    from ..report.render import console_for_output
    from ..report.tables import bench_table

    work = Path(args.work_dir or "bench-files")
    result = bench(args.weights, args.data, work, calibration=args.calibration,
                   calibration_images=args.calibration_images, threads=args.threads, repeats=args.repeats,
                   limit=args.limit, alexnet=not args.no_alexnet, runtimes=args.runtime,
                   subprocesses=not args.no_subprocess, device=args.device, brotli_quality=args.brotli_quality)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    console = console_for_output()
    peaks = ", ".join(f"{k} {v / 1e9:,.0f} G{'FLOP' if k == 'fp32' else 'OP'}/s" for k, v in result.peaks.items())
    console.print(bench_table(result, f"{Path(str(args.weights)).name} on {args.data} ({result.images} images): "
                                      f"{args.threads} threads, medians, OMP_WAIT_POLICY={result.omp_wait_policy}"))
    console.print(f"CPU: {result.cpu}\nmeasured peak ({args.threads} threads): {peaks}\nfiles in {work}/")
    return 0
