"""Query contexts (graph_algos.context) against a brute-force reference written from the spec."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc import KGCError
from graph_algos.context import context_edge_order, query_context
from graph_algos.graph import KGraph

from ga_strategies import fact_arrays, ref_edges


def test_docstring_example():
    facts = np.array([[0, 0, 1], [1, 0, 2]])
    g = KGraph.from_facts(facts, num_entities=3, num_relations=2)
    order = context_edge_order(g, "uniform", seed=0)
    ent, lab, anc = query_context(g, order, facts, anchors=np.array([[0]]), positions=np.array([[0]]),
                                  relation=np.array([0]), budget=4)
    assert (ent.tolist(), lab.tolist(), anc.tolist()) == ([[2, -1, -1, -1]], [[1, -1, -1, -1]], [[0, -1, -1, -1]])


def brute_context(facts, n, R, anchors, positions, relation, budget, sampling, seed):
    """Items straight from the spec: clique-expanded edges in (src, label, dst, fact) order, one
    key per edge from the seeded generator, each anchor's edges best key first, edges of facts that
    answer the query skipped, anchors taken round-robin."""
    edges = sorted(ref_edges(facts, R))  # edge id = rank in CSR order
    u = np.random.default_rng([seed, 0xC0E7]).random(len(edges))
    deg = np.zeros(n, np.int64)
    for s, _, _, _ in edges:
        deg[s] += 1
    keys = [math.log(u[i] + 1e-300) / (math.log1p(deg[d]) if sampling == "degree" else 1.0)
            for i, (_, _, d, _) in enumerate(edges)]
    out = []
    for a_row, p_row, r in zip(anchors, positions, relation):
        known = [(int(p), int(a)) for a, p in zip(a_row, p_row) if a >= 0]

        def answers(f):
            return facts[f, 0] == r and all(facts[f, 1 + p] == a for p, a in known)

        lists = []
        for a in a_row:
            ids = [i for i, (s, _, _, f) in enumerate(edges) if a >= 0 and s == a and not answers(f)]
            lists.append(sorted(ids, key=lambda i: (-keys[i], i)))
        items, depth = [], 0
        while len(items) < budget and any(depth < len(lst) for lst in lists):
            for j, lst in enumerate(lists):
                if depth < len(lst) and len(items) < budget:
                    _, lab, dst, _ = edges[lst[depth]]
                    items.append((dst, lab, j))
            depth += 1
        items += [(-1, -1, -1)] * (budget - len(items))
        out.append(items)
    arr = np.array(out, dtype=np.int64).reshape(len(anchors), budget, 3)
    return arr[..., 0], arr[..., 1], arr[..., 2]


@settings(max_examples=80, deadline=None)
@given(fact_arrays(max_nodes=8, max_facts=14), st.data())
def test_query_context_matches_brute_force(data, d2):
    facts, n, R = data
    A = facts.shape[1] - 1
    g = KGraph.from_facts(facts, num_entities=n, num_relations=R)
    sampling = d2.draw(st.sampled_from(["degree", "uniform"]))
    seed = d2.draw(st.integers(0, 5))
    budget = d2.draw(st.integers(0, 6))
    q = d2.draw(st.integers(1, 6))
    W = A - 1
    anchors = np.full((q, W), -1, np.int64)
    positions = np.full((q, W), -1, np.int64)
    for i in range(q):
        k = d2.draw(st.integers(1, W))
        pos = d2.draw(st.permutations(list(range(A))))[:k]
        for j in range(k):
            anchors[i, j] = d2.draw(st.integers(0, n - 1))
            positions[i, j] = pos[j]
    relation = np.array([d2.draw(st.integers(0, R - 1)) for _ in range(q)], np.int64)
    order = context_edge_order(g, sampling, seed)
    got = query_context(g, order, facts, anchors, positions, relation, budget)
    want = brute_context(facts, n, R, anchors, positions, relation, budget, sampling, seed)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_order_keeps_csr_groups_and_prefers_connected_neighbours():
    # centre 0 linked to 1 (degree 1) and to 2, which has 30 more neighbours
    facts = [[0, 0, 1], [0, 0, 2]] + [[0, 2, 3 + i] for i in range(30)]
    facts = np.array(facts)
    g = KGraph.from_facts(facts, num_entities=33, num_relations=1)
    first_is_hub = 0
    for seed in range(400):
        order = context_edge_order(g, "degree", seed)
        for v in range(g.num_nodes):  # every node's edges stay inside its CSR slice
            sl = order[g.indptr[v]:g.indptr[v + 1]]
            assert sorted(sl.tolist()) == list(range(g.indptr[v], g.indptr[v + 1]))
        first_is_hub += int(g.dst[order[g.indptr[0]]] == 2)
    # Efraimidis-Spirakis with weights log(2) (leaf) and log(32) (hub): P(hub first) = 5/6
    p = math.log(32) / (math.log(32) + math.log(2))
    assert abs(first_is_hub / 400 - p) < 4 * math.sqrt(p * (1 - p) / 400)


def test_bad_input_is_named():
    facts = np.array([[0, 0, 1]])
    g = KGraph.from_facts(facts, num_entities=2, num_relations=1)
    order = context_edge_order(g)
    with pytest.raises(KGCError, match="sampling"):
        context_edge_order(g, "hubs")
    with pytest.raises(KGCError, match="budget"):
        query_context(g, order, facts, np.array([[0]]), np.array([[0]]), np.array([0]), -1)
    with pytest.raises(KGCError, match="anchor id"):
        query_context(g, order, facts, np.array([[5]]), np.array([[0]]), np.array([0]), 2)
    # a node without edges has an empty context
    g2 = KGraph.from_facts(facts, num_entities=4, num_relations=1)
    ent, _, _ = query_context(g2, context_edge_order(g2), facts, np.array([[3]]), np.array([[0]]), np.array([0]), 3)
    assert ent.tolist() == [[-1, -1, -1]]
