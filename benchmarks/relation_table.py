"""Per-relation test MRR of a finished fine-tuning run beside the relation-frequency prior.

    python benchmarks/relation_table.py --metrics runs/<run>/metrics.json

Reads the run's per-relation breakdown (``metrics.json``, headline tie policy) and evaluates
``kgc.evaluation.prior.RelationPrior`` on the same dataset and split, then prints one Markdown row
per relation: queries (both directions), the run's MRR, the prior's MRR and the difference, plus
the share of the relation's test facts whose reverse ``(t, r, h)`` is a train fact (the facts a
context pointer can read off the graph).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--metrics", required=True, help="metrics.json of a kgc.finetune run")
    args = p.parse_args(argv)

    from kgc.data import load_dataset
    from kgc.evaluation import evaluate
    from kgc.evaluation.prior import RelationPrior

    m = json.loads(open(args.metrics).read())
    ds = load_dataset(m["dataset"])
    prior = evaluate(RelationPrior(ds), ds, m["split"], tie_policy=m["tie_policy"])
    run_rel = m["breakdowns"]["relation"]
    prior_rel = prior.breakdowns["relation"]
    reverse = {}
    if ds.is_binary:
        train = {tuple(x) for x in ds.splits["train"].tolist()}
        test = ds.splits[m["split"]].tolist()
        for r, h, t in test:
            name = ds.relation_names[r]
            hit, n = reverse.get(name, (0, 0))
            reverse[name] = (hit + int((r, t, h) in train), n + 1)
    print(f"{m['dataset']} {m['split']} ({m['tie_policy']}), run {m['run']}: MRR {m['metrics']['mrr']:.4f}, "
          f"prior {prior.mrr:.4f}")
    print("| relation | queries | kgc MRR | prior MRR | kgc - prior | test facts with reverse in train |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in sorted(run_rel, key=lambda k: -run_rel[k]["count"]):
        a, b = run_rel[name], prior_rel.get(name, {"mrr": float("nan")})
        hit, n = reverse.get(name, (0, 0))
        share = f"{hit / n:.0%}" if n else "-"
        print(f"| {name} | {int(a['count'])} | {a['mrr']:.4f} | {b['mrr']:.4f} | {a['mrr'] - b['mrr']:+.4f} | {share} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
