"""The lcc signal's documented buckets, recomputed with networkx (shared by the lcc tests)."""

from __future__ import annotations

import networkx as nx
import numpy as np


def expected_lcc_buckets(G: nx.Graph, num_entities: int, B: int):
    """(degree buckets (E,), clustering buckets (E,), entities with an edge) of the simple graph ``G``:
    degree edges at the quantiles k / B of the active entities' degrees; clustering bucket 0 iff the
    coefficient is 0, else 1 + the bucket among the quantiles k / (B - 1) of the non-zero ones."""
    deg = np.array([G.degree(e) for e in range(num_entities)])
    cc = np.array([nx.clustering(G, e) for e in range(num_entities)])
    act = np.flatnonzero(deg > 0)
    q = np.unique(np.quantile(deg[act].astype(float), np.arange(1, B) / B))
    exp_d = np.searchsorted(q, deg, side="right")
    nz = cc[act][cc[act] > 0]
    qc = np.unique(np.quantile(nz, np.arange(1, B - 1) / (B - 1)))
    exp_c = np.where(cc > 0, np.minimum(1 + np.searchsorted(qc, cc, side="right"), B - 1), 0)
    return exp_d, exp_c, act
