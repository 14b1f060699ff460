"""Query contexts: the train-graph edges around a link-prediction query's known entities.

A contextual link-prediction query (issue 14, ``docs/decisions.md`` "Contextual link prediction")
carries up to ``budget`` 1-hop *items* ``(anchor, label, entity)``: an out-edge ``anchor -label->
entity`` of one of the query's known entities (its *anchors*), read from the **train** graph only.

**Order.** Every edge gets a fixed key, and each node's out-edges are ranked by it once
(:func:`context_edge_order`), so a node's context is cached as a prefix of its ranked edge list:

- ``sampling="degree"``: Efraimidis-Spirakis keys ``log(u) / log(1 + out_degree(entity))`` with
  ``u ~ U(0, 1)`` drawn once per edge from ``seed``, i.e. a weighted sample without replacement
  that prefers well-connected neighbours without letting hubs crowd out the rest (the weight of
  :func:`graph_algos.khop.khop`'s ``"degree"`` sampling);
- ``sampling="uniform"``: the same with weight 1 (a uniform random permutation).

**Exclusion (the leakage rule).** An edge is left out of a query's context when the train fact
that produced it *answers the query*: it has the query's relation and the query's known entities
at their positions. For a binary tail query ``(h, r, ?)`` that drops every ``h -r-> x`` edge
(all of ``h``'s train answers to it, so KvsAll targets never sit in their own context), and keeps
``h -r^-1-> x`` (the *reverse* fact ``r(x, h)``, legitimately in train). The same rule is applied
in training and evaluation, so the model sees one distribution; at evaluation the dropped edges
are filtered answers anyway. Valid and test facts never enter because the graph is built from
train facts.

**Budget.** Items are taken round-robin over the anchors (n-ary queries have several), each
anchor walking its ranked edge list and skipping excluded edges, until ``budget`` items are
taken or every list is exhausted. An anchor with no train edges contributes nothing (an empty
context is valid).

Output: ``(entity, label, anchor) (Q, budget)`` int64, left-packed, ``-1`` padding; ``anchor``
is the column of the query's context entity the item hangs off.

Example (``0 -r0-> 1``, ``0 -r1-> 2``; the tail query ``(0, r0, ?)`` must not see ``0 -r0-> 1``)::

    >>> import numpy as np
    >>> from graph_algos.graph import KGraph
    >>> facts = np.array([[0, 0, 1], [1, 0, 2]])
    >>> g = KGraph.from_facts(facts, num_entities=3, num_relations=2)
    >>> order = context_edge_order(g, "uniform", seed=0)
    >>> ent, lab, anc = query_context(g, order, facts, anchors=np.array([[0]]), positions=np.array([[0]]),
    ...                               relation=np.array([0]), budget=4)
    >>> ent.tolist(), lab.tolist(), anc.tolist()
    ([[2, -1, -1, -1]], [[1, -1, -1, -1]], [[0, -1, -1, -1]])
"""

from __future__ import annotations

import numba
import numpy as np

from kgc.errors import KGCError
from graph_algos.graph import KGraph

__all__ = ["CONTEXT_SAMPLING", "context_edge_order", "query_context"]

CONTEXT_SAMPLING = ("degree", "uniform")


def context_edge_order(g: KGraph, sampling: str = "degree", seed: int = 0) -> np.ndarray:
    """``(M,)`` edge ids, grouped by source node as in the CSR (``g.indptr`` still delimits each
    node's edges), each node's edges ranked by their key (best first); see the module doc."""
    if sampling not in CONTEXT_SAMPLING:
        raise KGCError(f"context sampling: expected one of {', '.join(CONTEXT_SAMPLING)}, got {sampling!r}")
    rng = np.random.default_rng([int(seed), 0xC0E7])
    u = rng.random(g.num_edges)
    logu = np.log(u + 1e-300)
    if sampling == "degree":
        key = logu / np.log1p(g.out_degree[g.dst].astype(np.float64))
    else:
        key = logu
    # primary: source (keeps CSR grouping), secondary: key descending, then edge id (total order)
    return np.lexsort((np.arange(g.num_edges), -key, g.src)).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _query_context(indptr, order, dst, label, fact_of_edge, facts, anchors, positions, relation, budget):
    q, w = anchors.shape
    out_e = np.full((q, budget), -1, np.int64)
    out_l = np.full((q, budget), -1, np.int64)
    out_a = np.full((q, budget), -1, np.int64)
    cursor = np.empty(w, np.int64)
    for i in range(q):
        for j in range(w):
            cursor[j] = indptr[anchors[i, j]] if anchors[i, j] >= 0 else 0
        taken = 0
        live = True
        while taken < budget and live:
            live = False
            for j in range(w):
                a = anchors[i, j]
                if a < 0 or taken >= budget:
                    continue
                end = indptr[a + 1]
                while cursor[j] < end:
                    e = order[cursor[j]]
                    cursor[j] += 1
                    f = fact_of_edge[e]
                    answers = facts[f, 0] == relation[i]
                    if answers:
                        for k in range(w):
                            if anchors[i, k] >= 0 and facts[f, 1 + positions[i, k]] != anchors[i, k]:
                                answers = False
                                break
                    if answers:
                        continue
                    out_e[i, taken] = dst[e]
                    out_l[i, taken] = label[e]
                    out_a[i, taken] = j
                    taken += 1
                    live = True
                    break
    return out_e, out_l, out_a


def query_context(
    g: KGraph,
    order: np.ndarray,
    facts,
    anchors,
    positions,
    relation,
    budget: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context items of ``Q`` queries -> ``(entity, label, anchor)``, each ``(Q, budget)``.

    Args:
        g: the train graph; ``order``: :func:`context_edge_order` of it.
        facts: the train facts ``(N, 1 + A)`` the graph was built from (``g.fact`` indexes them).
        anchors: ``(Q, W)`` known entity ids of each query, ``-1`` padding.
        positions: ``(Q, W)`` the fact position (0-based column) of each anchor; ignored at pads.
        relation: ``(Q,)`` base relation of each query.
        budget: items per query (``>= 0``).
    """
    if budget < 0:
        raise KGCError(f"context budget must be >= 0, got {budget}")
    facts = np.ascontiguousarray(np.asarray(facts, dtype=np.int64))
    anchors = np.ascontiguousarray(np.asarray(anchors, dtype=np.int64))
    positions = np.ascontiguousarray(np.asarray(positions, dtype=np.int64))
    relation = np.ascontiguousarray(np.asarray(relation, dtype=np.int64))
    if anchors.ndim != 2 or positions.shape != anchors.shape or relation.shape != (anchors.shape[0],):
        raise KGCError(f"query_context: anchors/positions (Q, W) and relation (Q,) disagree: "
                       f"{anchors.shape}, {positions.shape}, {relation.shape}")
    if order.shape != (g.num_edges,):
        raise KGCError(f"query_context: edge order has {order.shape[0]} entries, the graph {g.num_edges} edges")
    if anchors.size and anchors.max() >= g.num_nodes:
        raise KGCError(f"query_context: anchor id {int(anchors.max())} not in [0, {g.num_nodes})")
    ok = anchors >= 0
    if ok.any() and (positions[ok].min() < 0 or positions[ok].max() >= facts.shape[1] - 1):
        raise KGCError(f"query_context: anchor positions must lie in [0, {facts.shape[1] - 1})")
    return _query_context(g.indptr, order, g.dst, g.label, g.fact, facts, anchors,
                          np.where(ok, positions, 0), relation, int(budget))
