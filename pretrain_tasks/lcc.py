"""``lcc`` signal: predict an entity's bucketed degree and local clustering coefficient.

Sequence: ``[TASK_lcc] e [SEP] DEG_b LCC_c [EOS]``.

Both quantities are computed by :mod:`graph_algos.clustering` on the undirected
simple view of the **train** graph (relations, directions, parallel edges and
self-loops ignored). ``B = vocab.num_buckets``. Buckets (edges computed on the
train graph's entities with degree >= 1, so they are a property of the dataset):

- degree, ``degree_buckets="quantile"`` (default): inner edges
  ``q_k = quantile(deg, k / B)`` for ``k = 1..B-1`` (numpy linear
  interpolation), de-duplicated; ``bucket = searchsorted(q, deg, side="right")``.
  Quantiles are invariant under the monotone ``log``, so these are log-scale
  quantiles too. ``"log"``: ``bucket = min(B-1, floor(B * log(deg) / log(max_deg + 1)))``
  (uniform on a log scale, ``deg >= 1``).
- clustering, ``clustering_buckets="quantile"`` (default): bucket 0 iff the
  coefficient is exactly 0; otherwise ``1 + searchsorted(q, c, side="right")``
  with ``q`` the de-duplicated quantiles of the non-zero coefficients at levels
  ``k / (B-1)``, ``k = 1..B-2``. ``"uniform"``: ``min(B-1, floor(c * B))`` on [0, 1].

``num_examples=None``: one example per entity with a train edge (ascending id);
fewer: a seeded sample without replacement (sorted); more: capped at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from graph_algos.clustering import degree as simple_degree
from graph_algos.clustering import local_clustering

from .base import Signal, active_entities, signal_rng
from .examples import SignalExamples, pack


@dataclass
class LCCConfig:
    num_examples: int | None = None
    degree_buckets: Literal["quantile", "log"] = "quantile"
    clustering_buckets: Literal["quantile", "uniform"] = "quantile"


def degree_bucket_edges(deg: np.ndarray, num_buckets: int) -> np.ndarray:
    levels = np.arange(1, num_buckets) / num_buckets
    return np.unique(np.quantile(deg.astype(np.float64), levels)) if len(deg) else np.zeros(0)


def bucket_degree(deg: np.ndarray, ref: np.ndarray, num_buckets: int, mode: str = "quantile") -> np.ndarray:
    """Degree buckets of ``deg`` with edges computed on the reference degrees ``ref`` (train, >= 1)."""
    deg = np.asarray(deg)
    if mode == "log":
        top = np.log(float(ref.max()) + 1.0) if len(ref) else 1.0
        b = np.floor(num_buckets * np.log(np.maximum(deg, 1)) / top)
        return np.clip(b, 0, num_buckets - 1).astype(np.int64)
    return np.searchsorted(degree_bucket_edges(ref, num_buckets), deg, side="right").astype(np.int64)


def clustering_bucket_edges(ref: np.ndarray, num_buckets: int) -> np.ndarray:
    nz = ref[ref > 0]
    if not len(nz) or num_buckets < 3:
        return np.zeros(0)
    return np.unique(np.quantile(nz, np.arange(1, num_buckets - 1) / (num_buckets - 1)))


def bucket_clustering(c: np.ndarray, ref: np.ndarray, num_buckets: int, mode: str = "quantile") -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if mode == "uniform":
        return np.clip(np.floor(c * num_buckets), 0, num_buckets - 1).astype(np.int64)
    b = 1 + np.searchsorted(clustering_bucket_edges(ref, num_buckets), c, side="right")
    return np.where(c > 0, np.minimum(b, num_buckets - 1), 0).astype(np.int64)


class LCCSignal(Signal):
    name = "lcc"
    Config = LCCConfig

    def buckets(self, graph, num_buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """(degree bucket, clustering bucket) of every node, (num_nodes,) each."""
        deg = simple_degree(graph)
        cc = local_clustering(graph)
        act = active_entities(graph)
        db = bucket_degree(deg, deg[act], num_buckets, self.config.degree_buckets)
        cb = bucket_clustering(cc, cc[act], num_buckets, self.config.clustering_buckets)
        return db, cb

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:
        ents = active_entities(graph)
        if num_examples is not None and num_examples < len(ents):
            rng = signal_rng(seed, self.name)
            ents = np.sort(rng.choice(ents, size=num_examples, replace=False))
        db, cb = self.buckets(graph, vocab.num_buckets)
        target = np.stack([vocab.deg_bucket(db[ents]), vocab.lcc_bucket(cb[ents])], axis=1)
        return pack(self.name, vocab.task(self.name), vocab.sep, vocab.eos, vocab.ent(ents)[:, None],
                    target, np.full(len(ents), 2), source=ents)
