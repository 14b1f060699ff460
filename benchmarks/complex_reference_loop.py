"""A bare ComplEx training loop (no Transformer, no Lightning): the reference of issue 14's diagnosis.

    python benchmarks/complex_reference_loop.py --dataset wn18rr --steps 400 --lr 1e-2

KvsAll 1-N targets over the distinct train queries (both directions, inverse labels), label
smoothing 0.1, Adam, batch 256, D real dims (D/2 complex), entity init N(0, init_std); prints the
loss every 100 steps and the filtered validation MRR (kgc's evaluator) at the end. It answers "how
fast can the identity path alone learn at a KG-embedding learning rate?" (WN18RR, 400 steps, lr 1e-2:
valid 0.229 in 151 s on 2 cores; docs/benchmarks.md, "Learning the graph").
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="wn18rr")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--init-std", type=float, default=0.02)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from kgc.data import load_dataset
    from kgc.evaluation import LinkPredictionQueries, evaluate
    from kgc.models.base import _cmul
    from kgc.training.lp_data import kvsall_queries

    torch.manual_seed(args.seed)
    ds = load_dataset(args.dataset)
    uniq, (indptr, indices) = kvsall_queries(LinkPredictionQueries.from_dataset(ds, "train"), ds.num_entities)
    E = ds.num_entities
    ent = torch.nn.Parameter(torch.randn(E, args.dim) * args.init_std)
    rel = torch.nn.Parameter(torch.randn(2 * ds.num_relations, args.dim))
    opt = torch.optim.Adam([ent, rel], lr=args.lr)
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(uniq), (args.batch_size,))
        q = uniq[idx]
        logits = _cmul(ent[q.context[:, 0]], rel[q.label]) @ ent.T  # (B, E)
        counts = indptr[idx + 1] - indptr[idx]
        rows = torch.repeat_interleave(torch.arange(args.batch_size), counts)
        cols = torch.cat([indices[indptr[i]:indptr[i + 1]] for i in idx.tolist()])
        target = torch.zeros(args.batch_size, E)
        target[rows, cols] = 1.0 / counts[rows].float()
        loss = F.cross_entropy(logits, target, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)

    def score(qs):
        with torch.no_grad():
            return _cmul(ent[qs.context[:, 0]], rel[qs.label]) @ ent.T

    print(f"valid MRR {evaluate(score, ds, 'valid').mrr:.4f} after {args.steps} steps, {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
