"""Filtered evaluation speed for the SAME embeddings: our chunked path vs PyKEEN's RankBasedEvaluator vs
the bare scoring matmul (the floor).

    python benchmarks/eval_speed.py --dataset wn18rr
    python benchmarks/eval_speed.py --dataset fb15k237
    python benchmarks/eval_speed.py --dataset umls --smoke        # CI: seconds

Embeddings: a DistMult-style model with seeded random unit-norm entity vectors and random relation
vectors (d=200 by default), every test triple ranked in both directions (tails ``(h, r, ?)`` and heads
``(?, r, t)``), filtered against train+valid+test, over all entities (kgc's full test set: PyKEEN is given
kgc's ids, so no triple is dropped). Timed, best of ``--repeats`` (PyKEEN: ``--pykeen-repeats``, default 1):

* floor: the query vectors and ``q @ E.T`` for every query, no ranking, in blocks of ``--block``, 64 and 128
  queries (the fastest counts);
* ours: FilterIndex lookup + ``filtered_ranks_from_vectors`` (the chunked CPU path ``kgc.evaluate`` uses);
  the index build (done once per dataset and memoised) is a separate row;
* PyKEEN: ``RankBasedEvaluator(filtered=True).evaluate`` with its batch size bounded so that its
  batch x entities x dim score tensor stays near 1 GiB (``--pykeen-batch-size`` overrides).
The MRR column checks that all paths rank the same scores. Ratios (last columns): time / floor and
PyKEEN time / this row's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _best(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="wn18rr")
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--block", type=int, default=512, help="queries per block of the floor and of ours")
    p.add_argument("--chunk-mb", type=int, default=256, help="our score-block memory bound")
    p.add_argument("--pykeen-batch-size", type=int)
    p.add_argument("--pykeen-repeats", type=int, default=1, help="PyKEEN is slow: best of this many (default 1)")
    p.add_argument("--no-pykeen", action="store_true")
    p.add_argument("--json")
    p.add_argument("--smoke", action="store_true", help="CI: one repeat")
    args = p.parse_args(argv)

    C.set_threads(args.threads)
    import torch

    from kgc.data import load_dataset
    from kgc.evaluation import FilterIndex, LinkPredictionQueries, filtered_ranks_from_vectors, policy_metrics

    repeats = 1 if args.smoke else args.repeats
    info = C.machine_info(args.threads)
    C.print_header(f"evaluation speed: {args.dataset}", [__file__] + (argv if argv is not None else sys.argv[1:]), info)
    ds = load_dataset(args.dataset)
    queries = LinkPredictionQueries.from_dataset(ds, "test")
    n_q, n_e = len(queries), ds.num_entities
    g = torch.Generator().manual_seed(0)
    ent = torch.nn.functional.normalize(torch.randn(n_e, args.dim, generator=g), dim=1)
    rel = torch.randn(ds.num_relations, args.dim, generator=g) / args.dim**0.5 * 4
    print(f"[bench] {ds.name}: {n_q} rankings ({len(ds.splits['test'])} test triples x 2) over {n_e} entities, "
          f"DistMult d={args.dim} (random, seeded)", flush=True)

    def qvecs(qs):  # DistMult is symmetric: (h, r, ?) and (?, r, t) both score e_ctx * w_r against E
        return ent[qs.context[:, 0]] * rel[qs.relation]

    def floor(block: int):
        s = 0.0
        for a in range(0, n_q, block):
            sc = qvecs(queries[a : a + block]) @ ent.T
            s += float(sc[0, 0])
        return s

    # the floor is the fastest blocking of the bare matmul: --block queries (what ours is handed) and
    # cache-sized blocks of 64/128 queries (what ours scores internally)
    floors = {blk: _best(lambda blk=blk: floor(blk), repeats)[0] for blk in sorted({args.block, 64, 128})}
    print("[bench] matmul floor by block: " + ", ".join(f"{b} queries {t:.2f}s" for b, t in floors.items()),
          flush=True)
    t_floor = min(floors.values())
    t_index, index = _best(lambda: FilterIndex.from_dataset(ds), 1)

    def ours():
        parts = []
        for a in range(0, n_q, args.block):
            qs = queries[a : a + args.block]
            indptr, indices = index.lookup(qs)
            parts.append(filtered_ranks_from_vectors(qvecs(qs), ent, qs.target, indptr, indices,
                                                     chunk_bytes=args.chunk_mb * 2**20, use_kernel=False))
        from kgc.evaluation import Ranks

        return Ranks.cat(parts)

    print(f"[bench] floor {t_floor:.2f}s, FilterIndex build {t_index:.2f}s", flush=True)
    t_ours, ranks = _best(ours, repeats)
    mrr_ours = policy_metrics(ranks, "realistic")["mrr"]
    print(f"[bench] ours {t_ours:.2f}s (MRR {mrr_ours:.6f})", flush=True)
    rows = [["matmul floor (scores only)", t_floor, None], ["ours: lookup + filtered_ranks_from_vectors", t_ours, mrr_ours],
            ["ours + FilterIndex build", t_ours + t_index, mrr_ours]]
    t_pk = None
    if not args.no_pykeen and C.pykeen_available():
        from pykeen.models import DistMult

        factories = C.pykeen_factories(ds, create_inverse_triples=False)
        model = DistMult(triples_factory=factories["train"], embedding_dim=args.dim, random_seed=0)
        with torch.no_grad():
            model.entity_representations[0]._embeddings.weight.copy_(ent)
            model.relation_representations[0]._embeddings.weight.copy_(rel)
        model.eval()
        bs = args.pykeen_batch_size or max(1, min(512, 2**30 // (n_e * args.dim * 4)))
        t_pk, res = _best(lambda: C.pykeen_eval(model, factories, ds.triples("test"), batch_size=bs),
                          args.pykeen_repeats)
        print(f"[bench] PyKEEN {t_pk:.2f}s (MRR {res['realistic']['mrr']:.6f})", flush=True)
        rows.append([f"PyKEEN {C.pykeen_version()} RankBasedEvaluator (batch {bs})", t_pk, res["realistic"]["mrr"]])
    elif not args.no_pykeen:
        print("[bench] PyKEEN is not installed; its row is skipped", flush=True)

    print(f"\nfiltered evaluation of {ds.name} test, both directions, {args.threads} threads, best of {repeats} (PyKEEN {args.pykeen_repeats}); "
          f"ratios: time / floor, PyKEEN time / time:")
    table = [[name, f"{t:.2f}", f"{n_q / t:,.0f}", "-" if m is None else f"{m:.6f}", C.ratio(t, t_floor),
              C.ratio(t_pk, t)] for name, t, m in rows]
    print(C.format_table(["method", "time s", "rankings/s", "MRR (realistic)", "time / floor", "PyKEEN / this"],
                         table), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": ds.name, "rankings": n_q,
                             "rows": [{"method": r[0], "time_s": r[1], "mrr": r[2]} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
