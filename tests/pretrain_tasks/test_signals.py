"""Each signal's sequences are valid: real train edges, shortest, within k hops, equal to graph_algos, no leakage."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from graph_algos.ig_path import ig_paths
from kgc import KGCError
from pretrain_tasks import SIGNALS, get_signal
from pretrain_tasks.registry import TASKS
from pretrain_tasks.lcc import LCCSignal

from lcc_reference import expected_lcc_buckets

N = 300  # examples per signal on the synthetic KG (UMLS: all)
_cache: dict = {}


def gen(kg, name, seed=0, **cfg):
    key = (kg.ds.name, name, seed, tuple(sorted(cfg.items())))
    if key not in _cache:
        n = None if kg.ds.name == "umls" and name != "ig_path" else N
        _cache[key] = get_signal(name, cfg or None).generate(kg.ds, kg.graph, kg.vocab, num_examples=n, seed=seed)
    return _cache[key]


def path_steps(kg, start_tok, target):
    """(e, label, e') steps of a target ``r1 e1 ... rk ek`` that starts at entity token ``start_tok``."""
    v = kg.vocab
    assert len(target) % 2 == 0 and len(target) > 0
    rels, ents = target[0::2], target[1::2]
    assert (rels >= v.relation_offset).all() and (rels < v.entity_offset).all()
    assert v.is_entity(ents).all()
    chain = [start_tok - v.entity_offset] + [int(e) - v.entity_offset for e in ents]
    return [(chain[i], int(rels[i]) - v.relation_offset, chain[i + 1]) for i in range(len(rels))]


def check_layout(kg, ex, name):
    v = kg.vocab
    assert len(ex) > 0
    assert (ex.tokens[:, 0] == v.task(name)).all()
    assert (ex.task == TASKS.index(name)).all()
    assert (ex.tokens[np.arange(len(ex)), ex.prefix_len - 1] == v.sep).all()
    lens = ex.lengths
    assert (ex.tokens[np.arange(len(ex)), lens - 1] == v.eos).all()
    assert (ex.tokens < len(v)).all() and (ex.tokens >= 0).all()
    # no PAD inside a sequence
    assert ((ex.tokens != 0).sum(1) == lens).all()


@pytest.mark.parametrize("name", list(SIGNALS))
def test_layout(kg, name):
    check_layout(kg, gen(kg, name), name)


@pytest.mark.parametrize("name", ["random_walk", "shortest_path", "ig_path"])
def test_path_steps_are_train_edges(kg, name):
    ex = gen(kg, name)
    n_steps = 0
    for i in range(len(ex)):
        p = ex.prompt(i)
        for step in path_steps(kg, int(p[0]), ex.target(i)):  # every path starts at prompt[0]
            assert step in kg.train_steps, (i, step)
            assert step not in kg.heldout_only_steps
            n_steps += 1
    assert n_steps > len(ex)


def test_random_walk_lengths(synth):
    ex = gen(synth, "random_walk")
    # the train graph is symmetric, so walks from entities with edges never dead-end
    assert (np.array([len(ex.target(i)) for i in range(len(ex))]) == 2 * 6).all()
    assert set(ex.source.tolist()) <= set(np.flatnonzero(np.diff(synth.graph.indptr) > 0).tolist())


def test_shortest_path_minimal_without_direct_edge(kg):
    ex = gen(kg, "shortest_path")
    v, G = kg.vocab, kg.nx
    adjacent_pairs = 0
    for i in range(len(ex)):
        s, t = (int(x) - v.entity_offset for x in ex.prompt(i))
        steps = path_steps(kg, v.ent(s), ex.target(i))
        assert steps[-1][2] == t
        adjacent = G.has_edge(s, t)
        if adjacent:
            adjacent_pairs += 1
            G.remove_edge(s, t)
        try:
            d = nx.shortest_path_length(G, s, t)
        finally:
            if adjacent:
                G.add_edge(s, t)
        assert len(steps) == d, (s, t, steps, d)
        for a, _, b in steps:
            assert {a, b} != {s, t}, "the direct edge was used"
        assert d <= 4
    assert adjacent_pairs > 0  # distance-1 pairs are sampled (and answered by an alternative path)


def test_khop_items(kg):
    k, budget = 2, 48 // 3
    ex = gen(kg, "khop")
    v = kg.vocab
    adj: dict[int, set] = {}
    for a, lab, b in kg.train_steps:
        adj.setdefault(b, set()).add((a, lab))
    for i in range(len(ex)):
        c = int(ex.prompt(i)[0]) - v.entity_offset
        dist = nx.single_source_shortest_path_length(kg.nx, c, cutoff=k)
        items = ex.target(i).reshape(-1, 3)
        assert 1 <= len(items) <= budget
        hops = items[:, 0] - v.hop(1) + 1
        labs = items[:, 1] - v.relation_offset
        ents = items[:, 2] - v.entity_offset
        assert ((hops >= 1) & (hops <= k)).all()
        order = np.lexsort((ents, hops))
        assert (order == np.arange(len(items))).all(), "items not in (hop, entity) order"
        assert len(set(ents.tolist())) == len(ents) and c not in ents
        for h, lab, e in zip(hops.tolist(), labs.tolist(), ents.tolist()):
            assert dist.get(e) == h
            assert any(dist.get(a) == h - 1 and l2 == lab for a, l2 in adj[e]), (c, h, lab, e)
            if h == 1:
                assert (c, lab, e) in kg.train_steps
        within = sum(1 for x, d in dist.items() if d >= 1)
        if within <= budget:
            assert len(items) == within  # complete when it fits
        else:
            assert len(items) == budget
            # nearer hops are complete before farther ones are sampled
            n1 = sum(1 for x, d in dist.items() if d == 1)
            if n1 < budget:
                assert (hops == 1).sum() == n1


def test_ig_path_matches_graph_algos(kg):
    ex = gen(kg, "ig_path")
    v = kg.vocab
    facts = kg.ds.splits["train"].numpy()
    R = kg.ds.num_relations
    fwd = np.array([int(ex.prompt(i)[1]) - v.relation_offset < R for i in range(len(ex))])
    assert fwd.any() and (~fwd).any()
    res = ig_paths(kg.graph, facts, fact_ids=ex.source[fwd], K=3, beam=4)
    rev = facts.copy()
    rev[:, [1, 2]] = facts[:, [2, 1]]
    res_b = ig_paths(kg.graph, rev, fact_ids=ex.source[~fwd], K=3, beam=4)
    for j, i in enumerate(np.flatnonzero(fwd)):
        L = res.length[j]
        exp = np.zeros(2 * L, np.int64)
        exp[0::2] = v.rel(res.labels[j, :L])
        exp[1::2] = v.ent(res.entities[j, 1 : L + 1])
        assert np.array_equal(ex.target(i), exp)
        r, h, t = facts[ex.source[i]]
        assert ex.prompt(i).tolist() == [v.ent(h), v.rel(r), v.ent(t)]
    for j, i in enumerate(np.flatnonzero(~fwd)):
        L = res_b.length[j]
        assert np.array_equal(ex.target(i)[0::2], v.rel(res_b.labels[j, :L]))
        r, h, t = facts[ex.source[i]]
        assert ex.prompt(i).tolist() == [v.ent(t), v.rel(r + R), v.ent(h)]
    # the fact itself is never its own explanation
    for i in range(len(ex)):
        h, lab, t = (int(x) for x in ex.prompt(i))
        steps = path_steps(kg, h, ex.target(i))
        assert steps[-1][2] == t - v.entity_offset
        if len(steps) == 1:
            assert steps[0][1] != lab - v.relation_offset


@pytest.mark.parametrize("name", list(SIGNALS))
def test_no_heldout_fact_in_any_sequence(kg, name):
    ex = gen(kg, name)
    v = kg.vocab
    for i in range(len(ex)):
        p = ex.prompt(i)
        if name == "ig_path":
            h, lab, t = (int(x) for x in p)
            assert (h - v.entity_offset, lab - v.relation_offset, t - v.entity_offset) in kg.train_steps
        if name in ("random_walk", "shortest_path", "ig_path"):
            for step in path_steps(kg, int(p[0]), ex.target(i)):
                assert step not in kg.heldout_only_steps
        if name == "khop":
            items = ex.target(i).reshape(-1, 3)
            c = int(p[0]) - v.entity_offset
            for it in items[items[:, 0] == v.hop(1)]:
                assert (c, int(it[1]) - v.relation_offset, int(it[2]) - v.entity_offset) not in kg.heldout_only_steps


def test_lcc_buckets_match_networkx(kg):
    B = kg.vocab.num_buckets
    G = kg.nx
    deg = np.array([G.degree(e) for e in range(kg.ds.num_entities)])
    cc = np.array([nx.clustering(G, e) for e in range(kg.ds.num_entities)])
    # documented bucket edges, recomputed independently
    exp_d, exp_c, act = expected_lcc_buckets(G, kg.ds.num_entities, B)
    ex = LCCSignal().generate(kg.ds, kg.graph, kg.vocab, seed=0)
    v = kg.vocab
    ents = ex.tokens[:, 1] - v.entity_offset
    assert np.array_equal(np.sort(ents), act)
    assert np.array_equal(ex.tokens[:, 3] - v.deg_offset, exp_d[ents])
    assert np.array_equal(ex.tokens[:, 4] - v.lcc_offset, exp_c[ents])
    assert len(np.unique(exp_d[ents])) >= 3  # buckets are informative
    # the uniform / log variants
    ex2 = LCCSignal({"clustering_buckets": "uniform", "degree_buckets": "log"}).generate(kg.ds, kg.graph, v)
    assert np.array_equal(ex2.tokens[:, 4] - v.lcc_offset, np.minimum((cc[ents] * B).astype(int), B - 1))
    exp_log = np.clip(np.floor(B * np.log(deg[ents]) / np.log(deg[act].max() + 1)), 0, B - 1)
    assert np.array_equal(ex2.tokens[:, 3] - v.deg_offset, exp_log)


@pytest.mark.parametrize("name", list(SIGNALS))
def test_deterministic_by_seed(synth, name):
    s = get_signal(name)
    a = s.generate(synth.ds, synth.graph, synth.vocab, num_examples=50, seed=3)
    b = s.generate(synth.ds, synth.graph, synth.vocab, num_examples=50, seed=3)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.source, b.source)
    if name != "lcc" and name != "khop":
        c = s.generate(synth.ds, synth.graph, synth.vocab, num_examples=50, seed=4)
        assert not np.array_equal(a.tokens[:, : c.tokens.shape[1]], c.tokens[:, : a.tokens.shape[1]])


def test_num_examples(synth):
    for name in SIGNALS:
        ex = get_signal(name).generate(synth.ds, synth.graph, synth.vocab, num_examples=40, seed=0)
        assert 0 < len(ex) <= 40
        assert len(get_signal(name).generate(synth.ds, synth.graph, synth.vocab, num_examples=0)) == 0


def test_khop_k_beyond_vocab(synth):
    with pytest.raises(KGCError, match="max_hops"):
        get_signal("khop", {"k": 5}).generate(synth.ds, synth.graph, synth.vocab, num_examples=3)


def test_vocab_graph_mismatch(synth, umls):
    with pytest.raises(KGCError, match="does not match the graph"):
        get_signal("lcc").generate(synth.ds, synth.graph, umls.vocab)
