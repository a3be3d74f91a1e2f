"""Which process this is when ``torchrun`` starts several: only the first one writes files and reports."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's global rank under ``torchrun`` (0 when started alone)."""
    return int(os.environ.get("RANK", "0"))


def is_first_process() -> bool:
    """True for rank 0, the process that owns run directories, writes results and prints reports."""
    return rank() == 0
