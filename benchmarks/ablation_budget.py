"""Pretraining ablation at a budget (a thin wrapper over ``kgc.ablation``): machine header, threads, JSON.

    python benchmarks/ablation_budget.py --dataset fb15k237 --budget 30m --seeds 0,1,2
    python benchmarks/ablation_budget.py --dataset synthetic --budget 5m --seeds 0,1,2 --pretrain-fraction 0.3
    python benchmarks/ablation_budget.py --dataset umls --mode amortised --pretrain-time 10m --finetune-time 5m
    python benchmarks/ablation_budget.py --dataset synthetic --smoke          # CI: seconds

``--mode matched`` (default here): every cell gets the same total budget B; ``none`` fine-tunes from
scratch for B, a pretrained arm pretrains for F*B (``trainer.max_time``, per seed) and fine-tunes from
that checkpoint for (1-F)*B. ``--mode amortised``: one pretraining run per arm, then every arm x seed
fine-tunes for the same budget. The grid, its resumability, the shared architecture and the per-signal
table (mean ± sample std, Δ vs none, pooled std, z, Δ > 2 pooled std) are ``kgc.ablation``'s (its
``--help``). Here the step caps default to a very large number so the time is what binds (the CPU-budget
configs, the defaults here when they exist, end their learning-rate decay at the time budget:
``optim.horizon: time``). Cells live in ``<runs-root>/ablation-budget-<B>s-f<F>/ablation-<dataset>-matched/``
(matched) or ``<runs-root>/ablation-<dataset>-amortised/`` and are reused when re-run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BIG_CAP = 10**6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--mode", choices=("matched", "amortised"), default="matched")
    p.add_argument("--budget", default="10m", help="matched: total wall time per cell (pretraining + fine-tuning)")
    p.add_argument("--pretrain-fraction", type=float, default=0.3, help="matched: share of the budget spent pretraining")
    p.add_argument("--pretrain-time", help="amortised: wall-clock cap of each pretraining run")
    p.add_argument("--finetune-time", help="amortised: wall-clock cap of each fine-tuning run")
    p.add_argument("--pretrain-seed", type=int, default=0, help="amortised: seed of the one pretraining run per arm")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default="none,ig_path,all", help="kgc.ablation --arms (default none,ig_path,all)")
    p.add_argument("--signals-set", action="append", default=None, metavar="SIGNALS", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain-steps", type=int, help=f"step cap of a pretraining run (matched default {BIG_CAP}; "
                                                      "amortised: the config's)")
    p.add_argument("--finetune-steps", type=int, help=f"step cap of a fine-tuning run (matched default {BIG_CAP}; "
                                                      "amortised: the config's)")
    p.add_argument("--pretrain-config", help="default configs/pretrain/cpu-budget/<dataset>.yaml when it exists")
    p.add_argument("--finetune-config", help="default configs/finetune/cpu-budget/<dataset>.yaml when it exists")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs-root", default="runs/bench")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--smoke", action="store_true", help="CI: budget 8s, 2+2 steps, seed 0, tiny signals")
    args = p.parse_args(argv)

    C.set_threads(args.threads)
    args.pretrain_config = args.pretrain_config or C.cpu_budget_config("pretrain", args.dataset)
    args.finetune_config = args.finetune_config or C.cpu_budget_config("finetune", args.dataset)
    from kgc.ablation import parse_signal_set, report, run_ablation
    from kgc.reports.ablation import signal_tables
    from kgc.reports.collect import collect_runs, signals_label
    from kgc.reports.render import signal_header_rows

    arms = args.arms
    if args.signals_set:  # the old form: one arm per signal set
        arms = ",".join(["none"] + [signals_label(parse_signal_set(s)) for s in args.signals_set])
    seeds = "0" if args.smoke and args.seeds == "0,1,2" else args.seeds
    matched = args.mode == "matched"
    cap = BIG_CAP if matched else None
    pre_steps, ft_steps = (2, 2) if args.smoke else (args.pretrain_steps or cap, args.finetune_steps or cap)
    pre_set, ft_set = list(args.pretrain_set), list(args.finetune_set)
    if args.smoke:
        pre_set += ["signals.num_examples=64", "trainer.val_every=1000", "trainer.ckpt_every=2"]
        ft_set += ["trainer.val_every=2", "trainer.ckpt_every=2"]
    budget = "8s" if args.smoke and args.budget == "10m" else args.budget
    if matched:
        budget_s = C.parse_duration(budget)
        runs = Path(args.runs_root) / f"ablation-budget-{budget_s:.0f}s-f{args.pretrain_fraction:g}"
        times = {"budget": budget, "pretrain_fraction": args.pretrain_fraction}
    else:
        budget_s = None
        runs = Path(args.runs_root)
        times = {"pretrain_time": args.pretrain_time, "finetune_time": args.finetune_time,
                 "pretrain_seed": args.pretrain_seed}
    info = C.machine_info(args.threads)
    C.print_header(f"pretraining ablation ({args.mode}): {args.dataset}",
                   [__file__] + (argv if argv is not None else sys.argv[1:]), info)

    res = run_ablation(args.dataset, mode=args.mode, arms=arms, seeds=seeds, runs_dir=runs,
                       pretrain_steps=pre_steps, finetune_steps=ft_steps, pretrain_config=args.pretrain_config,
                       finetune_config=args.finetune_config, pretrain_set=pre_set, finetune_set=ft_set, **times)
    paths = report(res.grid, log=lambda m: None)
    (table,) = [t for t in signal_tables(collect_runs(res.grid, warn=lambda m: None))]
    header, rows = signal_header_rows(table)
    results = {r.arm: {"runs": [{"seed": s, "mrr": m, "hits@1": h1, "hits@10": h10, "pretrain_steps": ps,
                                 "pretrain_s": pw, "finetune_steps": fs}
                                for s, m, h1, h10, ps, pw, fs in zip(r.seeds, r.values["mrr"], r.values["hits@1"],
                                                                     r.values["hits@10"], r.pretrain_steps,
                                                                     r.pretrain_s, r.finetune_steps)],
                       **{k: list(v) for k, v in r.stats.items()}, "valid_mrr": r.valid_mrr, "vs_none": r.vs_none}
               for r in table.rows}
    print(f"\npretraining ablation ({args.mode}), {args.dataset} test (filtered), mean ± sample std over seeds; "
          f"grid {res.grid}; report {paths['ablation_md']}:")
    print(C.format_table(header, rows), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": args.dataset, "mode": args.mode, "budget_s": budget_s,
                             "pretrain_fraction": args.pretrain_fraction if matched else None, "grid": str(res.grid),
                             "cells_run": res.ran, "cells_skipped": res.skipped, "header": header, "rows": rows,
                             "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
