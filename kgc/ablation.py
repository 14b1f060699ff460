"""``python -m kgc.ablation``: the pretraining-signal ablation grid under a stated budget, then the report.

Examples::

    python -m kgc.ablation --dataset fb15k237 --budget-pretrain-steps 20000 --budget-finetune-steps 20000
    python -m kgc.ablation --dataset umls --budget-pretrain-steps 500 --budget-finetune-steps 1000 \\
        --signals-set random_walk --signals-set lcc --signals-set all --seeds 0,1,2

Cells: "no pretraining" (fine-tuned from scratch), and for each signal set (default: each single signal
and all five) a pretraining run followed by a fine-tuning run started from its checkpoint (``--init``).
Every cell lives in ``<runs>/ablation-<dataset>/`` (``pretrain-<signals>-s<seed>``,
``finetune-<signals>-s<seed>``). The grid is resumable: a cell whose ``metrics.json`` exists is not
recomputed, a finished pretraining run is reused, and an interrupted one continues from its last
checkpoint. Afterwards the leaderboard (with the ablation table) is written to ``<grid>/report``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from kgc.cli import run_cli
from kgc.errors import KGCError
from kgc.reports.ablation import ablation_tables
from pretrain_tasks.registry import SIGNAL_NAMES as SIGNALS


# ---- the grid runner ----------------------------------------------------------------------------
def parse_signal_set(spec: str) -> list[str]:
    """``all`` or a comma list of signal names (validated); ``none`` is the from-scratch cell, always run."""
    spec = spec.strip()
    if spec == "all":
        return list(SIGNALS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise KGCError(f"--signals-set {spec!r}: empty")
    bad = [n for n in names if n not in SIGNALS]
    if bad:
        raise KGCError(f"--signals-set {spec!r}: unknown signal {bad[0]!r} (known: {', '.join(SIGNALS)}, all)")
    return [s for s in SIGNALS if s in names]


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise KGCError(f"--seeds {spec!r}: expected a comma list of integers, e.g. 0,1,2") from None
    if not seeds:
        raise KGCError("--seeds: no seed given")
    return list(dict.fromkeys(seeds))


def _tag(signals: list[str]) -> str:
    from kgc.reports.collect import signals_label

    return signals_label(signals)


def _finished_pretrain(folder: Path, steps: int) -> bool:
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        return False
    if meta.get("finished") and int(meta.get("steps", -1)) >= steps:
        return True
    # training ended normally before max_steps (a trainer.max_time cap): kgc.pretrain records wall_time_s
    # only then; a killed run has no wall_time_s and is continued instead
    return "wall_time_s" in meta


def _common(seed: int, steps: int, max_time: str | None, config: str | None, extra: list[str]) -> dict:
    """The keywords every cell's run gets (``kgc.run_pretraining`` / ``kgc.run_finetuning``: the CLI flags)."""
    return {"seed": seed, "max_steps": steps, "max_time": max_time, "config": config, "overrides": list(extra)}


