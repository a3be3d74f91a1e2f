"""How close each runtime gets to this CPU's arithmetic peak, and what that allows.

Batch-1 latency of PyTorch eager and onnxruntime fp32 on the same model, turned into achieved GFLOP/s
(2 x the model's dense multiply-adds per second) and compared with two ceilings measured in the same
process: the fp32 FMA peak of the threads (a tiny C kernel of independent FMAs, built with the system's C
compiler when there is one) and a large fp32 GEMM (torch). The last lines give the fastest latency dense
fp32 can reach at that peak, and so the largest "ONNX vs eager" ratio this machine allows.

    python benchmarks/roofline.py [-w WEIGHTS] [-d IMAGES] [--threads 2] [--repeats 50] [--json]

Why it exists: issue #6 asks for ONNX fp32 >= 3x faster than eager; on a machine where onnxruntime
already runs at ~90% of the FMA peak, no export can get there without doing less arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from squeezenet.common.cpu import cpu_summary
from squeezenet.deploy.bench import interleaved_medians
from squeezenet.deploy.onnx import export_onnx
from squeezenet.deploy.ort import ort_session
from squeezenet.deploy.peak import gemm_rate, measured_peaks
from squeezenet.inference.preloaded import load_images
from squeezenet.report import architecture_report
from squeezenet.weights import load_weights

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--weights", default=str(SHARED / "deep-compression" / "compressed_SqueezeNet.net"))
    parser.add_argument("-d", "--data", default=str(SHARED / "imagenet-samples"), help="real images (see bench.py on denormals)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_weights(args.weights).eval()
    images, _ = load_images(model, args.data, 8)
    crop = model.preprocessing.crop
    flops = 2 * architecture_report(model, crop).macs
    x = images[:1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, check_images=images)
        session = ort_session(path, args.threads)
        with torch.inference_mode():
            latency = interleaved_medians({"pytorch eager fp32": lambda: model(x),
                                           "onnxruntime fp32": lambda: session.run(None, {"image": x.numpy()})},
                                          args.repeats)
    peaks = measured_peaks(args.threads)
    peak, gemm = peaks.get("fp32"), gemm_rate(args.threads)
    ceiling = peak or gemm
    result = {
        "model": model.config.arch, "input": crop, "dense_gflop": flops / 1e9, "threads": args.threads,
        "cpu": cpu_summary(), "fma_peak_gflops": peak and peak / 1e9, "gemm_gflops": gemm / 1e9,
        "int8_vnni_peak_gops": peaks["int8"] / 1e9 if "int8" in peaks else None,
        "runtimes": {name: {"ms": 1e3 * s, "gflops": flops / s / 1e9, "of_peak": flops / s / ceiling}
                     for name, s in latency.items()},
        "fastest_possible_ms": 1e3 * flops / ceiling,
        "largest_onnx_vs_eager": latency["pytorch eager fp32"] / (flops / ceiling),
        "measured_onnx_vs_eager": latency["pytorch eager fp32"] / latency["onnxruntime fp32"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['model']} at {crop}x{crop}: {flops / 1e9:.3f} GFLOP (dense), {args.threads} threads")
    print(f"CPU: {result['cpu']}")
    int8 = result["int8_vnni_peak_gops"]
    print(f"int8 AVX-512 VNNI peak {int8:.0f} GOP/s" if int8 else "int8: no AVX-512 VNNI (peak not measured)")
    print(f"fp32 FMA peak {result['fma_peak_gflops'] or float('nan'):.0f} GFLOP/s, "
          f"torch GEMM 2048^3 {result['gemm_gflops']:.0f} GFLOP/s")
    print(f"{'runtime':22s} {'batch-1 ms':>10s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, r in result["runtimes"].items():
        print(f"{name:22s} {r['ms']:10.2f} {r['gflops']:8.0f} {r['of_peak']:8.0%}")
    print(f"at 100% of peak: {result['fastest_possible_ms']:.2f} ms -> at most "
          f"{result['largest_onnx_vs_eager']:.2f}x faster than eager (measured {result['measured_onnx_vs_eager']:.2f}x)")


if __name__ == "__main__":
    main()
