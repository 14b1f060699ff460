"""The relation-frequency prior: the floor that shows whether a model learned anything about entities.

It ignores the query's known entities altogether and scores each candidate ``e`` by how often
``e`` answers the query's relation **in that direction** in train: for a binary tail query
``(h, r, ?)`` the number of train facts ``r(x, e)``, for a head query ``(?, r, t)`` (label
``r^-1``) the number of train facts ``r(e, x)``; for an n-ary query, the number of train facts of
relation ``r`` with ``e`` at the queried position. A model whose MRR is not clearly above this
prior has learned the answer distribution of each relation, not the graph.

Use it like any score function::

    from kgc.evaluation import evaluate
    from kgc.evaluation.prior import RelationPrior
    evaluate(RelationPrior(ds), ds, "test").mrr        # FB15K-237 ~0.233, WN18RR ~0.026

Ties (every entity that never answers the relation scores 0) are ranked by the evaluator's tie
policy, realistic by default.
"""

from __future__ import annotations

import numpy as np
import torch

from kgc.evaluation.queries import LinkPredictionQueries


def _key(queries: LinkPredictionQueries) -> torch.Tensor:
    """(Q,) prior bucket: the label for binary queries (it encodes the direction), else
    ``relation * max_arity + queried position``."""
    if queries.is_binary:
        return queries.label
    return queries.relation * queries.max_arity + queries.target_role


class RelationPrior:
    """``score(queries) -> (B, E)`` train answer counts per (relation, direction or position)."""

    def __init__(self, ds):
        train = LinkPredictionQueries.from_dataset(ds, "train")
        self.num_entities = int(ds.num_entities)
        self.is_binary = bool(train.is_binary)
        pair = _key(train).numpy() * self.num_entities + train.target.numpy()
        uniq, counts = np.unique(pair, return_counts=True)
        self.keys = uniq // self.num_entities  # sorted
        self.entities = torch.from_numpy(uniq % self.num_entities)
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def __call__(self, queries: LinkPredictionQueries) -> torch.Tensor:
        key = _key(queries).numpy()
        lo = np.searchsorted(self.keys, key, side="left")
        hi = np.searchsorted(self.keys, key, side="right")
        rows = torch.from_numpy(np.repeat(np.arange(len(key)), hi - lo))
        idx = torch.from_numpy(np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] or [np.zeros(0, np.int64)]))
        scores = torch.zeros(len(key), self.num_entities)
        scores[rows, self.entities[idx]] = self.counts[idx]
        return scores
