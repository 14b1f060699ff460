"""Signals on a small n-ary (hypergraph) dataset: clique-expansion labels, valid steps, no held-out leakage."""

from __future__ import annotations

import numpy as np
import pytest

from graph_algos.graph import KGraph
from kgc.data.dataset import KGDataset
from pretrain_tasks import SIGNALS, build_vocab, get_signal


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
