"""``ig_path`` signal: information-gain-guided path finding (the paper's new signal).

Sequence: ``[TASK_ig_path] h r t [SEP] r1 e1 r2 e2 ... rk t [EOS]``.

For a **train** fact ``r(h, t)`` (n-ary facts: ``h = e_1``, ``t = e_2``, label ``r``)
the target is the best path of :func:`graph_algos.ig_path.ig_paths` (beam search,
highest information gain ``log E - log |A(h, p)|``, ties by shorter length, then
lower-degree intermediates) with **all edges of that fact removed**, as labels and
the entity chain realising it. With ``inverse=True`` each fact is also asked
backwards: prompt ``t r^-1 h`` (label ``r + R``), path from ``t`` to ``h`` (same
fact excluded). Facts with no path of at most ``K`` hops are dropped.

Pool: every train fact (and its reverse with ``inverse``); ``num_examples=None``
uses the whole pool, ``n`` a seeded sample without replacement (capped at the pool
size). ``source`` is the train fact row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph_algos.ig_path import ig_paths

from .base import Signal, signal_rng
from .examples import SignalExamples, pack, path_target


@dataclass
class IGPathConfig:
    K: int = 3              # maximal path length
    beam: int = 4           # paths kept per depth
    inverse: bool = True    # also ask (t, r^-1, h)
    num_examples: int | None = 20000

    def validate(self) -> None:
        if self.K < 1 or self.beam < 1:
            raise ValueError(f"K and beam must be >= 1, got K={self.K}, beam={self.beam}")


def train_facts(dataset) -> np.ndarray:
    f = dataset.splits["train"]
    return (f.numpy() if hasattr(f, "numpy") else np.asarray(f)).astype(np.int64)


class IGPathSignal(Signal):
    name = "ig_path"
    Config = IGPathConfig

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:
        cfg = self.config
        facts = train_facts(dataset)
        nf = len(facts)
        pool = np.arange(nf * (2 if cfg.inverse else 1), dtype=np.int64)  # >= nf: reversed fact pool - nf
        if num_examples is not None and num_examples < len(pool):
            rng = signal_rng(seed, self.name)
            pool = np.sort(rng.choice(pool, size=num_examples, replace=False))
        fwd, bwd = pool[pool < nf], pool[pool >= nf] - nf
        R = graph.num_relations
        parts = []
        for ids, reverse in ((fwd, False), (bwd, True)):
            if not len(ids):
                continue
            f = facts
            if reverse:
                f = facts.copy()
                f[:, [1, 2]] = facts[:, [2, 1]]
            res = ig_paths(graph, f, fact_ids=ids, K=cfg.K, beam=cfg.beam)
            ok = res.length > 0
            ids_ok = ids[ok]
            h, t = f[ids_ok, 1], f[ids_ok, 2]
            lab = f[ids_ok, 0] + (R if reverse else 0)
            parts.append((ids_ok, h, lab, t, res.length[ok], res.labels[ok], res.entities[ok]))
        if not parts:
            return SignalExamples.empty(self.name)
        ids, h, lab, t, length, pl, pe = (np.concatenate(x) for x in zip(*parts))
        target = path_target(vocab, pl, pe)
        prompt = np.stack([vocab.ent(h), vocab.rel(lab), vocab.ent(t)], axis=1)
        return pack(self.name, vocab.task(self.name), vocab.sep, vocab.eos, prompt, target, 2 * length, source=ids)
