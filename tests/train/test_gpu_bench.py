"""benchmarks/gpu.py, the script a lent GPU runs (issue #29), checked on the CPU in its smoke mode: every section
measures, the anchor is torchvision's model in the same process, and the CIFAR loop trains on resident data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_the_gpu_benchmark_runs_every_section_in_smoke_mode_on_the_cpu() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    rows = report["rows"]
    sections = {r["section"] for r in rows}
    assert {s.split(" ")[0] for s in sections} >= {"train", "inference", "CIFAR-10", "JPEG"}, sections
    for r in rows:
        assert math.isfinite(r["value"]) and r["value"] > 0, r
    for section in (s for s in sections if s.startswith(("train", "inference"))):
        here = [r for r in rows if r["section"] == section]
        anchor = [r for r in here if r["variant"].startswith("torchvision")]
        assert len(anchor) == 1 and anchor[0]["vs_anchor"] == pytest.approx(1.0)  # ratios against the same process
        assert all(r["vs_anchor"] > 0 for r in here) and len(here) >= 3
    assert report["smoke"] and report["device"].startswith("CPU")
