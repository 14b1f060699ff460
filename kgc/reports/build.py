"""Build the whole leaderboard report: collect runs, load the published numbers, write every file.

Shared by ``kgc leaderboard`` (any runs folder) and ``kgc ablation`` (the grid's own report).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Callable

from kgc.reports.ablation import ablation_tables, signal_tables
from kgc.reports.collect import collect_runs
from kgc.reports.published import load_published
from kgc.reports.render import Report, write_report


def build_report(runs_dir: str | os.PathLike, out_dir: str | os.PathLike, published: str | os.PathLike | None = None,
                 warn: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Collect runs, load the published numbers, write every report file; returns ``{kind: path}``."""
    skipped: list[str] = []

    def _warn(msg: str) -> None:
        skipped.append(msg)
        (warn or (lambda m: print(f"warning: {m}", file=sys.stderr)))(msg)

    records = collect_runs(runs_dir, warn=_warn)
    version, rows = load_published(published)
    rep = Report(records=records, published=rows, published_version=version, ablation=ablation_tables(records),
                 skipped=skipped, runs_dir=str(runs_dir), signal_tables=signal_tables(records),
                 generated=_dt.datetime.now().isoformat(timespec="seconds"))
    return write_report(rep, out_dir)
