import numpy as np
import pytest
from hypothesis import given, settings

from kgc import KGCError
from graph_algos import KGraph, role_pairs

from ga_strategies import fact_arrays, ref_edges


def test_docstring_example():
    facts = np.array([[0, 0, 1], [1, 1, 2], [0, 2, 2]])
    g = KGraph.from_facts(facts, num_entities=4, num_relations=2)
    assert (g.num_nodes, g.num_edges, g.num_labels) == (4, 6, 4)
    assert g.indptr.tolist() == [0, 1, 3, 6, 6]
    assert g.dst.tolist() == [1, 2, 0, 2, 2, 1]
    assert g.label.tolist() == [0, 1, 2, 0, 2, 3]
    assert g.fact.tolist() == [0, 1, 0, 2, 2, 1]
    assert g.label_names_for(["a", "b"]) == ["a", "b", "a^-1", "b^-1"]
    assert g.simple_indptr.tolist() == [0, 1, 3, 4, 4]
    assert g.simple_indices.tolist() == [1, 0, 2, 1]
    assert role_pairs(3) == [(0, 1), (1, 0), (0, 2), (1, 2), (2, 0), (2, 1)]


def test_nary_labels_and_table():
    facts = np.array([[1, 5, 6, 7], [0, 1, 2, -1]])
    g = KGraph.from_facts(facts, num_entities=8, num_relations=2, relation_names=["p", "q"])
    assert g.num_labels == 2 * 3 * 2
    assert g.num_edges == 6 + 2
    # q(5, 6, 7): role 0 -> 2 is pair index 2 -> label 2 * R + 1 = 5
    e = np.flatnonzero((g.src == 5) & (g.dst == 7))
    assert g.label[e].tolist() == [5]
    assert g.label_table[5].tolist() == [1, 0, 2]
    assert g.label_table[3].tolist() == [1, 1, 0]
    assert g.label_names[5] == "q[0->2]" and g.label_names[3] == "q^-1"
    assert sorted(g.fact_edges(1).tolist()) == sorted(np.flatnonzero(g.fact == 1).tolist())
    assert len(g.fact_edges(0)) == 6


@settings(max_examples=40, deadline=None)
@given(fact_arrays())
def test_csr_matches_reference_edges(data):
    facts, n, R = data
    g = KGraph.from_facts(facts, n, R)
    ref = sorted(ref_edges(facts, R))
    got = sorted(zip(g.src.tolist(), g.label.tolist(), g.dst.tolist(), g.fact.tolist()))
    assert got == ref
    assert np.all(np.diff(g.src) >= 0)
    assert np.array_equal(np.repeat(np.arange(n), np.diff(g.indptr)), g.src)
    # in-CSR lists the same edges by dst
    assert np.array_equal(np.sort(g.dst[g.in_edges]), g.dst[g.in_edges])
    assert g.label_table.shape == (g.num_labels, 3)
    # every edge has its reverse (same fact, swapped roles)
    fwd = set(zip(g.src.tolist(), g.dst.tolist(), g.fact.tolist()))
    assert all((d, s, f) in fwd for s, d, f in fwd)


def test_torch_input_and_fingerprint():
    import torch

    facts = np.array([[0, 0, 1], [1, 1, 2]])
    g1 = KGraph.from_facts(torch.tensor(facts), 3, 2)
    g2 = KGraph.from_facts(facts, 3, 2)
    assert g1.fingerprint == g2.fingerprint
    assert KGraph.from_facts(facts[:1], 3, 2).fingerprint != g2.fingerprint


@pytest.mark.parametrize(
    "facts, match",
    [
        (np.array([0, 1, 2]), "shape"),
        (np.array([[2, 0, 1]]), "relation 2"),
        (np.array([[0, 0, 9]]), "entity id out of range"),
        (np.array([[0, 0, -1]]), "at least two entities"),
        (np.array([[0, 0, 1, -1, 2]]), "after -1"),
        (np.array([[0.0, 0, 1]]), "integer"),
    ],
)
def test_bad_facts(facts, match):
    with pytest.raises(KGCError, match=match):
        KGraph.from_facts(facts, 3, 2)


def test_label_names_wrong_count():
    g = KGraph.from_facts(np.array([[0, 0, 1]]), 2, 1)
    with pytest.raises(KGCError, match="relation_names"):
        g.label_names_for(["a", "b"])
