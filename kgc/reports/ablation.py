"""The ablation table: one model's fine-tuning metrics per pretraining-signal set and dataset.

A cell is the mean over seeds of (dataset, model, signals), the delta is to the "no pretraining" cell of
the same model and dataset. :func:`ablation_tables` is what ``kgc leaderboard`` and ``kgc ablation``
report (:mod:`kgc.reports.render` draws it); the grid that produces the runs is :mod:`kgc.ablation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pretrain_tasks.registry import SIGNAL_NAMES as SIGNALS

ABLATION_KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


# ---- the table --------------------------------------------------------------------------------
@dataclass
class AblationTable:
    """One model's ablation: ``cells[(signals, dataset)] = {"n", "seeds", "mean", "delta"}``."""

    model: str
    datasets: list[str]
    rows: list[str]
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _row_order(label: str) -> tuple:
    if label == "none":
        return (0, 0, "")
    if label == "all":
        return (3, 0, "")
    parts = label.split("+")
    if len(parts) == 1:
        return (1, SIGNALS.index(label) if label in SIGNALS else len(SIGNALS), label)
    return (2, len(parts), label)


def ablation_tables(records) -> list[AblationTable]:
    """Ablation tables (one per model) from run records (:class:`kgc.reports.collect.RunRecord`).

    Rows: no pretraining, each single signal, other combinations, all signals (those present). A cell is
    the mean over seeds of (dataset, model, signals); when a seed has several runs the latest one counts.
    The delta is to the "no pretraining" cell of the same model and dataset (absent when that is missing).
    """
    latest: dict[tuple[str, str, str, int], Any] = {}
    for r in records:
        k = (r.model, r.dataset, r.signals, r.seed)
        if k not in latest or (r.mtime, str(r.path)) > (latest[k].mtime, str(latest[k].path)):
            latest[k] = r
    by_model: dict[str, dict[tuple[str, str], list]] = {}
    for (model, ds, sig, _seed), r in latest.items():
        by_model.setdefault(model, {}).setdefault((sig, ds), []).append(r)
    tables = []
    for model in sorted(by_model):
        groups = by_model[model]
        t = AblationTable(model=model, datasets=sorted({ds for _, ds in groups}),
                          rows=sorted({sig for sig, _ in groups}, key=_row_order))
        for (sig, ds), runs in groups.items():
            runs.sort(key=lambda r: r.seed)
            mean = {k: sum(r.metrics[k] for r in runs) / len(runs) for k in ABLATION_KEYS}
            t.cells[(sig, ds)] = {"n": len(runs), "seeds": [r.seed for r in runs], "mean": mean, "delta": {}}
        for (sig, ds), cell in t.cells.items():
            base = t.cells.get(("none", ds))
            if base is not None:
                cell["delta"] = {k: cell["mean"][k] - base["mean"][k] for k in ABLATION_KEYS}
        tables.append(t)
    return tables
