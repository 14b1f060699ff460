"""Fixtures for the pretraining-signal tests: synthetic KG and UMLS, their train graphs and vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from graph_algos.graph import KGraph


class KG:
    """A dataset with its train graph, vocabulary and edge-step sets for checks."""

    def __init__(self, ds):
        from pretrain_tasks import build_vocab

        self.ds = ds
        self.graph = KGraph.from_dataset(ds, "train")
        self.vocab = build_vocab(ds, self.graph)
        R = ds.num_relations
        tr = ds.triples("train").numpy()
        self.train_steps = {(h, r, t) for h, r, t in tr.tolist()} | {(t, r + R, h) for h, r, t in tr.tolist()}
        other = np.concatenate([ds.triples("valid").numpy(), ds.triples("test").numpy()])
        held = {(h, r, t) for h, r, t in other.tolist()} | {(t, r + R, h) for h, r, t in other.tolist()}
        self.heldout_only_steps = held - self.train_steps
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(ds.num_entities))
        g.add_edges_from((h, t) for h, _, t in tr.tolist() if h != t)
        self.nx = g


@pytest.fixture(scope="session")
def synth():
    from kgc.data import load_dataset

    return KG(load_dataset("synthetic"))


@pytest.fixture(scope="session")
def umls(mirror):
    from kgc.data import load_dataset

    return KG(load_dataset("umls"))


@pytest.fixture(params=["synth", "umls"])
def kg(request):
    return request.getfixturevalue(request.param)
