"""Random walks (valid edges, chi-square vs uniform / node2vec weights) and clustering vs networkx."""

from collections import Counter

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kgc import KGCError
from graph_algos import KGraph, degree, local_clustering, random_walk, triangles

from ga_strategies import fact_arrays, nx_graph, ref_edges


def test_docstring_examples():
    g = KGraph.from_facts(np.array([[0, 0, 1], [0, 1, 2]]), num_entities=4, num_relations=1)
    ents, labs = random_walk(g, np.array([0, 3]), length=2, seed=0)
    assert ents.shape == (2, 3) and labs.shape == (2, 2)
    assert ents[1].tolist() == [3, -1, -1] and labs[1].tolist() == [-1, -1]
    assert (int(ents[0, 1]), int(labs[0, 0])) == (1, 0)

    facts = np.array([[0, 0, 1], [0, 1, 2], [1, 2, 0], [0, 2, 3]])
    g = KGraph.from_facts(facts, num_entities=5, num_relations=2)
    assert degree(g).tolist() == [2, 2, 3, 1, 0]
    assert np.round(local_clustering(g), 4).tolist() == [1.0, 1.0, 0.3333, 0.0, 0.0]
    assert triangles(g).tolist() == [1, 1, 1, 0, 0]


@settings(max_examples=60, deadline=None)
@given(fact_arrays(max_nodes=12, max_facts=30))
def test_clustering_and_degree_equal_networkx(data):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    G = nx_graph(facts, n, R)
    ref = nx.clustering(G)
    assert np.allclose(local_clustering(g), [ref[v] for v in range(n)])
    assert degree(g).tolist() == [len(set(G[v]) - {v}) for v in range(n)]
    G.remove_edges_from(nx.selfloop_edges(G))
    tri = nx.triangles(G)
    assert triangles(g).tolist() == [tri[v] for v in range(n)]


@settings(max_examples=50, deadline=None)
@given(fact_arrays(), st.integers(0, 6), st.sampled_from([(1.0, 1.0), (0.5, 2.0), (4.0, 0.25)]), st.integers(0, 99))
def test_walk_steps_are_real_edges(data, L, pq, seed):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    edges = {(a, lab, b) for a, lab, b, _ in ref_edges(facts, R)}
    starts = np.arange(n).repeat(3)
    ents, labs = random_walk(g, starts, length=L, p=pq[0], q=pq[1], seed=seed)
    assert ents.shape == (3 * n, L + 1) and labs.shape == (3 * n, L)
    assert (ents[:, 0] == starts).all()
    for s in range(len(starts)):
        for i in range(L):
            if ents[s, i + 1] < 0:
                assert (ents[s, i + 1:] == -1).all() and (labs[s, i:] == -1).all()
                assert g.out_degree[ents[s, i]] == 0
                break
            assert (ents[s, i], labs[s, i], ents[s, i + 1]) in edges


def _random_graph(seed, n=30, m=90, R=3):
    rng = np.random.default_rng(seed)
    facts = np.stack([rng.integers(0, R, m), rng.integers(0, n, m), rng.integers(0, n, m)], 1)
    facts = np.concatenate([facts, facts[:10], [[0, 5, 5]]])  # parallel edges and a self-loop
    return KGraph.from_facts(facts, n, R)


def test_walk_next_step_chi_square_uniform():
    g = _random_graph(0)
    ents, labs = random_walk(g, np.repeat(np.arange(g.num_nodes), 200), length=8, seed=1)
    # transitions (current -> (label, next)) against multiplicity / out-degree
    mult = Counter(zip(g.src.tolist(), g.label.tolist(), g.dst.tolist()))
    seen = Counter()
    for i in range(8):
        ok = ents[:, i + 1] >= 0
        seen.update(zip(ents[ok, i].tolist(), labs[ok, i].tolist(), ents[ok, i + 1].tolist()))
    assert set(seen) <= set(mult)
    pvals = []
    for v in range(g.num_nodes):
        keys = [k for k in mult if k[0] == v]
        if len(keys) < 2:
            continue
        obs = np.array([seen[k] for k in keys], float)
        exp = np.array([mult[k] for k in keys], float)
        exp = exp / exp.sum() * obs.sum()
        pvals.append(stats.chisquare(obs, exp).pvalue)
    # per-node p-values are uniform under H0: combine them (Fisher) and check none is extreme
    assert stats.combine_pvalues(pvals).pvalue > 1e-3
    assert min(pvals) > 1e-4


def test_node2vec_bias_chi_square():
    # start 0 has one edge to 1; from 1: back to 0 (1/p), to 2 (adjacent to 0: weight 1), to 3 (1/q)
    facts = np.array([[0, 0, 1], [0, 1, 2], [0, 1, 3], [0, 0, 2]])
    g = KGraph.from_facts(facts, 4, 1)
    p, q = 0.5, 4.0
    start = np.zeros(20000, np.int64)
    # 0 has two out-edges (to 1 and 2); keep the walks whose first step went to 1
    ents, _ = random_walk(g, start, length=2, p=p, q=q, seed=7)
    nxt = ents[ents[:, 1] == 1, 2]
    obs = np.array([(nxt == v).sum() for v in (0, 2, 3)], float)
    w = np.array([1 / p, 1.0, 1 / q])
    assert stats.chisquare(obs, w / w.sum() * obs.sum()).pvalue > 1e-3


def test_walk_bad_inputs():
    g = KGraph.from_facts(np.array([[0, 0, 1]]), 2, 1)
    with pytest.raises(KGCError, match="length"):
        random_walk(g, np.array([0]), length=-1)
    with pytest.raises(KGCError, match="p, q"):
        random_walk(g, np.array([0]), length=2, p=0)
    with pytest.raises(KGCError, match="starts"):
        random_walk(g, np.array([[0]]), length=2)
