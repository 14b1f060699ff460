"""Relational random walks, many at once.

Each step picks one out-edge of the current entity (inverse and clique-expansion
edges included, parallel edges counted separately) uniformly at random, or,
with ``p != 1`` or ``q != 1``, with node2vec's second-order bias relative to the
previous entity ``u``: weight ``1/p`` to return to ``u``, ``1`` to an entity
adjacent to ``u``, ``1/q`` otherwise (exact, by vectorised rejection sampling
against the uniform proposal; the first step is uniform).

A walk that reaches an entity without out-edges stops: the remaining entity
and label positions are ``-1``.

Example (a path 0 -r0-> 1 -r0-> 2; every walk from 0 of length 2 returns or goes on)::

    >>> import numpy as np
    >>> from graph_algos.graph import KGraph
    >>> g = KGraph.from_facts(np.array([[0, 0, 1], [0, 1, 2]]), num_entities=4, num_relations=1)
    >>> ents, labs = random_walk(g, np.array([0, 3]), length=2, seed=0)
    >>> ents.shape, labs.shape
    ((2, 3), (2, 2))
    >>> ents[1].tolist(), labs[1].tolist()      # entity 3 has no edges
    ([3, -1, -1], [-1, -1])
    >>> int(ents[0, 1]), int(labs[0, 0])        # 0's only out-edge is 0 -r0-> 1
    (1, 0)
"""

from __future__ import annotations

import numpy as np

from kgc.errors import KGCError
from graph_algos.graph import KGraph, check_nodes

__all__ = ["random_walk"]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def random_walk(
    g: KGraph,
    starts,
    length: int,
    p: float = 1.0,
    q: float = 1.0,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Walk ``length`` steps from each of ``starts (S,)``.

    Returns ``entities (S, length + 1)`` int64 (``entities[:, 0] == starts``) and
    ``labels (S, length)`` int64, where ``labels[s, i]`` is the label of the edge
    ``entities[s, i] -> entities[s, i + 1]``; ``-1`` after a dead end.
    """
    starts = check_nodes(g, starts, "starts")
    if length < 0:
        raise KGCError(f"length: must be >= 0, got {length}")
    if not (p > 0 and q > 0):
        raise KGCError(f"p, q: must be > 0, got p={p}, q={q}")
    rng = _rng(seed)
    S = starts.shape[0]
    ents = np.full((S, length + 1), -1, np.int64)
    labs = np.full((S, length), -1, np.int64)
    ents[:, 0] = starts
    biased = p != 1.0 or q != 1.0
    if biased:
        n = max(g.num_nodes, 1)
        sind = g.simple_indptr
        skey = np.repeat(np.arange(g.num_nodes, dtype=np.int64), np.diff(sind)) * n + g.simple_indices
        w_ret, w_in, w_out = 1.0 / p, 1.0, 1.0 / q
        w_max = max(w_ret, w_in, w_out)
    deg_all = g.out_degree
    cur = starts.copy()
    alive = np.arange(S)
    alive = alive[deg_all[cur[alive]] > 0]
    for i in range(length):
        if alive.size == 0:
            break
        v = cur[alive]
        base, deg = g.indptr[v], deg_all[v]
        if not biased or i == 0:
            e = base + (rng.random(alive.size) * deg).astype(np.int64)
        else:
            prev = ents[alive, i - 1]
            e = np.empty(alive.size, np.int64)
            todo = np.arange(alive.size)
            while todo.size:
                prop = base[todo] + (rng.random(todo.size) * deg[todo]).astype(np.int64)
                x, u = g.dst[prop], prev[todo]
                k = u * n + x
                pos = np.minimum(np.searchsorted(skey, k), max(skey.size - 1, 0))
                adj = skey[pos] == k if skey.size else np.zeros(todo.size, bool)
                w = np.where(x == u, w_ret, np.where(adj, w_in, w_out))
                acc = rng.random(todo.size) * w_max < w
                e[todo[acc]] = prop[acc]
                todo = todo[~acc]
        nxt = g.dst[e]
        ents[alive, i + 1] = nxt
        labs[alive, i] = g.label[e]
        cur[alive] = nxt
        alive = alive[deg_all[nxt] > 0]
    return ents, labs
