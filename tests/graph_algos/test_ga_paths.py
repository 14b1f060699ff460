"""BFS distances, shortest paths and k-hop neighbourhoods against networkx."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgc import KGCError
from graph_algos import KGraph, bfs_distances, khop, shortest_paths

from ga_strategies import fact_arrays, nx_graph, ref_edges


def test_docstring_examples():
    facts = np.array([[0, 0, 1], [0, 1, 2], [1, 2, 3], [1, 3, 0]])
    g = KGraph.from_facts(facts, num_entities=5, num_relations=2)
    assert bfs_distances(g, np.array([0, 4])).tolist() == [[0, 1, 2, 1, -1], [-1, -1, -1, -1, 0]]
    assert bfs_distances(g, np.array([0]), max_depth=1).tolist() == [[0, 1, -1, 1, -1]]
    length, ents, labs = shortest_paths(g, np.array([0, 0]), np.array([1, 1]), max_depth=3,
                                        exclude_fact=np.array([-1, 0]))
    assert length.tolist() == [1, 3]
    assert ents.tolist() == [[0, 1, -1, -1], [0, 3, 2, 1]]
    assert labs.tolist() == [[0, -1, -1], [3, 3, 2]]

    g = KGraph.from_facts(np.array([[0, 0, 1], [0, 0, 2], [1, 2, 3]]), num_entities=4, num_relations=2)
    ptr, hop, lab, ent = khop(g, np.array([0, 3]), k=2)
    assert ptr.tolist() == [0, 3, 5]
    assert (hop.tolist(), lab.tolist(), ent.tolist()) == ([1, 1, 2, 1, 2], [0, 0, 1, 3, 2], [1, 2, 3, 2, 0])
    assert khop(g, np.array([0]), k=2, budget=2)[3].tolist() == [1, 2]


def _nx_dist(G, s, cutoff):
    return nx.single_source_shortest_path_length(G, s, cutoff=cutoff)


@settings(max_examples=60, deadline=None)
@given(fact_arrays(), st.sampled_from([None, 0, 1, 2, 3]), st.data())
def test_bfs_distances_equal_networkx(data, depth, d2):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    G = nx_graph(facts, n, R)
    sources = np.arange(n)
    dist = bfs_distances(g, sources, max_depth=depth)
    for s in range(n):
        ref = np.full(n, -1)
        for v, d in _nx_dist(G, s, depth).items():
            ref[v] = d
        assert dist[s].tolist() == ref.tolist()
    # excluding one fact per source = BFS on the graph without that fact
    if len(facts):
        excl = np.array([d2.draw(st.integers(-1, len(facts) - 1)) for _ in range(n)])
        dist = bfs_distances(g, sources, max_depth=depth, exclude_fact=excl)
        for s in range(n):
            ref = np.full(n, -1)
            for v, d in _nx_dist(nx_graph(facts, n, R, excl[s]), s, depth).items():
                ref[v] = d
            assert dist[s].tolist() == ref.tolist()


@settings(max_examples=60, deadline=None)
@given(fact_arrays(), st.integers(1, 4), st.booleans(), st.data())
def test_shortest_paths_valid_and_minimal(data, K, randomised, d2):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    src, dst = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    src, dst = src.ravel(), dst.ravel()
    excl = np.array([d2.draw(st.integers(-1, max(len(facts) - 1, -1))) for _ in src]) if len(facts) else None
    length, ents, labs = shortest_paths(g, src, dst, max_depth=K, exclude_fact=excl,
                                        seed=1 if randomised else None)
    for i, (s, t) in enumerate(zip(src.tolist(), dst.tolist())):
        f = -1 if excl is None else excl[i]
        G = nx_graph(facts, n, R, f)
        ref = _nx_dist(G, s, K).get(t, -1)
        assert length[i] == ref
        if ref < 0:
            assert (ents[i] == -1).all() and (labs[i] == -1).all()
            continue
        edges = {(a, lab, b) for a, lab, b, _ in ref_edges(facts, R, f)}
        assert ents[i, 0] == s and ents[i, ref] == t
        assert (ents[i, ref + 1:] == -1).all() and (labs[i, ref:] == -1).all()
        for k in range(ref):
            assert (ents[i, k], labs[i, k], ents[i, k + 1]) in edges


def test_shortest_paths_random_choice_covers_all_shortest():
    # 0 - {1, 2, 3} - 4: three shortest paths of length 2
    facts = np.array([[0, 0, m] for m in (1, 2, 3)] + [[0, m, 4] for m in (1, 2, 3)])
    g = KGraph.from_facts(facts, 5, 1)
    S = 600
    length, ents, _ = shortest_paths(g, np.zeros(S, np.int64), np.full(S, 4), max_depth=2, seed=0)
    assert (length == 2).all()
    counts = np.bincount(ents[:, 1], minlength=5)[1:4]
    assert counts.min() > 120


def test_bad_inputs():
    g = KGraph.from_facts(np.array([[0, 0, 1]]), 3, 1)
    with pytest.raises(KGCError, match="sources"):
        bfs_distances(g, np.array([5]))
    with pytest.raises(KGCError, match="exclude_fact"):
        bfs_distances(g, np.array([0, 1]), exclude_fact=np.array([0]))
    with pytest.raises(KGCError, match="edge_mask"):
        bfs_distances(g, np.array([0]), edge_mask=np.ones(3, bool))
    with pytest.raises(KGCError, match="targets"):
        shortest_paths(g, np.array([0]), np.array([0, 1]), max_depth=2)
    with pytest.raises(KGCError, match="budget"):
        khop(g, np.array([0]), k=1, budget=-1)
    with pytest.raises(KGCError, match="sampling"):
        khop(g, np.array([0]), k=1, sampling="pagerank")


def test_edge_mask():
    facts = np.array([[0, 0, 1], [0, 1, 2]])
    g = KGraph.from_facts(facts, 3, 1)
    mask = g.fact != 1
    assert bfs_distances(g, np.array([0]), edge_mask=mask).tolist() == [[0, 1, -1]]


@settings(max_examples=60, deadline=None)
@given(fact_arrays(), st.integers(0, 3))
def test_khop_equals_ego_graph(data, k):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    G = nx_graph(facts, n, R)
    centres = np.arange(n)
    ptr, hop, lab, ent = khop(g, centres, k=k)
    edges = {(a, l, b) for a, l, b, _ in ref_edges(facts, R)}
    for c in range(n):
        sl = slice(ptr[c], ptr[c + 1])
        assert set(ent[sl].tolist()) | {c} == set(nx.ego_graph(G, c, radius=k).nodes)
        dist = _nx_dist(G, c, k)
        assert hop[sl].tolist() == [dist[e] for e in ent[sl].tolist()]
        assert list(zip(hop[sl].tolist(), ent[sl].tolist())) == sorted(zip(hop[sl].tolist(), ent[sl].tolist()))
        # the label is that of an edge from a node one hop closer
        for h_, l_, e_ in zip(hop[sl].tolist(), lab[sl].tolist(), ent[sl].tolist()):
            assert any((p, l_, e_) in edges for p, d in dist.items() if d == h_ - 1)


@settings(max_examples=40, deadline=None)
@given(fact_arrays(max_nodes=14, max_facts=24), st.integers(1, 3), st.integers(0, 6),
       st.sampled_from(["uniform", "degree"]))
def test_khop_budget_keeps_nearest_hops(data, k, budget, sampling):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    full = khop(g, np.arange(n), k=k)
    ptr, hop, lab, ent = khop(g, np.arange(n), k=k, budget=budget, sampling=sampling, seed=3)
    for c in range(n):
        f_h = full[1][full[0][c]:full[0][c + 1]]
        f_e = full[3][full[0][c]:full[0][c + 1]]
        sl = slice(ptr[c], ptr[c + 1])
        assert ptr[c + 1] - ptr[c] == min(budget, len(f_e))
        assert set(zip(hop[sl].tolist(), ent[sl].tolist())) <= set(zip(f_h.tolist(), f_e.tolist()))
        if ptr[c + 1] > ptr[c]:  # every hop before the last kept one is complete
            last = hop[sl].max()
            assert (hop[sl] < last).sum() == (f_h < last).sum()



def test_bfs_many_sources_and_masks_equal_networkx():
    # > 64 sources: several bit-parallel batches; edge_mask path and per-source path too
    rng = np.random.default_rng(5)
    n, m, R = 150, 260, 3
    facts = np.stack([rng.integers(0, R, m), rng.integers(0, n, m), rng.integers(0, n, m)], 1)
    g = KGraph.from_facts(facts, n, R)
    G = nx_graph(facts, n, R)
    sources = np.concatenate([np.arange(n), rng.integers(0, n, 50)])
    ref = np.full((len(sources), n), -1)
    for i, s in enumerate(sources.tolist()):
        for v, d in _nx_dist(G, s, 4).items():
            ref[i, v] = d
    assert (bfs_distances(g, sources, max_depth=4) == ref).all()
    assert (bfs_distances(g, sources, max_depth=4, edge_mask=np.ones(g.num_edges, bool)) == ref).all()
    # exclude a fact that does not exist in the graph's edges: per-source BFS, same distances
    assert (bfs_distances(g, sources, max_depth=4, exclude_fact=np.full(len(sources), m + 7)) == ref).all()
    drop = 3
    G2 = nx_graph(facts, n, R, drop)
    ref2 = np.full((len(sources), n), -1)
    for i, s in enumerate(sources.tolist()):
        for v, d in _nx_dist(G2, s, None).items():
            ref2[i, v] = d
    assert (bfs_distances(g, sources, edge_mask=g.fact != drop) == ref2).all()
    assert (bfs_distances(g, sources, exclude_fact=np.full(len(sources), drop)) == ref2).all()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_khop_non_binding_budget_equals_unlimited(k):
    # a budget that never binds gives identical items (same order and labels), equal to networkx
    rng = np.random.default_rng(11)
    n, m, R = 120, 200, 4
    facts = np.stack([rng.integers(0, R, m), rng.integers(0, n, m), rng.integers(0, n, m)], 1)
    g = KGraph.from_facts(facts, n, R)
    G = nx_graph(facts, n, R)
    centres = np.concatenate([np.arange(n), [0, 5, 5]])
    a = khop(g, centres, k=k)
    b = khop(g, centres, k=k, budget=10**9)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    ptr, hop, lab, ent = a
    for i, c in enumerate(centres.tolist()):
        assert set(ent[ptr[i]:ptr[i + 1]].tolist()) | {c} == set(nx.ego_graph(G, c, radius=k).nodes)


@pytest.mark.parametrize("sampling", ["uniform", "degree"])
def test_khop_sampling_follows_its_distribution_chi_square(sampling):
    """Budget 1 on a star: the one kept hop-1 neighbour is drawn with probability proportional to
    ``log(1 + out_degree)`` (``degree``, Efraimidis-Spirakis with one draw is exactly that) or 1/m
    (``uniform``). 6,000 draws: the right distribution passes a chi-square test, the other fails it."""
    from scipy.stats import chisquare

    extra = [0, 2, 8, 32, 0, 8]  # private out-neighbours of each leaf: very different degrees
    facts, nxt = [], 1 + len(extra)
    for i, d in enumerate(extra):
        leaf = 1 + i
        facts.append([0, 0, leaf])
        for _ in range(d):
            facts.append([1, leaf, nxt])
            nxt += 1
    g = KGraph.from_facts(np.array(facts), num_entities=nxt, num_relations=2)
    leaves = np.arange(1, 1 + len(extra))
    draws = 6000
    ptr, hop, lab, ent = khop(g, np.zeros(draws, np.int64), k=1, budget=1, sampling=sampling, seed=7)
    assert (np.diff(ptr) == 1).all() and (hop == 1).all() and np.isin(ent, leaves).all()
    observed = np.array([(ent == v).sum() for v in leaves])
    w = np.log1p(g.out_degree[leaves].astype(np.float64))
    p_degree, p_uniform = w / w.sum(), np.full(len(leaves), 1 / len(leaves))
    right, wrong = (p_degree, p_uniform) if sampling == "degree" else (p_uniform, p_degree)
    assert chisquare(observed, right * draws).pvalue > 1e-3
    assert chisquare(observed, wrong * draws).pvalue < 1e-9
