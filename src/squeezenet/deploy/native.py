"""What native (C++) runtimes print on their own: kept off the user's terminal."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Native runtimes' diagnostics silenced: file descriptor 2 and Python's ``sys.stderr`` (not the same stream in
    a notebook or under a test's capture). ExecuTorch's XNNPACK threadpool prints five lines of cpuinfo when the
    first method loads ("Failed to open midr file" on x86) and its loader a line for a bad file; LiteRT's converter
    logs op counts and its interpreter "Created TensorFlow Lite XNNPACK delegate". They say nothing to a user."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (embedded interpreters): Python's stream only
        with contextlib.redirect_stderr(io.StringIO()):
            yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
