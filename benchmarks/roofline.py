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
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from squeezenet.deploy.bench import interleaved_medians
from squeezenet.deploy.onnx import export_onnx, ort_session
from squeezenet.inference.preloaded import load_images
from squeezenet.report import architecture_report
from squeezenet.weights import load_weights

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))

# 12 independent accumulators per thread hide the FMA latency; GCC vector extensions pick the widest
# vectors of -march=native (AVX-512, AVX2 or NEON). Prints FLOP/s.
FMA_KERNEL = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
typedef float vec __attribute__((vector_size(64)));
int main(int argc, char **argv) {
  long iters = atol(argv[1]); int threads = atoi(argv[2]); float sink = 0;
  double t0 = omp_get_wtime();
  #pragma omp parallel num_threads(threads) reduction(+:sink)
  {
    vec a[12], b, c;
    for (int k = 0; k < 16; k++) { b[k] = 0.999999f; c[k] = 1e-7f; }
    for (int i = 0; i < 12; i++) for (int k = 0; k < 16; k++) a[i][k] = (float)i;
    for (long n = 0; n < iters; n++) {
      #pragma GCC unroll 12
      for (int i = 0; i < 12; i++) a[i] = a[i] * b + c;
    }
    for (int i = 0; i < 12; i++) for (int k = 0; k < 16; k++) sink += a[i][k];
  }
  double t = omp_get_wtime() - t0;
  printf("%f %f\n", 2.0 * 16 * 12 * iters * threads / t, sink);
  return 0;
}
"""


def fma_peak(threads: int) -> float | None:
    """fp32 FLOP/s of `threads` threads doing nothing but FMAs; None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fma.c", Path(tmp) / "fma"
        src.write_text(FMA_KERNEL)
        flags = ["-O2", "-march=native", "-ffp-contract=fast", "-fopenmp"]
        if subprocess.run([cc, *flags, str(src), "-o", str(exe)], capture_output=True).returncode != 0:
            return None
        runs = [float(subprocess.run([str(exe), "100000000", str(threads)], capture_output=True, text=True,
                                     check=True).stdout.split()[0]) for _ in range(3)]
    return max(runs)


def gemm_rate(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Best fp32 FLOP/s of a large torch matmul: what a tuned library reaches in practice."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


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
    peak, gemm = fma_peak(args.threads), gemm_rate(args.threads)
    ceiling = peak or gemm
    result = {
        "model": model.config.arch, "input": crop, "dense_gflop": flops / 1e9, "threads": args.threads,
        "fma_peak_gflops": peak and peak / 1e9, "gemm_gflops": gemm / 1e9,
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
    print(f"fp32 FMA peak {result['fma_peak_gflops'] or float('nan'):.0f} GFLOP/s, "
          f"torch GEMM 2048^3 {result['gemm_gflops']:.0f} GFLOP/s")
    print(f"{'runtime':22s} {'batch-1 ms':>10s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, r in result["runtimes"].items():
        print(f"{name:22s} {r['ms']:10.2f} {r['gflops']:8.0f} {r['of_peak']:8.0%}")
    print(f"at 100% of peak: {result['fastest_possible_ms']:.2f} ms -> at most "
          f"{result['largest_onnx_vs_eager']:.2f}x faster than eager (measured {result['measured_onnx_vs_eager']:.2f}x)")


if __name__ == "__main__":
    main()
