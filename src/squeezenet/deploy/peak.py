"""This CPU's measured arithmetic peak per instruction set: the ceiling every ``bench`` row is compared with.

A tiny C program of independent multiply-adds (12 accumulators per thread hide the latency), built with the
system's C compiler for ``-march=native``: fp32 FMA on the widest vectors GCC picks (AVX-512, AVX2 or NEON),
and, where the CPU has it, int8 dot products with AVX-512 VNNI (``vpdpbusd``: 64 multiply-adds per instruction).
Measured, not taken from a data sheet: on the Xeon of issue #13 onnxruntime reached "103% of peak" against a
nominal figure. Without a C compiler the fp32 ceiling is a large torch GEMM (what a tuned library reaches).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

KERNEL = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
#ifdef __AVX512VNNI__
#include <immintrin.h>
#endif
typedef float vec __attribute__((vector_size(64)));
int main(int argc, char **argv) {
  long iters = atol(argv[1]); int threads = atoi(argv[2]); float sink = 0; long isink = 0;
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
  double fp32 = 2.0 * 16 * 12 * iters * threads / (omp_get_wtime() - t0);
  double int8 = 0;
#ifdef __AVX512VNNI__
  t0 = omp_get_wtime();
  #pragma omp parallel num_threads(threads) reduction(+:isink)
  {
    __m512i acc[12], x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i);
    for (long n = 0; n < iters; n++) {
      #pragma GCC unroll 12
      for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], x, y);
    }
    for (int i = 0; i < 12; i++) isink += _mm512_reduce_add_epi32(acc[i]);
  }
  int8 = 2.0 * 64 * 12 * iters * threads / (omp_get_wtime() - t0);
#endif
  printf("%f %f %f %ld\n", fp32, int8, sink, isink);
  return 0;
}
"""


@functools.cache
def measured_peaks(threads: int) -> dict[str, float]:
    """{"fp32": FLOP/s, "int8": OP/s (only with AVX-512 VNNI)} of ``threads`` threads, best of three runs;
    ``{}`` without a C compiler (or when it cannot build the kernel)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(KERNEL)
        flags = ["-O2", "-march=native", "-ffp-contract=fast", "-fopenmp"]
        if subprocess.run([cc, *flags, str(src), "-o", str(exe)], capture_output=True).returncode != 0:
            return {}
        runs = [subprocess.run([str(exe), "50000000", str(threads)], capture_output=True, text=True, check=True).stdout.split()
                for _ in range(3)]
    peaks = {"fp32": max(float(r[0]) for r in runs)}
    if max(float(r[1]) for r in runs) > 0:
        peaks["int8"] = max(float(r[1]) for r in runs)
    return peaks


def gemm_rate(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Best fp32 FLOP/s of a large torch matmul: what a tuned library reaches in practice."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)
