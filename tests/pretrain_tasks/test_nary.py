"""Signals on a small n-ary (hypergraph) dataset: clique-expansion labels, valid steps, no held-out leakage."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graph_algos.graph import KGraph
from kgc.data.dataset import KGDataset
from pretrain_tasks import SIGNALS, build_vocab, get_signal

from lcc_reference import expected_lcc_buckets


@pytest.fixture(scope="module")
def nary():
    rng = np.random.default_rng(0)
    E, R, A = 80, 5, 4

    def facts(n):
        rows = np.full((n, 1 + A), -1, np.int64)
        rows[:, 0] = rng.integers(0, R, n)
        for i in range(n):
            k = rng.integers(2, A + 1)
            rows[i, 1 : 1 + k] = rng.choice(E, size=k, replace=False)
        return rows

    splits = {"train": facts(400), "valid": facts(30), "test": facts(30)}
    ds = KGDataset("toy-nary", [f"e{i:02d}" for i in range(E)], [f"r{i}" for i in range(R)], splits, "f" * 64)
    g = KGraph.from_dataset(ds)
    return ds, g, build_vocab(ds, g)


def steps_of(g):
    return set(zip(g.src.tolist(), g.label.tolist(), g.dst.tolist()))


@pytest.mark.parametrize("name", list(SIGNALS))
def test_nary_signals(nary, name):
    ds, g, v = nary
    assert v.num_labels == 5 * 4 * 3 and v.max_arity == 4
    ex = get_signal(name).generate(ds, g, v, num_examples=60, seed=0)
    assert len(ex) > 0
    edges = steps_of(g)
    held = KGraph.from_facts(np.concatenate([ds.splits["valid"].numpy(), ds.splits["test"].numpy()]), ds.num_entities,
                             ds.num_relations)
    held_only = steps_of(held) - edges
    for i in range(len(ex)):
        p, tgt = ex.prompt(i), ex.target(i)
        if name in ("random_walk", "shortest_path", "ig_path"):
            chain = [int(p[0]) - v.entity_offset] + (tgt[1::2] - v.entity_offset).tolist()
            labs = (tgt[0::2] - v.relation_offset).tolist()
            for k, lab in enumerate(labs):
                step = (chain[k], lab, chain[k + 1])
                assert step in edges and step not in held_only
        if name == "ig_path":
            h, lab, t = int(p[0]) - v.entity_offset, int(p[1]) - v.relation_offset, int(p[2]) - v.entity_offset
            assert (h, lab, t) in edges and lab < 2 * ds.num_relations
            row = ds.splits["train"][ex.source[i]].tolist()
            assert {h, t} == {row[1], row[2]} and lab % ds.num_relations == row[0]


def clique_nx(ds) -> nx.Graph:
    """The undirected simple view of the train hypergraph's clique expansion, built from the raw facts."""
    G = nx.Graph()
    G.add_nodes_from(range(ds.num_entities))
    for row in ds.splits["train"].tolist():
        ents = [e for e in row[1:] if e >= 0]
        G.add_edges_from((a, b) for i, a in enumerate(ents) for b in ents[i + 1:] if a != b)
    return G


@pytest.mark.parametrize("cfg, regime", [(None, "truncated"), ({"k": 1, "max_tokens": 300}, "complete")])
def test_nary_khop_items_are_the_networkx_neighbourhoods(nary, cfg, regime):
    """Every k-hop item of an n-ary centre sits at its networkx hop distance in the clique expansion,
    its label is that of an edge from the previous hop, and a neighbourhood that fits the budget is
    complete (nearer hops complete before farther ones otherwise)."""
    ds, g, v = nary
    sig = get_signal("khop", cfg)
    k, budget = sig.config.k, sig.config.max_tokens // 3
    ex = sig.generate(ds, g, v, num_examples=60, seed=0)
    G, edges = clique_nx(ds), steps_of(g)
    assert len(ex) == 60
    complete = truncated = 0
    for i in range(len(ex)):
        c = int(ex.prompt(i)[0]) - v.entity_offset
        dist = nx.single_source_shortest_path_length(G, c, cutoff=k)
        items = ex.target(i).reshape(-1, 3)
        hops = (items[:, 0] - v.hop(1) + 1).tolist()
        labs = (items[:, 1] - v.relation_offset).tolist()
        ents = (items[:, 2] - v.entity_offset).tolist()
        for h, lab, e in zip(hops, labs, ents):
            assert dist.get(e) == h, (c, h, e)
            assert any((a, lab, e) in edges for a, d in dist.items() if d == h - 1), (c, h, lab, e)
        reach = {e for e, d in dist.items() if d >= 1}
        if len(reach) <= budget:
            assert set(ents) == reach and len(ents) == len(reach)
            complete += 1
        else:
            assert len(ents) == budget and len(set(ents)) == budget
            last = max(hops)
            assert {e for e, h in zip(ents, hops) if h < last} == {e for e, d in dist.items() if 1 <= d < last}
            truncated += 1
    assert (complete, truncated) == ((len(ex), 0) if regime == "complete" else (0, len(ex)))


def test_nary_lcc_buckets_equal_networkx_on_the_clique_expansion(nary):
    """Degree and clustering buckets of an n-ary dataset, recomputed with networkx from the raw facts
    and the documented bucket edges."""
    ds, g, v = nary
    exp_d, exp_c, act = expected_lcc_buckets(clique_nx(ds), ds.num_entities, v.num_buckets)
    ex = get_signal("lcc").generate(ds, g, v, seed=0)
    ents = ex.tokens[:, 1] - v.entity_offset
    assert np.array_equal(np.sort(ents), act)
    assert np.array_equal(ex.tokens[:, 3] - v.deg_offset, exp_d[ents])
    assert np.array_equal(ex.tokens[:, 4] - v.lcc_offset, exp_c[ents])
    assert len(np.unique(exp_d[ents])) >= 3 and len(np.unique(exp_c[ents])) >= 2  # informative buckets


def test_nary_vocabulary_from_the_dataset_alone(nary):
    ds, g, vocab = nary
    alone = build_vocab(ds)  # no graph: the labels follow from the relation names and the maximum arity
    assert alone.label_names == g.label_names and alone.num_labels == g.num_labels == 5 * 4 * 3
    assert alone.to_dict() == vocab.to_dict()
