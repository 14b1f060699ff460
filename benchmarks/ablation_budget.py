"""Pretraining ablation at a matched total wall-clock budget: no pretraining vs ig_path vs all, over seeds.

    python benchmarks/ablation_budget.py --dataset fb15k237 --budget 30m --seeds 0,1,2
    python benchmarks/ablation_budget.py --dataset synthetic --budget 5m --seeds 0,1,2 --pretrain-fraction 0.3
    python benchmarks/ablation_budget.py --dataset synthetic --smoke          # CI: seconds

Built on ``kgc.ablation.run_grid`` (the leaderboard's resumable grid): every cell gets the same total
budget B. "none" fine-tunes from scratch for B; a signal set pretrains for F*B (``trainer.max_time``)
and fine-tunes from that checkpoint for (1-F)*B. Step caps default to a very large number so the time
is what binds (then the cosine schedule's horizon is never reached: the learning rate stays near its
peak - the same for every cell; pass --pretrain-steps/--finetune-steps to change that). Cells live in
``<runs-root>/ablation-budget-<B>s-f<F>/ablation-<dataset>/`` and are reused when re-run (resumable).
The table (last) shows mean and sample standard deviation over seeds and the ratio to "none".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

KEYS = ("mrr", "hits@1", "hits@3", "hits@10")


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--budget", default="10m", help="total wall time per cell (pretraining + fine-tuning)")
    p.add_argument("--pretrain-fraction", type=float, default=0.3, help="share of the budget spent pretraining")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--signals-set", action="append", default=None, metavar="SIGNALS",
                   help="signal set to pretrain on ('all' or a comma list; repeatable; default: ig_path and all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pretrain-steps", type=int, default=10**6)
    p.add_argument("--finetune-steps", type=int, default=10**6)
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
    from kgc.ablation import parse_seeds, parse_signal_set, run_grid
    from kgc.reports.collect import signals_label

    if not 0 < args.pretrain_fraction < 1:
        raise SystemExit("--pretrain-fraction must be in (0, 1)")
    budget_s = C.parse_duration("8s" if args.smoke and args.budget == "10m" else args.budget)
    seeds = parse_seeds("0" if args.smoke and args.seeds == "0,1,2" else args.seeds)
    sets = [parse_signal_set(s) for s in (args.signals_set or ["ig_path", "all"])]
    pre_steps, ft_steps = (2, 2) if args.smoke else (args.pretrain_steps, args.finetune_steps)
    pre_set, ft_set = list(args.pretrain_set), list(args.finetune_set)
    if args.smoke:
        pre_set += ["signals.num_examples=64", "trainer.val_every=1000", "trainer.ckpt_every=2"]
        ft_set += ["trainer.val_every=2", "trainer.ckpt_every=2"]
    info = C.machine_info(args.threads)
    C.print_header(f"pretraining ablation at budget: {args.dataset}",
                   [__file__] + (argv if argv is not None else sys.argv[1:]), info)
    pt_s = budget_s * args.pretrain_fraction
    ft_s = budget_s - pt_s
    root = Path(args.runs_root) / f"ablation-budget-{budget_s:.0f}s-f{args.pretrain_fraction:g}"
    print(f"[bench] budget {budget_s:.0f}s per cell: none = fine-tune {budget_s:.0f}s; "
          f"pretrained = {pt_s:.0f}s pretraining + {ft_s:.0f}s fine-tuning; seeds {seeds}; grid {root}", flush=True)

    # 1. the no-pretraining cells get the whole budget for fine-tuning
    run_grid(args.dataset, pre_steps, ft_steps, [], seeds, root, args.pretrain_config, args.finetune_config,
             C.fmt_duration(budget_s), pre_set, ft_set)
    # 2. the pretrained cells split it (run_grid skips the finished "none" cells)
    run_grid(args.dataset, pre_steps, ft_steps, sets, seeds, root, args.pretrain_config, args.finetune_config,
             C.fmt_duration(ft_s), pre_set + [f"trainer.max_time={C.fmt_duration(pt_s)}"], ft_set)

    grid = root / f"ablation-{Path(str(args.dataset)).name}"
    results: dict[str, dict] = {}
    for label in ["none"] + [signals_label(s) for s in sets]:
        runs = []
        for seed in seeds:
            mp = grid / f"finetune-{label}-s{seed}" / "metrics.json"
            m = json.loads(mp.read_text())
            runs.append({"seed": seed, **{k: m["metrics"][k] for k in KEYS}, "pretrain_steps": m.get("pretrain_steps", 0),
                         "finetune_steps": m.get("finetune_steps", 0), "run": m.get("run")})
        results[label] = {"runs": runs, **{k: _stats([r[k] for r in runs]) for k in KEYS}}
    base = results["none"]["mrr"][0]
    rows = []
    for label, r in results.items():
        rows.append([label, f"{0 if label == 'none' else pt_s:.0f}s + {budget_s if label == 'none' else ft_s:.0f}s",
                     ", ".join(f"{x['pretrain_steps']}+{x['finetune_steps']}" for x in r["runs"]), len(r["runs"]),
                     f"{r['mrr'][0]:.4f} ± {r['mrr'][1]:.4f}", f"{r['hits@1'][0]:.4f} ± {r['hits@1'][1]:.4f}",
                     f"{r['hits@10'][0]:.4f} ± {r['hits@10'][1]:.4f}", f"{r['mrr'][0] - base:+.4f}",
                     C.ratio(r["mrr"][0], base, 3)])
    print(f"\npretraining ablation, {args.dataset} test (realistic, filtered), mean ± sample std over seeds; "
          f"ratio = MRR / none:")
    print(C.format_table(["signals", "pretrain + finetune", "steps per seed (pt+ft)", "seeds", "MRR", "H@1", "H@10",
                          "Δ MRR vs none", "MRR / none"], rows), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": args.dataset, "budget_s": budget_s,
                             "pretrain_fraction": args.pretrain_fraction, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
