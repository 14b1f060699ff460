"""The ablation tables: fine-tuning metrics per pretraining-signal set (arm), dataset and model.

- :func:`ablation_tables`: one model's overview over every run (all datasets as columns): a cell is the
  mean over seeds of (dataset, model, arm), the delta is to the "no pretraining" cell of the same model
  and dataset.
- :func:`signal_tables`: the paper-style per-signal table of each ``kgc.ablation`` grid (one dataset and
  mode): per arm the seeds, steps, test MRR / Hits@1 / Hits@10 mean and sample standard deviation,
  validation MRR, the difference to ``none``, its pooled standard deviation, z and whether it exceeds two
  pooled standard deviations (:func:`compare`).

Both are what ``kgc leaderboard`` and ``kgc ablation`` report (:mod:`kgc.reports.render` draws them); the
grid that produces the runs is :mod:`kgc.ablation`. Numbers come from each run's ``metrics.json`` (the
checkpoint chosen on validation, evaluated on test once).
"""

from __future__ import annotations

import math
import statistics
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
    if label.startswith("all-"):
        return (4, 0, label)
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
        k = (r.model, r.dataset, r.arm or r.signals, r.seed)  # the arm tells all-uncertainty from all
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


# ---- the per-signal table of an ablation grid ---------------------------------------------------------
SIGNAL_KEYS = ("mrr", "hits@1", "hits@10")


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (:func:`statistics.stdev`; ``None`` for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pooled_std(s_arm: float, s_none: float) -> float:
    """``sqrt((s_arm^2 + s_none^2) / 2)``."""
    return math.sqrt((s_arm ** 2 + s_none ** 2) / 2)


def compare(arm: list[float], none: list[float]) -> dict[str, Any]:
    """Δ (mean of ``arm`` - mean of ``none``), pooled std, z = Δ / pooled std and the verdict: ``yes`` when
    Δ > 2 pooled std, ``no (worse)`` when Δ < -2 pooled std, else ``no``; ``n/a`` when either side has a
    single value (no standard deviation)."""
    m_arm, s_arm = mean_std(arm)
    m_none, s_none = mean_std(none)
    delta = m_arm - m_none
    if s_arm is None or s_none is None:
        return {"delta": delta, "pooled_std": None, "z": None, "significant": "n/a"}
    pooled = pooled_std(s_arm, s_none)
    z = delta / pooled if pooled > 0 else (math.copysign(math.inf, delta) if delta else 0.0)
    verdict = "yes" if delta > 2 * pooled else ("no (worse)" if delta < -2 * pooled else "no")
    return {"delta": delta, "pooled_std": pooled, "z": z, "significant": verdict}


@dataclass
class SignalRow:
    """One arm of a :class:`SignalTable` (lists are per seed, in seed order)."""

    arm: str
    seeds: list[int]
    pretrain_steps: list[int]
    pretrain_s: list[float | None]
    finetune_steps: list[int | None]
    values: dict[str, list[float]]  # SIGNAL_KEYS -> per-seed test values
    stats: dict[str, tuple[float, float | None]]  # SIGNAL_KEYS -> (mean, sample std)
    valid_mrr: float | None
    vs_none: dict[str, Any] = field(default_factory=dict)  # compare() of the test MRR; {} for none / no none row

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class SignalTable:
    """The per-signal table of one ablation grid (one dataset, one mode)."""

    dataset: str
    mode: str
    grid: str
    model: str
    rows: list[SignalRow]

    @property
    def name(self) -> str:
        from pathlib import Path

        return Path(self.grid).name


def signal_tables(records) -> list[SignalTable]:
    """One :class:`SignalTable` per ablation grid among ``records`` (those with ``arm``/``grid`` set by
    :func:`kgc.reports.collect.collect_runs`); the latest run per (arm, seed) counts."""
    latest: dict[tuple[str, str, int], Any] = {}
    for r in records:
        if r.grid is None or r.arm is None:
            continue
        k = (r.grid, r.arm, r.seed)
        if k not in latest or (r.mtime, str(r.path)) > (latest[k].mtime, str(latest[k].path)):
            latest[k] = r
    grids: dict[str, dict[str, list]] = {}
    for (grid, arm, _seed), r in latest.items():
        grids.setdefault(grid, {}).setdefault(arm, []).append(r)
    tables = []
    for grid in sorted(grids):
        arms = grids[grid]
        rows = []
        for arm in sorted(arms, key=_row_order):
            runs = sorted(arms[arm], key=lambda r: r.seed)
            values = {k: [r.metrics[k] for r in runs] for k in SIGNAL_KEYS}
            valid = [r.valid_mrr for r in runs if r.valid_mrr is not None]
            rows.append(SignalRow(arm=arm, seeds=[r.seed for r in runs], pretrain_steps=[r.pretrain_steps for r in runs],
                                  pretrain_s=[r.pretrain_wall_s for r in runs],
                                  finetune_steps=[r.finetune_steps for r in runs], values=values,
                                  stats={k: mean_std(v) for k, v in values.items()},
                                  valid_mrr=statistics.fmean(valid) if valid else None))
        base = next((row for row in rows if row.arm == "none"), None)
        for row in rows:
            if base is not None and row is not base:
                row.vs_none = compare(row.values["mrr"], base.values["mrr"])
        first = next(iter(arms.values()))[0]
        tables.append(SignalTable(dataset=first.dataset, mode=first.mode or "?", grid=grid,
                                  model=first.model, rows=rows))
    return tables
