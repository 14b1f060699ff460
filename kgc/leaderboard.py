"""``python -m kgc.leaderboard``: MRR/Hits tables of all runs beside the published numbers.

Examples::

    python -m kgc.leaderboard                                  # runs/ -> reports/
    python -m kgc.leaderboard --runs runs/ablation-umls --out reports/umls

Collects every fine-tuning run's ``metrics.json`` under ``--runs`` (run folders, or run folders one
level down in a group folder), and writes ``leaderboard.md``, ``leaderboard.html`` (one self-contained
page with sortable tables), ``leaderboard.csv`` and ``leaderboard_<dataset>.png`` (MRR and Hits@10 of
the best kgc runs beside the published ones) into ``--out``, plus the ablation table over the
pretraining signals. A broken run folder is skipped with a warning naming it. docs/leaderboard.md
explains how to read the report.
"""

from __future__ import annotations

import argparse

from kgc.cli import run_cli
from kgc.reports.build import build_report
from kgc.training.runs import default_runs_root

__all__ = ["build_report", "main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kgc leaderboard", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(default_runs_root()), help="folder of run folders (default $KGC_RUNS or runs/)")
    p.add_argument("--out", default="reports", help="where the report files go (default reports/)")
    p.add_argument("--published", help="published-results YAML (default: kgc/reports/published.yaml)")
    args = p.parse_args(argv)
    paths = build_report(args.runs, args.out, args.published)
    for key, path in paths.items():
        print(f"[kgc] {key}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
