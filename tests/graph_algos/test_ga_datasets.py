"""Every graph algorithm runs on the FB15K-237, WN18RR and JF17K train graphs (a few hundred seeds)."""

import numpy as np
import pytest

import graph_algos as ga

NAMES = ["fb15k237", "wn18rr", "jf17k"]


@pytest.fixture(scope="module", params=NAMES)
def dataset(request, mirror):
    from kgc.data import load_dataset

    return load_dataset(request.param)


def test_all_algorithms_on_real_train_graph(dataset):
    ds = dataset
    facts = ds.splits["train"].numpy()
    g = ga.KGraph.from_dataset(ds)
    arity = (facts[:, 1:] >= 0).sum(1)
    assert g.num_nodes == ds.num_entities
    assert g.num_edges == int((arity * (arity - 1)).sum())
    assert len(g.label_names) == g.num_labels
    if ds.is_binary:
        assert g.num_labels == 2 * ds.num_relations
    rng = np.random.default_rng(0)
    has_edges = np.flatnonzero(g.out_degree > 0)
    seeds = rng.choice(has_edges, 200, replace=False)

    ents, labs = ga.random_walk(g, seeds, length=6, seed=0)
    assert (ents[:, 1:] >= 0).all() and (labs >= 0).all()  # symmetric graph: no dead ends
    # each step is an out-edge of the previous entity
    key = set(zip(g.src.tolist(), g.label.tolist(), g.dst.tolist())) if g.num_edges < 700_000 else None
    if key is not None:
        assert all((a, b, c) in key for a, b, c in zip(ents[:, :-1].ravel().tolist(), labs.ravel().tolist(),
                                                       ents[:, 1:].ravel().tolist()))

    dist = ga.bfs_distances(g, seeds[:50], max_depth=3)
    assert (dist[np.arange(50), seeds[:50]] == 0).all()

    targets = rng.choice(has_edges, 200)
    length, pe, pl = ga.shortest_paths(g, seeds, targets, max_depth=3)
    d3 = ga.bfs_distances(g, seeds, max_depth=3)[np.arange(200), targets]
    assert length.tolist() == d3.tolist()

    ptr, hop, lab, ent = ga.khop(g, seeds, k=2, budget=64, sampling="degree", seed=0)
    assert (np.diff(ptr) <= 64).all() and ((hop >= 1) & (hop <= 2)).all()

    lcc = ga.local_clustering(g)
    assert lcc.shape == (g.num_nodes,) and ((lcc >= 0) & (lcc <= 1)).all()

    ids = rng.choice(len(facts), 300, replace=False)
    res = ga.ig_paths(g, facts, fact_ids=ids, K=3, beam=4)
    found = res.length > 0
    assert found.mean() > 0.3
    assert (res.ig[found] <= np.log(g.num_nodes) + 1e-9).all()
    assert (res.entities[found, 0] == facts[ids[found], 1]).all()
    assert (res.entities[found, res.length[found]] == facts[ids[found], 2]).all()
