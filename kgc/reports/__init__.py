"""Leaderboard reports: collect run metrics, load published numbers, render Markdown/HTML/CSV/PNG.

- :mod:`kgc.reports.collect` reads every fine-tuning run's ``metrics.json`` (skipping broken folders
  with a warning that names them).
- :mod:`kgc.reports.published` loads the versioned file of published results (``published.yaml``).
- :mod:`kgc.reports.render` writes ``leaderboard.md``, ``leaderboard.html``, ``leaderboard.csv`` and
  one PNG per dataset, atomically.
- :mod:`kgc.reports.ablation` computes the ablation tables (means over seeds, deltas to no pretraining).
- :mod:`kgc.reports.build` puts them together: :func:`~kgc.reports.build.build_report`.

The command line is ``python -m kgc.leaderboard``; the ablation grid runner is ``python -m kgc.ablation``.
"""

from kgc.reports.collect import RunRecord, collect_runs
from kgc.reports.published import PublishedRow, load_published

__all__ = ["RunRecord", "collect_runs", "PublishedRow", "load_published"]
