"""1..k-hop neighbourhoods of many centres, with a per-centre item budget.

For a centre ``c`` the neighbourhood is every entity ``v != c`` at hop distance
``1 <= h <= k`` (following out-edges, which include inverses). Each such entity
is one item ``(hop, label, entity)``; ``label`` is the label of the edge by
which BFS first reached it from an entity at hop ``h - 1`` (CSR order: lowest
parent in BFS order, then lowest label).

**Order.** Items of a centre are sorted by ``(hop, entity)``.

**Budget.** With ``budget=B`` a centre keeps at most ``B`` items: all items of
the nearest hops while they fit, and a random sample (without replacement) of
the hop where the budget runs out; farther hops are dropped (and not even
explored). ``sampling="uniform"`` samples uniformly (partial Fisher-Yates);
``"degree"`` samples with
probability proportional to ``log(1 + out_degree)`` (hubs are preferred but do
not crowd out the rest), via Efraimidis-Spirakis keys.

``seed`` makes the sampling reproducible.

Output is CSR over centres: ``ptr (C + 1,)`` and ``hop, label, entity (T,)``;
the items of centre ``i`` are ``ptr[i]:ptr[i+1]``.

Example (a star 0 -r0-> {1, 2}, then 2 -r1-> 3)::

    >>> import numpy as np
    >>> from graph_algos.graph import KGraph
    >>> g = KGraph.from_facts(np.array([[0, 0, 1], [0, 0, 2], [1, 2, 3]]), num_entities=4, num_relations=2)
    >>> ptr, hop, lab, ent = khop(g, np.array([0, 3]), k=2)
    >>> ptr.tolist()
    [0, 3, 5]
    >>> hop.tolist(), lab.tolist(), ent.tolist()
    ([1, 1, 2, 1, 2], [0, 0, 1, 3, 2], [1, 2, 3, 2, 0])
    >>> khop(g, np.array([0]), k=2, budget=2)[3].tolist()   # both hop-1 items fit exactly
    [1, 2]
"""

from __future__ import annotations

import numba
import numpy as np

from kgc.errors import KGCError
from graph_algos.graph import KGraph, check_nodes

__all__ = ["khop"]


@numba.njit(cache=True, nogil=True)
def _khop(indptr, dst, label, centres, k, budget, degree_aware, wdeg, seed):
    n = indptr.shape[0] - 1
    np.random.seed(seed)
    hopv = np.full(n, -1, np.int64)
    queue = np.empty(n, np.int64)
    qlab = np.empty(n, np.int64)
    counts = np.zeros(centres.shape[0], np.int64)
    cap = 1024
    out_hop = np.empty(cap, np.int64)
    out_lab = np.empty(cap, np.int64)
    out_ent = np.empty(cap, np.int64)
    total = 0
    for i in range(centres.shape[0]):
        c = centres[i]
        hopv[c] = 0
        queue[0] = c
        head, tail = 0, 1
        level_end = 1  # queue index where the current level ends
        level = 0
        while head < tail and level < k:
            # the budget is already filled by hops <= level: do not explore farther
            if budget >= 0 and tail - 1 >= budget:
                break
            while head < level_end:
                v = queue[head]
                head += 1
                for e in range(indptr[v], indptr[v + 1]):
                    u = dst[e]
                    if hopv[u] < 0:
                        hopv[u] = level + 1
                        queue[tail] = u
                        qlab[tail] = label[e]
                        tail += 1
            level += 1
            level_end = tail
        m = tail - 1
        if budget >= 0 and m > budget:
            m = budget
        if total + m > cap:
            while total + m > cap:
                cap *= 2
            nh = np.empty(cap, np.int64)
            nl = np.empty(cap, np.int64)
            ne = np.empty(cap, np.int64)
            nh[:total] = out_hop[:total]
            nl[:total] = out_lab[:total]
            ne[:total] = out_ent[:total]
            out_hop, out_lab, out_ent = nh, nl, ne
        # emit level by level, entities ascending; the level where the budget runs out is sampled
        a = 1
        kept = 0
        while a < tail and kept < m:
            h = hopv[queue[a]]
            z = a
            while z < tail and hopv[queue[z]] == h:
                z += 1
            seg = np.arange(a, z)  # queue positions of this hop
            need = m - kept
            if z - a > need:
                if degree_aware:  # Efraimidis-Spirakis: the `need` largest u^(1/w)
                    keys = np.empty(z - a, np.float64)
                    for j in range(z - a):
                        keys[j] = np.log(np.random.random() + 1e-300) / wdeg[queue[seg[j]]]
                    seg = seg[np.argsort(-keys)[:need]]
                else:  # partial Fisher-Yates
                    for j in range(need):
                        r = j + np.random.randint(0, z - a - j)
                        tmp = seg[j]
                        seg[j] = seg[r]
                        seg[r] = tmp
                    seg = seg[:need]
            ents = queue[seg]
            order = np.argsort(ents)
            for j in range(seg.shape[0]):
                out_hop[total] = h
                out_lab[total] = qlab[seg[order[j]]]
                out_ent[total] = ents[order[j]]
                total += 1
            kept += seg.shape[0]
            a = z
        counts[i] = kept
        for j in range(tail):
            hopv[queue[j]] = -1
    return counts, out_hop[:total], out_lab[:total], out_ent[:total]


def khop(
    g: KGraph,
    centres,
    k: int,
    budget: int | None = None,
    sampling: str = "uniform",
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbourhoods of ``centres (C,)`` up to ``k`` hops -> ``(ptr, hop, label, entity)``; see module doc."""
    centres = check_nodes(g, centres, "centres")
    if k < 0:
        raise KGCError(f"k: must be >= 0, got {k}")
    if budget is not None and budget < 0:
        raise KGCError(f"budget: must be >= 0 or None, got {budget}")
    if sampling not in ("uniform", "degree"):
        raise KGCError(f"sampling: expected 'uniform' or 'degree', got {sampling!r}")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    elif isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**31))
    wdeg = np.log1p(g.out_degree.astype(np.float64))
    counts, hop, lab, ent = _khop(g.indptr, g.dst, g.label, centres, int(k), -1 if budget is None else int(budget),
                                  sampling == "degree", wdeg, int(seed))
    ptr = np.zeros(centres.shape[0] + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, hop, lab, ent
