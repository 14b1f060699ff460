"""Contexts of link-prediction queries from a dataset's train graph (``graph_algos.context``).

One :class:`QueryContext` per (dataset, :class:`kgc.models.config.ContextConfig`): it builds the
train graph and ranks each node's edges once, then answers ``items(queries)`` for any queries of
any split with the same deterministic rule (training, validation, ``kgc.evaluate`` and
``kgc.predict`` alike). Valid and test facts never enter: the graph is the train split's.
"""

from __future__ import annotations

import numpy as np
import torch

from kgc.errors import KGCError


class QueryContext:
    """Context items of queries: ``items(queries) -> (entity, label, anchor)``, each (Q, budget)."""

    def __init__(self, graph, train_facts, budget: int, sampling: str = "degree", seed: int = 0):
        from graph_algos.context import context_edge_order

        if budget < 1:
            raise KGCError(f"context budget must be >= 1 for a QueryContext, got {budget}")
        self.graph = graph
        self.facts = np.ascontiguousarray(np.asarray(train_facts, dtype=np.int64))
        self.budget = int(budget)
        self.sampling, self.seed = sampling, int(seed)
        self.order = context_edge_order(graph, sampling, self.seed)

    @classmethod
    def for_dataset(cls, ds, cfg) -> "QueryContext | None":
        """The context of ``cfg`` (a ``ContextConfig``) on dataset ``ds``; None when ``cfg.budget == 0``."""
        from graph_algos.graph import KGraph

        if cfg.budget == 0:
            return None
        train = ds.splits["train"]
        graph = KGraph.from_facts(train, ds.num_entities, ds.num_relations)
        return cls(graph, train.numpy() if isinstance(train, torch.Tensor) else train, cfg.budget, cfg.sampling, cfg.seed)

    def items(self, queries) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from graph_algos.context import query_context

        ent, lab, anc = query_context(
            self.graph, self.order, self.facts, queries.context.numpy(), queries.anchor_positions().numpy(),
            queries.relation.numpy(), self.budget,
        )
        return torch.from_numpy(ent), torch.from_numpy(lab), torch.from_numpy(anc)

    def batch(self, queries, vocab):
        """``queries.to_batch(vocab, self.items(queries))``."""
        return queries.to_batch(vocab, self.items(queries))


def query_batch(queries, vocab, context: QueryContext | None):
    """The :class:`~kgc.models.batch.LPBatch` of ``queries``, with ``context`` items when given."""
    return queries.to_batch(vocab) if context is None else context.batch(queries, vocab)
