"""Training losses, injected into the task modules (``kgc.training.module``).

A loss object is called as ``loss(model, batch)``; the module never decides *which* loss it computes.

* :class:`SignalLoss` (pretraining, :class:`~kgc.models.batch.SignalBatch`): next-token cross-entropy over
  the whole vocabulary at target positions, against the tied output layer ``model.token_weight()``
  (+ ``model.token_bias()``), fused by ``kernels.linear_cross_entropy`` (the (N, V) logits are never kept
  for backward). Returns ``(mean loss, stats)`` with per-token ``tok_loss``, ``correct`` and ``row``.
* :class:`OneVsAllLoss` / :class:`KvsAllLoss` (link prediction, :class:`~kgc.models.batch.LPBatch`):
  label-smoothed 1-N cross-entropy over all entities, with ``batch.target`` (1vsAll) or with the uniform
  target over all of the query's train answers ``batch.target_indptr``/``target_indices`` (KvsAll). Both
  are :class:`LabelSmoothedCE`: without a context pointer fused by ``kernels.linear_cross_entropy``, with
  one the (B, E) scores are formed densely and ``kernels.cross_entropy_from_logits`` takes the same loss.

The ``targets: single|all`` option of fine-tuning picks the loss (:func:`lp_loss_for`); the data module
still reads it too, because KvsAll needs one example per *distinct* query with its answers attached
(``LinkPredictionDataModule(targets=...)``), which is a property of the data, not of the loss.
"""

from __future__ import annotations

import torch

from kgc.errors import KGCError
from kgc.models.batch import LPBatch
from pretrain_tasks.batching import SignalBatch


class SignalLoss:
    """Next-token cross-entropy over the vocabulary (see the module docstring)."""

    def __call__(self, model, batch: SignalBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import kernels

        labels = batch.labels
        h = model.encode(batch.tokens, batch.prefix_len, None)  # (B, L, D)
        sel = labels != -100  # (B, L)
        q = model.query_vectors(h[sel])  # (N, D)
        y = labels[sel]  # (N,)
        weight = model.token_weight()  # (V, D), tied output layer
        bias = model.token_bias()
        tok_loss = kernels.linear_cross_entropy(q, weight, y, bias=bias, reduction="none")  # (N,)
        with torch.no_grad():  # token accuracy from a chunked argmax
            correct = torch.empty_like(tok_loss)
            step = max(1, (64 * 2**20) // (4 * weight.shape[0]))
            for a in range(0, q.shape[0], step):
                logits = q[a : a + step].float() @ weight.float().T
                if bias is not None:
                    logits += bias.float()
                correct[a : a + step] = (logits.argmax(-1) == y[a : a + step]).float()
        row = torch.nonzero(sel, as_tuple=True)[0]  # (N,) batch row of each target token
        return tok_loss.mean(), {"tok_loss": tok_loss.detach(), "correct": correct, "row": row}

    def __repr__(self) -> str:
        return "SignalLoss()"


class LabelSmoothedCE:
    """Label-smoothed 1-N cross-entropy over all entities; subclasses say which targets a batch supplies.

    ``label_smoothing`` eps follows ``torch.nn.functional.cross_entropy``: q = (1 - eps) * p + eps / E."""

    def __init__(self, label_smoothing: float = 0.1):
        self.label_smoothing = float(label_smoothing)

    def targets(self, batch: LPBatch) -> dict:
        raise NotImplementedError

    def __call__(self, model, batch: LPBatch) -> torch.Tensor:
        import kernels

        out = model.lp_forward(batch)
        targets = self.targets(batch)
        if out.item_entity is None:  # no pointer: fused output layer + loss
            return kernels.linear_cross_entropy(out.query, model.entity_weight(), bias=model.entity_bias(),
                                                label_smoothing=self.label_smoothing, **targets)
        return kernels.cross_entropy_from_logits(model.lp_output_scores(out),
                                                 label_smoothing=self.label_smoothing, **targets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label_smoothing={self.label_smoothing})"


class OneVsAllLoss(LabelSmoothedCE):
    """1vsAll: the target of each row is its own answer ``batch.target``."""

    def targets(self, batch: LPBatch) -> dict:
        return dict(target=batch.target)


class KvsAllLoss(LabelSmoothedCE):
    """KvsAll: the target of each row is uniform over all its train answers (the batch's CSR targets,
    set by ``LinkPredictionDataModule(targets="all")``)."""

    def targets(self, batch: LPBatch) -> dict:
        if batch.target_indptr is None:
            raise KGCError("KvsAllLoss needs batches with all train answers (target_indptr/target_indices); "
                           "build the data module with targets='all'")
        return dict(target=None, target_indptr=batch.target_indptr, target_indices=batch.target_indices)


def lp_loss_for(targets: str, label_smoothing: float) -> LabelSmoothedCE:
    """The link-prediction loss of the fine-tuning ``targets`` option: ``single`` -> 1vsAll, ``all`` -> KvsAll."""
    if targets == "single":
        return OneVsAllLoss(label_smoothing)
    if targets == "all":
        return KvsAllLoss(label_smoothing)
    raise ValueError(f"targets must be 'single' or 'all', got {targets!r}")
