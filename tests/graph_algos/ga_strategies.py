"""Random small multi-relational graphs for the graph_algos property tests (self-loops,
parallel edges, isolated nodes and n-ary facts included) and independent references."""

from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from graph_algos.graph import role_pairs


@st.composite
def fact_arrays(draw, max_nodes=10, max_rel=3, max_facts=16, nary=True):
    """-> (facts (N, 1 + A), num_entities, num_relations)."""
    n = draw(st.integers(1, max_nodes))
    R = draw(st.integers(1, max_rel))
    A = draw(st.sampled_from([2, 3])) if nary else 2
    rows = draw(st.lists(st.tuples(st.integers(0, R - 1), st.integers(2, A),
                                   st.lists(st.integers(0, n - 1), min_size=A, max_size=A)),
                         min_size=0, max_size=max_facts))
    if draw(st.booleans()) and rows:  # parallel edges: duplicate some facts
        rows = rows + rows[: draw(st.integers(1, len(rows)))]
    facts = np.full((len(rows), 1 + A), -1, np.int64)
    for i, (r, k, ents) in enumerate(rows):
        facts[i, 0] = r
        facts[i, 1:1 + k] = ents[:k]
    return facts, n, R


def ref_edges(facts, R, skip_fact=-1):
    """Independent clique expansion -> list of (src, label, dst, fact)."""
    A = facts.shape[1] - 1
    out = []
    for f, row in enumerate(facts):
        if f == skip_fact:
            continue
        ents = [e for e in row[1:] if e >= 0]
        for k, (i, j) in enumerate(role_pairs(A)):
            if i < len(ents) and j < len(ents):
                out.append((int(ents[i]), k * R + int(row[0]), int(ents[j]), f))
    return out


def nx_graph(facts, n, R, skip_fact=-1) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from((s, d) for s, _, d, _ in ref_edges(facts, R, skip_fact))
    return G
