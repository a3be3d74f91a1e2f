from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from seed 0 and leaves torch's thread count as it found it (verbs run in-process set it:
    a worker left at 2 threads on 2 cores would oversubscribe the machine for every later test)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared data); absent on this machine")
    return path


def image_folder(folder: Path, n: int, size: tuple[int, int] = (40, 40)) -> Path:
    """A folder of ``n`` random-pixel PNGs (unlabelled calibration images)."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def kill_after_line(cmd: list[str], marker: str, *, env: dict | None = None, delay_s: float = 1.0) -> None:
    """Run ``cmd``, wait for a stderr line containing ``marker``, then ``delay_s`` more, then SIGKILL it
    (no chance to clean up: what a crash, an OOM kill or a pulled plug leaves behind)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, line = time.time() + 240, ""
    while marker not in line and time.time() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if not line and proc.poll() is not None:
            break  # it ended (or failed) before printing the marker
    time.sleep(delay_s)
    assert proc.poll() is None, f"{' '.join(cmd)} ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def pytest_collection_modifyitems(items: list) -> None:
    """Tests marked ``slow`` run first. pytest-xdist hands tests out in collection order, so a minute-long test
    collected last ran alone at the end while the other worker idled (350 of 806 s, measured)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
