"""The CSV logger of a run folder: appends to the ``metrics.csv`` of a resumed run.

Its own module because both :mod:`kgc.training.runner` (the Trainer) and :mod:`kgc.training.tracking`
(the logger list) use it.
"""

from __future__ import annotations

import csv

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from kgc.utils.io import atomic_write


class _ResumableCSVLogger(CSVLogger):
    """CSVLogger that appends to an existing ``metrics.csv`` (a resumed run) instead of deleting it.

    Lightning's writer removes the file when the log folder is not empty, which threw away the
    history of a killed run on ``--resume``. With ``keep_below_step`` (the global step of the
    checkpoint the run resumes from) the rows the killed run logged at that step or later are
    dropped first: the resumed run logs those steps again, so no step appears twice.
    """

    def __init__(self, *args, keep_below_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._keep_below_step = keep_below_step

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir, keep_below_step=self._keep_below_step)
        return self._experiment


class _AppendingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_below_step: int | None = None):
        self._keep_below_step = keep_below_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0] if rows else []
        self.metrics_keys = sorted(header)  # keep the rows; learn the header to append under
        if self._keep_below_step is None or "step" not in header:
            return
        col = header.index("step")
        kept = [r for r in rows[1:] if r[col] == "" or int(float(r[col])) < self._keep_below_step]
        if len(kept) < len(rows) - 1:
            with atomic_write(self.metrics_file_path, "w") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(kept)
