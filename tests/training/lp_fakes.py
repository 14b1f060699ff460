"""A stand-in for the link-prediction part of the model API, and hand-made LPBatch batches (loss/module tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kgc.models.batch import LPBatch, LPOutput

E, D, B = 7, 5, 4


class FakeLPModel(torch.nn.Module):
    """The part of the model API the link-prediction losses use; query vector = a row per query index."""

    def __init__(self, pointer: bool = False, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(E, D, generator=g, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.randn(E, generator=g, dtype=torch.float64))
        self.qv = torch.nn.Parameter(torch.randn(B, D, generator=g, dtype=torch.float64))
        self.pointer = pointer

    def lp_forward(self, batch: LPBatch) -> LPOutput:
        q = self.qv[batch.query_index]
        if not self.pointer:
            return LPOutput(q)
        item_entity = torch.tensor([[1, -1], [1, 1], [-1, -1], [6, 0]])[: len(batch)]
        item_logit = torch.where(item_entity >= 0, torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
        return LPOutput(q, item_entity, item_logit)

    def entity_weight(self):
        return self.w

    def entity_bias(self):
        return self.b

    def lp_output_scores(self, out: LPOutput) -> torch.Tensor:
        s = F.linear(out.query, self.w, self.b)
        if out.item_entity is not None:
            s = s.scatter_add(1, out.item_entity.clamp_min(0), out.item_logit)
        return s


def lp_batch(target, indptr=None, indices=None) -> LPBatch:
    n = len(target)
    z = torch.zeros(n, 3, dtype=torch.long)
    return LPBatch(tokens=z, roles=z, extra=None, relation_token=torch.zeros(n, dtype=torch.long),
                   anchors=torch.zeros(n, 1, dtype=torch.long), anchor_roles=torch.zeros(n, 1, dtype=torch.long),
                   target_role=torch.ones(n, dtype=torch.long), target=torch.tensor(target),
                   query_index=torch.arange(n), target_indptr=None if indptr is None else torch.tensor(indptr),
                   target_indices=None if indices is None else torch.tensor(indices))
