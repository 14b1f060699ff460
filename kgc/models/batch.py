"""Typed batches: :class:`LPBatch` (what :meth:`kgc.models.base.KGCModel.lp_forward` reads) and
:class:`SignalBatch` (pretraining, built by ``pretrain_tasks.batching.collate``).

LPBatch is built by :meth:`kgc.evaluation.queries.LinkPredictionQueries.to_batch` (one row per query) and
cut into training/evaluation batches by ``kgc.training.lp_data``. Lightning moves dataclass
batches between devices with their ``.to(device)`` (``move_data_to_device`` calls it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class LPBatch:
    """One batch of link-prediction queries (all int64).

    tokens, roles (B, L): ``[TASK_lp, item_1..item_k, PAD.., rel(label), ent(c_1)..ent(c_n), MASK, PAD..]``
        (items only with a context; the MASK is the last non-pad token).
    extra (B, L) | None: the label token of each context item, PAD elsewhere.
    relation_token (B,): the query's relation label token; anchors, anchor_roles (B, W): the known
        entity ids (-1 pad) and their role ids; target_role (B,): the queried role.
    target (B,): one true answer; query_index (B,): row of the query in its split.
    target_indptr (B + 1,), target_indices (nnz,) | None: all train answers (KvsAll training).
    """

    tokens: torch.Tensor
    roles: torch.Tensor
    extra: torch.Tensor | None
    relation_token: torch.Tensor
    anchors: torch.Tensor
    anchor_roles: torch.Tensor
    target_role: torch.Tensor
    target: torch.Tensor
    query_index: torch.Tensor
    target_indptr: torch.Tensor | None = None
    target_indices: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    #: fields indexed by column as well as by row
    COLUMN_FIELDS = ("tokens", "roles", "extra")
    #: fields that are not per row (CSR multi-label targets)
    CSR_FIELDS = ("target_indptr", "target_indices")

    def _map(self, fn, names) -> "LPBatch":
        return replace(self, **{n: None if getattr(self, n) is None else fn(getattr(self, n)) for n in names})

    def to(self, device) -> "LPBatch":
        return self._map(lambda t: t.to(device), [f.name for f in fields(self)])

    def rows(self, ix: torch.Tensor) -> "LPBatch":
        """Rows ``ix`` (the CSR targets are dropped: they are set per batch by the data module)."""
        out = self._map(lambda t: t[ix], [f.name for f in fields(self) if f.name not in self.CSR_FIELDS])
        return replace(out, target_indptr=None, target_indices=None)

    def columns(self, cols: torch.Tensor) -> "LPBatch":
        """Token columns ``cols`` of every row (the per-query fields are unchanged)."""
        return self._map(lambda t: t[:, cols], self.COLUMN_FIELDS)


@dataclass
class LPOutput:
    """``lp_forward`` result: query (B, D) scored against the entity table; with a pointer,
    item_entity (B, L) (-1 where a position is no item) and item_logit (B, L) (0 there)."""

    query: torch.Tensor
    item_entity: torch.Tensor | None = None
    item_logit: torch.Tensor | None = None
