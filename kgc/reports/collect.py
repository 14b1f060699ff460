"""Collect fine-tuning runs' ``metrics.json`` files into flat records for the leaderboard.

A runs folder holds run folders (``runs/<name>/metrics.json``), possibly grouped one level deeper
(``runs/<group>/<name>/metrics.json``, e.g. an ablation grid). Pretraining runs (``run.json`` with
``kind: pretrain``) have no metrics and are passed over silently. Everything else that cannot be read
- invalid JSON, missing keys, a fine-tuning run without ``metrics.json``, an empty folder - is skipped
with a one-line warning that names the folder; it never stops the report.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kgc.errors import KGCError

METRIC_KEYS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")
REQUIRED_KEYS = ("dataset", "tie_policy", "metrics", "model", "seed")


def signals_label(signals: list[str] | tuple[str, ...] | None) -> str:
    """``none`` (no pretraining), ``all`` (every registered signal) or the names joined by ``+`` in registry order."""
    from pretrain_tasks.registry import SIGNAL_NAMES as SIGNALS  # lazy: the leaderboard needs only the names

    names = sorted(set(signals or []), key=lambda s: (SIGNALS.index(s) if s in SIGNALS else len(SIGNALS), s))
    if not names:
        return "none"
    if set(names) == set(SIGNALS):
        return "all"
    return "+".join(names)


@dataclass
class RunRecord:
    """One fine-tuning run as the leaderboard shows it (numbers exactly as in its ``metrics.json``)."""

    path: Path
    dataset: str
    model: str
    signals: str
    tie_policy: str
    seed: int
    metrics: dict[str, float]
    pessimistic: dict[str, float] = field(default_factory=dict)
    split: str = "test"
    pretrain_steps: int = 0
    finetune_steps: int | None = None
    finetune_max_time: str | None = None
    commit: str | None = None
    hardware: str | None = None
    wall_time_s: float | None = None
    created: str | None = None
    mtime: float = 0.0
    best: bool = False
    valid_mrr: float | None = None
    init_checkpoint: str | None = None
    # set for a cell of a kgc.ablation grid (its ``ablation.json``): the arm, the grid's mode and folder,
    # and the wall time of the pretraining run it started from (``run.json`` ``wall_time_s``)
    arm: str | None = None
    mode: str | None = None
    grid: str | None = None
    pretrain_wall_s: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.model, self.signals)

    @property
    def budget(self) -> str:
        """Fine-tuning budget as run: ``<steps> steps`` and the wall-clock cap if one was set."""
        parts = [f"{self.finetune_steps} steps" if self.finetune_steps is not None else "? steps"]
        if self.finetune_max_time:
            parts.append(f"max {self.finetune_max_time}")
        return ", ".join(parts)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise KGCError(f"{where} is not a finite number ({value!r})")
    return float(value)


def parse_metrics(data: Any, path: Path) -> RunRecord:
    """Build a :class:`RunRecord` from a loaded ``metrics.json``; a :class:`KGCError` names what is wrong."""
    where = str(path)
    if not isinstance(data, dict):
        raise KGCError(f"{where}: top level is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise KGCError(f"{where}: missing key {missing[0]!r}")
    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        raise KGCError(f"{where}: 'metrics' is not an object")
    missing = [k for k in METRIC_KEYS if k not in metrics]
    if missing:
        raise KGCError(f"{where}: missing key 'metrics.{missing[0]}'")
    values = {k: _number(metrics[k], f"{where}: metrics.{k}") for k in METRIC_KEYS}
    pess_raw = data.get("pessimistic") if isinstance(data.get("pessimistic"), dict) else {}
    pess = {k: float(pess_raw[k]) for k in METRIC_KEYS if isinstance(pess_raw.get(k), (int, float))}
    signals = data.get("signals") or []
    if not isinstance(signals, list) or not all(isinstance(s, str) for s in signals):
        raise KGCError(f"{where}: 'signals' is not a list of names")
    try:
        seed = int(data["seed"])
        pretrain_steps = int(data.get("pretrain_steps") or 0)
        ft_steps = None if data.get("finetune_steps") is None else int(data["finetune_steps"])
    except (TypeError, ValueError) as exc:
        raise KGCError(f"{where}: bad integer field ({exc})") from None
    wall = data.get("wall_time_s_total", data.get("train_wall_time_s"))
    valid = data.get("valid") if isinstance(data.get("valid"), dict) else {}
    valid_mrr = (valid.get("metrics") or {}).get("mrr") if isinstance(valid.get("metrics"), dict) else None
    return RunRecord(
        path=path.parent, dataset=str(data["dataset"]), model=str(data["model"]), signals=signals_label(signals),
        tie_policy=str(data["tie_policy"]), seed=seed, metrics=values, pessimistic=pess,
        split=str(data.get("split", "test")), pretrain_steps=pretrain_steps, finetune_steps=ft_steps,
        finetune_max_time=None if data.get("finetune_max_time") in (None, "") else str(data["finetune_max_time"]),
        commit=data.get("commit"), hardware=data.get("hardware"),
        wall_time_s=float(wall) if isinstance(wall, (int, float)) else None,
        mtime=path.stat().st_mtime,
        valid_mrr=float(valid_mrr) if isinstance(valid_mrr, (int, float)) and not isinstance(valid_mrr, bool) else None,
        init_checkpoint=None if data.get("init_checkpoint") is None else str(data["init_checkpoint"]),
    )


def _run_kind(folder: Path) -> str | None:
    meta = folder / "run.json"
    if not meta.is_file():
        return None
    try:
        with open(meta) as fh:
            return json.load(fh).get("kind")
    except (OSError, ValueError, AttributeError):
        return "?"


def _candidates(runs_dir: Path) -> list[Path]:
    """Run folders under ``runs_dir``: its children, or their children when a child is a group folder."""
    out = []
    for child in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (child / "leaderboard.md").exists() or (child / "ablation.md").exists():
            continue  # a report folder written by kgc.leaderboard / kgc.ablation
        if (child / "metrics.json").exists() or (child / "run.json").exists():
            out.append(child)
            continue
        inner = sorted(p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and not (p / "leaderboard.md").exists() and not (p / "ablation.md").exists())
        inner_runs = [p for p in inner if (p / "metrics.json").exists() or (p / "run.json").exists()]
        if inner_runs:
            out.extend(inner)  # every sub-folder of a group is a run (or reported as a broken one)
        else:
            out.append(child)  # neither a run nor a group: reported as missing metrics.json
    return out


def collect_runs(runs_dir: str | os.PathLike, warn: Callable[[str], None] | None = None,
                 split: str = "test") -> list[RunRecord]:
    """Every readable fine-tuning run under ``runs_dir`` (one level of grouping), best runs marked.

    ``warn`` receives one line per skipped folder (default: print to stderr). Runs evaluated on another
    split than ``split`` are skipped with a warning. A missing ``runs_dir`` is a :class:`KGCError`.
    """
    import sys

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    root = Path(runs_dir)
    if not root.is_dir():
        raise KGCError(f"{root}: runs folder not found")
    records: list[RunRecord] = []
    grids: dict[Path, dict | None] = {}
    for folder in _candidates(root):
        kind = _run_kind(folder)
        metrics_path = folder / "metrics.json"
        if kind == "pretrain" and not metrics_path.exists():
            continue  # pretraining runs have no link-prediction metrics
        if not metrics_path.is_file():
            why = "fine-tuning run has no metrics.json (unfinished?)" if kind == "finetune" else "no metrics.json"
            warn(f"skipping {folder}: {why}")
            continue
        try:
            with open(metrics_path) as fh:
                data = json.load(fh)
        except ValueError as exc:
            warn(f"skipping {folder}: metrics.json is not valid JSON ({exc})")
            continue
        except OSError as exc:
            warn(f"skipping {folder}: cannot read metrics.json ({exc.strerror})")
            continue
        if isinstance(data, dict) and data.get("test_evaluated") is False:
            warn(f"skipping {folder}: the test split was not evaluated (--skip-test)")
            continue
        try:
            rec = parse_metrics(data, metrics_path)
        except KGCError as exc:
            warn(f"skipping {folder}: {str(exc).replace(str(metrics_path) + ': ', '')}")
            continue
        if rec.split != split:
            warn(f"skipping {folder}: metrics are for split {rec.split!r}, not {split!r}")
            continue
        rec.created = _created(folder)
        _mark_ablation_cell(rec, folder, grids)
        records.append(rec)
    mark_best(records)
    return records


def _read_json(path: Path) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _mark_ablation_cell(rec: RunRecord, folder: Path, grids: dict[Path, dict | None]) -> None:
    """A fine-tuning cell of a ``kgc.ablation`` grid (listed in ``<grid>/ablation.json``): set its arm,
    mode, grid and the wall time of its pretraining run."""
    parent = folder.parent
    if parent not in grids:
        data = _read_json(parent / "ablation.json")
        grids[parent] = data if isinstance(data, dict) and isinstance(data.get("cells"), dict) else None
    manifest = grids[parent]
    cell = None if manifest is None else manifest["cells"].get(folder.name)
    if not isinstance(cell, dict) or not isinstance(cell.get("arm"), str):
        return
    rec.arm = cell["arm"]
    rec.mode = str((manifest.get("settings") or {}).get("mode") or "?")
    rec.grid = str(parent)
    if cell.get("pretrain"):
        meta = _read_json(parent / str(cell["pretrain"]) / "run.json")
        wall = meta.get("wall_time_s") if isinstance(meta, dict) else None
        rec.pretrain_wall_s = float(wall) if isinstance(wall, (int, float)) else None


def _created(folder: Path) -> str | None:
    try:
        with open(folder / "run.json") as fh:
            value = json.load(fh).get("created")
        return None if value is None else str(value)
    except (OSError, ValueError, AttributeError):
        return None


def mark_best(records: list[RunRecord]) -> None:
    """Mark the run with the highest headline MRR per (dataset, model, signals); ties go to the earlier run."""
    best: dict[tuple[str, str, str], RunRecord] = {}
    for rec in records:
        rec.best = False
        cur = best.get(rec.key)
        if cur is None or rec.metrics["mrr"] > cur.metrics["mrr"]:
            best[rec.key] = rec
    for rec in best.values():
        rec.best = True
