"""``shortest_path`` signal: shortest relational path generation.

Sequence: ``[TASK_shortest_path] s t [SEP] r1 e1 r2 e2 ... rk t [EOS]``.

Pairs: for each source ``s`` (entities with a train edge; ``pairs_per_node`` each
with ``num_examples=None``, else seeded permutations cycled to ``n``), BFS on the
**train** graph (:func:`graph_algos.shortest_path.bfs_distances`, depth
``max_distance = K``) gives the entities at distance ``1..K``; a distance ``d`` is
drawn uniformly among those present, then ``t`` uniformly among the entities at
distance ``d``.

Path: one shortest path from ``s`` to ``t`` (:func:`graph_algos.shortest_path.shortest_paths`,
a uniformly random one among the shortest, seeded) of at most ``max_path_length``
hops, with **every direct edge between s and t removed** (all facts linking the two,
any relation, both directions). So for ``d >= 2`` the path has ``d`` hops, and a
``d = 1`` pair asks for the shortest *alternative* path (distance counted without the
direct edges); pairs with no such path within ``max_path_length`` are dropped
(so fewer than ``n`` examples may come back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph_algos.shortest_path import bfs_distances, shortest_paths

from .base import Signal, active_entities, signal_rng
from .examples import SignalExamples, pack, path_target
from .random_walk import cycled_starts


@dataclass
class ShortestPathConfig:
    max_distance: int = 3            # K: sample t at BFS distance 1..K
    max_path_length: int = 4         # longest path generated (>= K; d = 1 pairs need >= 2)
    pairs_per_node: int = 1          # used when num_examples is None
    num_examples: int | None = None
    chunk_size: int = 512            # sources per BFS chunk (memory: chunk * num_entities int32)

    def validate(self) -> None:
        if self.max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {self.max_distance}")
        if self.max_path_length < self.max_distance:
            raise ValueError("max_path_length must be >= max_distance")
        if self.pairs_per_node < 1 or self.chunk_size < 1:
            raise ValueError("pairs_per_node and chunk_size must be >= 1")


def sample_pairs(graph, sources: np.ndarray, max_distance: int, rng: np.random.Generator,
                 chunk_size: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sources, targets, distance)`` for the sources that reach anything within ``max_distance``."""
    out_s, out_t, out_d = [], [], []
    K = max_distance
    for a in range(0, len(sources), chunk_size):
        src = sources[a : a + chunk_size]
        dist = bfs_distances(graph, src, max_depth=K)
        counts = np.stack([(dist == d).sum(1) for d in range(1, K + 1)], axis=1)  # (S, K)
        avail = counts > 0
        na = avail.sum(1)
        ok = na > 0
        # a uniformly drawn available distance: the j-th True of avail
        j = (rng.random(len(src)) * np.maximum(na, 1)).astype(np.int64)
        cum = np.cumsum(avail, axis=1)
        d = 1 + np.argmax(cum > j[:, None], axis=1)
        cnt = counts[np.arange(len(src)), d - 1]
        r = (rng.random(len(src)) * np.maximum(cnt, 1)).astype(np.int64)
        # the r-th entity (ascending id) at distance d
        hit = dist == d[:, None]
        rank = np.cumsum(hit, axis=1) - 1
        t = np.argmax(hit & (rank == r[:, None]), axis=1)
        out_s.append(src[ok])
        out_t.append(t[ok].astype(np.int64))
        out_d.append(d[ok].astype(np.int64))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
    return cat(out_s), cat(out_t), cat(out_d)


def direct_facts(graph, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pair, ``(number of edges s -> t, fact of the first one or -1)`` (vectorised)."""
    n = max(graph.num_nodes, 1)
    key = graph.src * n + graph.dst
    order = np.argsort(key, kind="stable")
    skey = key[order]
    q = s * n + t
    lo = np.searchsorted(skey, q, side="left")
    hi = np.searchsorted(skey, q, side="right")
    first = np.where(hi > lo, graph.fact[order[np.minimum(lo, len(order) - 1)]], -1) if len(order) else \
        np.full(len(s), -1)
    # number of distinct facts among those edges
    nf = np.zeros(len(s), dtype=np.int64)
    multi = np.flatnonzero(hi - lo > 1)
    nf[hi - lo == 1] = 1
    for i in multi:
        nf[i] = len(np.unique(graph.fact[order[lo[i] : hi[i]]]))
    return nf, first


def paths_without_direct(graph, s: np.ndarray, t: np.ndarray, max_len: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest paths with every direct ``s``-``t`` edge excluded -> ``(length, entities, labels)``.

    Pairs linked by one fact use ``exclude_fact`` (both directions of that fact);
    pairs linked by several facts are solved one by one with an edge mask.
    """
    nf, first = direct_facts(graph, s, t)
    excl = np.where(nf == 1, first, -1)
    length, ents, labs = shortest_paths(graph, s, t, max_len, exclude_fact=excl, seed=rng)
    multi = np.flatnonzero(nf > 1)
    if len(multi):
        mask = np.ones(graph.num_edges, dtype=bool)
        for i in multi:
            a, b = graph.indptr[s[i]], graph.indptr[s[i] + 1]
            e1 = a + np.flatnonzero(graph.dst[a:b] == t[i])
            a, b = graph.indptr[t[i]], graph.indptr[t[i] + 1]
            e2 = a + np.flatnonzero(graph.dst[a:b] == s[i])
            mask[e1] = False
            mask[e2] = False
            li, ei, bi = shortest_paths(graph, s[i : i + 1], t[i : i + 1], max_len, edge_mask=mask, seed=rng)
            length[i], ents[i], labs[i] = li[0], ei[0], bi[0]
            mask[e1] = True
            mask[e2] = True
    return length, ents, labs


class ShortestPathSignal(Signal):
    name = "shortest_path"
    Config = ShortestPathConfig

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:
        cfg = self.config
        rng = signal_rng(seed, self.name)
        ents = active_entities(graph)
        if num_examples is None:
            sources = np.repeat(ents, cfg.pairs_per_node)
        else:
            sources = cycled_starts(ents, num_examples, rng)
        s, t, d = sample_pairs(graph, sources, cfg.max_distance, rng, cfg.chunk_size)
        length, pe, pl = paths_without_direct(graph, s, t, cfg.max_path_length, rng)
        keep = length > 0
        s, t, length, pe, pl = s[keep], t[keep], length[keep], pe[keep], pl[keep]
        target = path_target(vocab, pl, pe)
        prompt = np.stack([vocab.ent(s), vocab.ent(t)], axis=1)
        return pack(self.name, vocab.task(self.name), vocab.sep, vocab.eos, prompt, target, 2 * length, source=s)