def run_grid(dataset: str, pretrain_steps: int, finetune_steps: int, signal_sets: list[list[str]],
             seeds: list[int], runs_dir: str | Path, pretrain_config: str | None = None,
             finetune_config: str | None = None, finetune_max_time: str | None = None,
             pretrain_set: list[str] | None = None, finetune_set: list[str] | None = None,
             log=print) -> dict[str, list[str]]:
    """Run every missing cell of the grid; returns ``{"ran": [...], "skipped": [...]}`` (cell names)."""
    from kgc.api import run_finetuning, run_pretraining

    if pretrain_steps < 1 or finetune_steps < 1:
        raise KGCError("--budget-pretrain-steps and --budget-finetune-steps must be >= 1")
    grid = Path(runs_dir) / f"ablation-{Path(str(dataset)).name}"
    grid.mkdir(parents=True, exist_ok=True)
    done: dict[str, list[str]] = {"ran": [], "skipped": []}
    sets: list[list[str]] = [[]] + [s for i, s in enumerate(signal_sets) if s and s not in signal_sets[:i]]
    for seed in seeds:
        for signals in sets:
            tag = _tag(signals)
            ft = grid / f"finetune-{tag}-s{seed}"
            cell = f"{tag}/seed {seed}"
            if (ft / "metrics.json").is_file():
                log(f"[kgc] ablation: {cell} finished ({ft / 'metrics.json'}); skipping")
                done["skipped"].append(cell)
                continue
            init: dict[str, Any] = {"from_scratch": True}
            if signals:
                pt = grid / f"pretrain-{tag}-s{seed}"
                if _finished_pretrain(pt, pretrain_steps):
                    log(f"[kgc] ablation: reusing pretraining run {pt}")
                elif (pt / "checkpoints" / "last.ckpt").is_file():
                    log(f"[kgc] ablation: continuing pretraining run {pt}")
                    run_pretraining(resume=pt, max_steps=pretrain_steps)
                else:
                    if pt.exists():  # created but no checkpoint yet: nothing worth keeping
                        shutil.rmtree(pt)
                    log(f"[kgc] ablation: pretraining {tag} (seed {seed}, {pretrain_steps} steps) -> {pt}")
                    run_pretraining(str(dataset), signals=",".join(signals), out=pt, runs_root=grid,
                                    **_common(seed, pretrain_steps, None, pretrain_config, pretrain_set or []))
                init = {"init": pt / "checkpoints" / "last.ckpt"}
            if (ft / "checkpoints" / "last.ckpt").is_file() and (ft / "run.json").is_file():
                log(f"[kgc] ablation: continuing fine-tuning run {ft}")
                run_finetuning(resume=ft)
            else:
                if ft.exists():
                    shutil.rmtree(ft)
                log(f"[kgc] ablation: fine-tuning {tag} (seed {seed}, {finetune_steps} steps) -> {ft}")
                run_finetuning(str(dataset), out=ft, runs_root=grid, **init,
                               **_common(seed, finetune_steps, finetune_max_time, finetune_config, finetune_set or []))
            if not (ft / "metrics.json").is_file():
                raise KGCError(f"fine-tuning {ft} failed (no metrics.json)")
            done["ran"].append(cell)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kgc ablation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="registered name or folder")
    p.add_argument("--budget-pretrain-steps", type=int, required=True, help="optimiser steps per pretraining run")
    p.add_argument("--budget-finetune-steps", type=int, required=True, help="optimiser steps per fine-tuning run")
    p.add_argument("--budget-finetune-time", help="optional wall-clock cap per fine-tuning run (e.g. 30m)")
    p.add_argument("--signals-set", action="append", default=None, metavar="SIGNALS",
                   help="a signal set to pretrain on: 'all' or a comma list (repeatable; default: each single "
                        "signal and all). The no-pretraining cell is always run.")
    p.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    p.add_argument("--runs", default="runs", help="runs folder; the grid goes to <runs>/ablation-<dataset>/")
    p.add_argument("--pretrain-config", help="YAML config for the pretraining runs (kgc.pretrain --config)")
    p.add_argument("--finetune-config", help="YAML config for the fine-tuning runs (kgc.finetune --config)")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE", help="pretraining override")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE", help="fine-tuning override")
    p.add_argument("--out", help="report folder (default <runs>/ablation-<dataset>/report)")
    args = p.parse_args(argv)
    sets = [parse_signal_set(s) for s in (args.signals_set or [*SIGNALS, "all"])]
    seeds = parse_seeds(args.seeds)
    for path in (args.pretrain_config, args.finetune_config):
        if path and not Path(path).is_file():
            raise KGCError(f"{path}: config file not found")
    done = run_grid(args.dataset, args.budget_pretrain_steps, args.budget_finetune_steps, sets, seeds, args.runs,
                    args.pretrain_config, args.finetune_config, args.budget_finetune_time,
                    args.pretrain_set, args.finetune_set)
    grid = Path(args.runs) / f"ablation-{Path(str(args.dataset)).name}"
    from kgc.reports.build import build_report
    from kgc.reports.collect import collect_runs
    from kgc.reports.render import ablation_header_rows

    out = Path(args.out) if args.out else grid / "report"
    paths = build_report(grid, out)
    print(f"[kgc] ablation: {len(done['ran'])} cell(s) run, {len(done['skipped'])} already finished; "
          f"report in {paths['md']}")
    for table in ablation_tables(collect_runs(grid, warn=lambda m: None)):
        header, rows = ablation_header_rows(table)
        print(f"model {table.model}")
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_cli(main)
