"""The one progress bar of long passes over images (eval, predict, compare): rich's, transient (it leaves no
trace in a log or a terminal once done), counting images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def image_bar(label: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """``label ━━━━ 12/250 images 0:00:03``; yields ``advance(n)``, called after each batch (a no-op when not
    ``enabled``: ``--json``, ``--no-progress``, a library call)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("images"), TimeRemainingColumn())
    with Progress(*columns, disable=not enabled, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
