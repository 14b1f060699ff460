"""``khop`` signal: k-hop neighbourhood generation.

Sequence: ``[TASK_khop] c [SEP] HOP_h1 r1 e1 HOP_h2 r2 e2 ... [EOS]``.

Items come from :func:`graph_algos.khop.khop` on the **train** graph: every
entity ``e != c`` within ``k`` hops is one item ``(hop h, label r, entity e)``,
where ``r`` labels an edge from an entity at hop ``h - 1`` to ``e`` (the edge by
which BFS first reached ``e``). **Order**: by hop, then entity id (ascending).
**Budget**: at most ``max_tokens // 3`` items; all items of the nearest hops while
they fit, then a seeded sample (``sampling``: ``uniform`` or ``degree``) of the
hop where the budget runs out; farther hops are dropped. ``k <= vocab.max_hops``.

Centres: with ``num_examples=None`` every entity with a train edge once
(ascending); with ``n``, seeded permutations of them cycled to ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from graph_algos.khop import khop
from kgc.errors import KGCError

from .base import Signal, active_entities, signal_rng
from .examples import SignalExamples, pack
from .random_walk import cycled_starts


@dataclass
class KHopConfig:
    k: int = 2
    max_tokens: int = 48            # target token budget (3 tokens per item)
    sampling: Literal["uniform", "degree"] = "uniform"
    num_examples: int | None = None

    def validate(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.max_tokens < 3:
            raise ValueError(f"max_tokens must be >= 3 (one item), got {self.max_tokens}")


class KHopSignal(Signal):
    name = "khop"
    Config = KHopConfig

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:
        cfg = self.config
        if cfg.k > vocab.max_hops:
            raise KGCError(f"khop: k={cfg.k} exceeds the vocabulary's max_hops={vocab.max_hops}")
        rng = signal_rng(seed, self.name)
        ents = active_entities(graph)
        centres = ents if num_examples is None else cycled_starts(ents, num_examples, rng)
        budget = cfg.max_tokens // 3
        ptr, hop, lab, ent = khop(graph, centres, cfg.k, budget=budget, sampling=cfg.sampling, seed=rng)
        counts = np.diff(ptr)
        keep = counts > 0
        n, width = len(centres), int(counts.max()) if len(counts) else 0
        owner = np.repeat(np.arange(n), counts)
        pos = np.arange(len(hop)) - ptr[owner]
        target = np.zeros((n, max(width, 1), 3), dtype=np.int64)
        target[owner, pos, 0] = vocab.hop(1) + hop - 1
        target[owner, pos, 1] = vocab.rel(lab)
        target[owner, pos, 2] = vocab.ent(ent)
        target = target.reshape(n, -1)
        return pack(self.name, vocab.task(self.name), vocab.sep, vocab.eos, vocab.ent(centres[keep])[:, None],
                    target[keep], 3 * counts[keep], source=centres[keep])
