"""``python -m kgc.evaluate``: filtered link-prediction metrics of any kgc checkpoint.

    python -m kgc.evaluate --checkpoint runs/<run>/checkpoints/best.ckpt --dataset fb15k237 [--split test] [--json]

Ranks every query of the split against all entities, filtered by the known
facts of train+valid+test; prints realistic-rank metrics (the headline),
pessimistic ones beside them, and per-direction/relation/arity breakdowns
with ``--json``. ``--out FILE`` also writes the JSON atomically.
"""

from __future__ import annotations

import argparse
import json

from kgc.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    from kgc.evaluation.evaluator import ModelScorer, evaluate
    from kgc.evaluation.ranks import TIE_POLICIES
    from kgc.training.restore import dataset_for, load_model
    from kgc.utils.io import write_json

    p = argparse.ArgumentParser(prog="kgc evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a kgc checkpoint (.ckpt)")
    p.add_argument("--dataset", help="dataset name or folder (default: the checkpoint's dataset)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--tie-policy", default="realistic", choices=list(TIE_POLICIES))
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--unfiltered", action="store_true", help="raw ranks (no filtering of known facts)")
    p.add_argument("--max-queries", type=int, metavar="N",
                   help="rank a fixed seeded subsample of N queries of the split (e.g. --split train: can it fit train?)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    model, vocab, meta = load_model(args.checkpoint)
    ds = dataset_for(vocab, args.dataset or meta.get("dataset_source"))
    queries = None
    if args.max_queries is not None:
        import numpy as np
        import torch

        from kgc.errors import KGCError
        from kgc.evaluation.queries import LinkPredictionQueries

        if args.max_queries < 1:
            raise KGCError(f"--max-queries must be >= 1, got {args.max_queries}")
        queries = LinkPredictionQueries.from_dataset(ds, args.split)
        if len(queries) > args.max_queries:
            pick = np.sort(np.random.default_rng([0, 31]).choice(len(queries), args.max_queries, replace=False))
            queries = queries[torch.from_numpy(pick)]
    result = evaluate(ModelScorer(model, vocab), ds, args.split, batch_size=args.batch_size,
                      tie_policy=args.tie_policy, filtered=not args.unfiltered, distributed=False, queries=queries)
    out = {**result.to_dict(), "checkpoint": str(args.checkpoint), "model": meta.get("model", {}).get("name"),
           "kind": meta.get("kind")}
    if args.out:
        write_json(args.out, out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(result.summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
