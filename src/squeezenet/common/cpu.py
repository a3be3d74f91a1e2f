"""What this CPU is and which vector/matrix instruction sets it has: every timing is quoted with them,
because the machines these figures come from change (an AMD Zen 4 once, an Intel Xeon with AMX another time,
one without AMX now)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

#: ISA features that decide inference speed, in the order people compare them: /proc/cpuinfo flag -> name
ISA_FLAGS = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx_vnni": "AVX-VNNI", "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16", "amx_tile": "AMX", "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16", "asimd": "NEON", "asimddp": "NEON dot product", "i8mm": "int8 matmul (I8MM)",
    "bf16": "BF16", "sve": "SVE",
}


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def cpu_model() -> str:
    """The CPU's marketing name (``Intel(R) Xeon(R) Processor``), or the architecture when the OS hides it."""
    return _cpuinfo()[0]


def isa_features() -> list[str]:
    """The speed-relevant instruction sets this CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    flags = _cpuinfo()[1]
    return [name for flag, name in ISA_FLAGS.items() if flag in flags]


def cpu_summary() -> str:
    """One line: model, logical CPUs, instruction sets."""
    import os

    features = isa_features()
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs" + (f", {', '.join(features)}" if features else "")
