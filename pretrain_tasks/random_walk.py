"""``random_walk`` signal: relational random-walk *generation*.

Sequence: ``[TASK_random_walk] e0 [SEP] r1 e1 r2 e2 ... rL eL [EOS]``.

Given the start entity (prompt), the model generates the walk (next-token
prediction over the target; we chose walk generation over masked-token
modelling so that all five signals share one prefix-LM objective). Walks come
from :func:`graph_algos.random_walk.random_walk` on the **train** graph: each
step follows an out-edge (inverse ``r^-1`` and n-ary role-pair labels included)
uniformly, or node2vec-biased with ``p``/``q``. A walk that reaches an entity
without out-edges ends there (shorter target); walks of length 0 are dropped.

Starts: with ``num_examples=None``, ``walks_per_node`` walks from every entity with
a train edge; with ``num_examples=n``, the seeded permutation of those entities is
repeated (cycled) until ``n`` starts, so coverage is as even as possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph_algos.random_walk import random_walk

from .base import Signal, active_entities, signal_rng
from .examples import SignalExamples, pack, path_target


@dataclass
class RandomWalkConfig:
    length: int = 6          # steps L (target = 2L tokens)
    walks_per_node: int = 1  # used when num_examples is None
    p: float = 1.0           # node2vec return parameter (1 = unbiased)
    q: float = 1.0           # node2vec in-out parameter (1 = unbiased)
    num_examples: int | None = None

    def validate(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if self.walks_per_node < 1:
            raise ValueError(f"walks_per_node must be >= 1, got {self.walks_per_node}")
        if not (self.p > 0 and self.q > 0):
            raise ValueError(f"p and q must be > 0, got p={self.p}, q={self.q}")


def cycled_starts(ents: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` start entities: seeded permutations of ``ents`` concatenated, cut to ``n``."""
    reps = -(-n // max(len(ents), 1))
    return np.concatenate([rng.permutation(ents) for _ in range(reps)])[:n]


class RandomWalkSignal(Signal):
    name = "random_walk"
    Config = RandomWalkConfig

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:
        cfg = self.config
        rng = signal_rng(seed, self.name)
        ents = active_entities(graph)
        if num_examples is None:
            starts = np.repeat(ents, cfg.walks_per_node)
        else:
            starts = cycled_starts(ents, num_examples, rng)
        walk_e, walk_l = random_walk(graph, starts, cfg.length, p=cfg.p, q=cfg.q, seed=rng)
        steps = (walk_l >= 0).sum(1)
        keep = steps > 0
        walk_e, walk_l, steps, starts = walk_e[keep], walk_l[keep], steps[keep], starts[keep]
        target = path_target(vocab, walk_l, walk_e)
        return pack(self.name, vocab.task(self.name), vocab.sep, vocab.eos, vocab.ent(starts)[:, None],
                    target, 2 * steps, source=starts)
