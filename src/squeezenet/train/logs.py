"""The CSV log of a run, kept whole across ``--resume``.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a resumed run would lose
the curves of every epoch before the kill. This writer keeps the rows logged before the checkpoint the
run resumes from (later rows belong to the interrupted epoch, which is trained again) and appends.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ..common.io import atomic_path


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_before_step: int | None):
        self._keep_before_step = keep_before_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__ in place of deleting the old file
        if self._keep_before_step is None or not self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            keys = list(reader.fieldnames or [])
            rows = [row for row in reader if row.get("step", "").isdigit() and int(row["step"]) < self._keep_before_step]
        with atomic_path(Path(self.metrics_file_path)) as tmp, tmp.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)  # a kill now leaves the old file, never half of it
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)  # appended rows use the same columns (new ones rewrite the header)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, when resuming from ``keep_before_step``, keeps the earlier rows."""

    def __init__(self, *args, keep_before_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._keep_before_step = keep_before_step

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self._keep_before_step)
        return self._experiment  # type: ignore[return-value]
