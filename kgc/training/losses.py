"""Training losses, injected into the task modules (``kgc.training.module``).

A loss object is called as ``loss(model, batch)``; the module never decides *which* loss it computes.

* :class:`SignalLoss` (pretraining, :class:`~pretrain_tasks.batching.SignalBatch`): next-token cross-entropy
  at target positions, against the tied output layer. ``full`` scores every target over the whole vocabulary
  (``model.token_weight()`` + ``model.token_bias()``, fused by ``kernels.linear_cross_entropy``: the (N, V)
  logits are never kept for backward); ``typed`` scores a target over its token class (structure tokens or
  entities); ``sampled`` (the pretraining default) replaces the entity softmax by a logQ-corrected sampled
  softmax. Returns ``(mean loss, stats)`` with per-token ``tok_loss``, ``correct`` and ``row``.
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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kgc.errors import KGCError
from kgc.models.batch import LPBatch
from pretrain_tasks.batching import SignalBatch
from pretrain_tasks.examples import IGNORE_INDEX as IGNORE


@dataclass(frozen=True)
class TokenLayout:
    """The token classes :class:`SignalLoss` needs (from :class:`kgc.vocab.Vocabulary`): ids below
    ``entity_offset`` are structure tokens (specials, task, role, hop, bucket and relation-label
    tokens), ``[relation_offset, entity_offset)`` the relation labels, ``sep``/``hop1`` the tokens
    after which a path's first step or a 1-hop item starts from the prompt's entity."""

    relation_offset: int
    entity_offset: int
    num_entities: int
    sep: int
    hop1: int

    @classmethod
    def of(cls, vocab) -> "TokenLayout":
        return cls(vocab.relation_offset, vocab.entity_offset, vocab.num_entities, vocab.sep, vocab.hop(1))


def direct_anchors(tokens: torch.Tensor, layout: TokenLayout, segments: torch.Tensor | None = None) -> torch.Tensor:
    """The entity each relation token of a signal sequence steps from: tokens (B, L) -> (B, L) entity
    ids (0-based), -1 where there is none.

    At a relation-label position ``j`` the next token is the entity the relation leads to, and the
    entity it leaves from is ``tokens[j - 1]`` when that is an entity (every later step of a walk or
    path: ``... e_{i-1} r_i e_i``), or the sequence's first prompt token (the token after the task
    token) when ``tokens[j - 1]`` is SEP (the first step of ``random_walk``, ``shortest_path`` and
    ``ig_path``, which start at the prompt's first entity) or ``[HOP_1]`` (a ``khop`` item of the
    centre). Other positions (items of hop >= 2, prompts, buckets) get -1. ``segments`` (B, L):
    packed rows (1.. per sequence, 0 on PAD); each sequence's first prompt token is then its own.

    >>> lay = TokenLayout(relation_offset=10, entity_offset=20, num_entities=5, sep=3, hop1=7)
    >>> direct_anchors(torch.tensor([[6, 21, 3, 11, 22, 12, 24, 2]]), lay).tolist()  # [TASK] e1 SEP r e2 r e4 EOS
    [[-1, -1, -1, 1, -1, 2, -1, -1]]
    """
    B, L = tokens.shape
    idx = torch.arange(L, device=tokens.device).expand(B, L)
    if segments is None:
        start = torch.zeros_like(tokens)
    else:  # index of each token's segment start, carried forward
        prev_seg = torch.cat([torch.zeros_like(segments[:, :1]), segments[:, :-1]], 1)
        first = (segments != prev_seg) & (segments > 0)
        start = torch.where(first, idx, torch.zeros_like(idx)).cummax(1).values
    head = tokens.gather(1, (start + 1).clamp_max(L - 1))  # (B, L) the sequence's first prompt token
    prev = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], 1)  # (B, L) tokens[j - 1]
    is_ent = lambda t: (t >= layout.entity_offset) & (t < layout.entity_offset + layout.num_entities)  # noqa: E731
    is_rel = (tokens >= layout.relation_offset) & (tokens < layout.entity_offset)
    from_head = ((prev == layout.sep) | (prev == layout.hop1)) & is_ent(head)
    anchor_tok = torch.where(is_ent(prev), prev, torch.where(from_head, head, torch.full_like(tokens, -1)))
    ok = is_rel & (anchor_tok >= 0) & (idx > 0)
    return torch.where(ok, anchor_tok - layout.entity_offset, torch.full_like(tokens, -1))


class SignalLoss:
    """Next-token cross-entropy at the target positions of a :class:`SignalBatch`.

    ``loss(model, batch, exact=False) -> (mean loss, stats)``; stats are per target token: ``tok_loss``
    (N,), ``correct`` (N,) (argmax over the candidates the token was scored against) and ``row`` (N,)
    (its batch row). Query vectors ``q = query_vectors(h)`` (N, D) at the target positions, plus, with
    ``direct`` and a model with a direct term, the direct term of the step's ``(anchor entity,
    relation)`` for entity targets (:func:`direct_anchors`): the ``q`` of link prediction's ``(h, r, ?)``.

    kinds (``kgc.training.config.SignalLossConfig``):
      * ``full``: over the whole vocabulary, ``W = model.token_weight()`` (V, D) + ``model.token_bias()``,
        fused by ``kernels.linear_cross_entropy`` - the reference;
      * ``typed``: a structure target (id < entity_offset) over the structure tokens ``W[:entity_offset]``,
        an entity target over all entities (``model.entity_weight()`` (E, D) + ``entity_bias()``);
      * ``sampled``: structure targets as ``typed``; an entity target ``y`` of row ``i`` over the set ``U``
        of the batch's distinct entity targets (``in_batch``; else ``{y}``) and ``K = negatives`` shared
        uniform draws ``S_k`` (with replacement) from all ``E`` entities, dropping draws in ``U``:
        ``Z_i = sum_{u in U} exp(s_iu) + (E / K) sum_k [S_k not in U] exp(s_iS_k)``, i.e. each draw's logit
        gets the logQ correction ``-log(K * Q) = log(E / K)`` (``Q = 1 / E``). ``E[Z_i]`` is the exact
        partition function, so ``log Z_i`` (the loss) is a consistent estimate of the full entity loss
        (unbiased as ``K -> inf``); tests/training/test_losses.py checks both. ``K >= E`` takes the
        exact entity softmax instead. ``exact=True`` (validation) always takes ``typed``.

    ``balance`` (:meth:`reduce`): ``tokens`` averages the batch's target tokens; ``tasks`` averages
    each task's token mean, for mixed-task steps (``signals.step_tasks: mixed``).
    """

    def __init__(self, kind: str = "full", negatives: int = 1024, in_batch: bool = True, direct: bool = False,
                 layout: TokenLayout | None = None, balance: str = "tokens"):
        if kind not in ("full", "typed", "sampled"):
            raise KGCError(f"signal loss kind must be 'full', 'typed' or 'sampled', got {kind!r}")
        if balance not in ("tokens", "tasks"):
            raise KGCError(f"signal loss balance must be 'tokens' or 'tasks', got {balance!r}")
        self.balance = balance
        if direct and layout is None:
            raise KGCError("SignalLoss(direct=True) needs the vocabulary's TokenLayout")
        self.kind, self.negatives, self.in_batch, self.direct, self.layout = kind, int(negatives), bool(in_batch), \
            bool(direct), layout

    @classmethod
    def from_config(cls, cfg, vocab) -> "SignalLoss":
        """From a :class:`kgc.training.config.SignalLossConfig` and the run's vocabulary."""
        return cls(cfg.kind, cfg.negatives, cfg.in_batch, cfg.direct, TokenLayout.of(vocab), cfg.balance)

    def reduce(self, tok_loss: torch.Tensor, task_of_tok: torch.Tensor) -> torch.Tensor:
        """The batch loss from per-token losses (N,): their mean (``balance="tokens"``), or the mean over
        the batch's tasks of each task's mean token loss (``"tasks"``; ``task_of_tok`` (N,) the task of
        each token), so that a mixed-task step weighs its tasks as single-task steps do. With one task in
        the batch both are the token mean."""
        if self.balance == "tokens" or tok_loss.numel() == 0:
            return tok_loss.mean()
        tasks, inv = torch.unique(task_of_tok, return_inverse=True)  # (T,), (N,)
        total = tok_loss.new_zeros(len(tasks)).index_add_(0, inv, tok_loss)  # (T,)
        count = tok_loss.new_zeros(len(tasks)).index_add_(0, inv, torch.ones_like(tok_loss))  # (T,)
        return (total / count).mean()

    # ---- query vectors -------------------------------------------------------------------------
    def queries(self, model, batch: SignalBatch):
        """-> q (N, D), y (N,) target token ids, row (N,) of the target positions."""
        h = batch.encode_with(model)  # (B, L, D), unpacked or packed rows alike
        sel = batch.labels != IGNORE  # (B, L)
        q = model.query_vectors(h[sel])  # (N, D)
        y = batch.labels[sel]  # (N,)
        row = torch.nonzero(sel, as_tuple=True)[0]  # (N,)
        direct = getattr(model, "direct", None)
        if self.direct and direct is not None:
            anchor = direct_anchors(batch.tokens, self.layout, batch.segments)[sel]  # (N,)
            use = (anchor >= 0) & (y >= model.entity_offset)
            if bool(use.any()):
                a = anchor[use][:, None]  # (n, 1) the step's source entity
                qd = direct(a, torch.zeros_like(a), batch.tokens[sel][use], torch.ones_like(a[:, 0]),
                            model.entity_weight())  # (n, D); roles as a binary (h, r, ?) query
                q = q.index_put((torch.nonzero(use, as_tuple=True)[0],), q[use] + qd.to(q.dtype))
        return q, y, row

    def __call__(self, model, batch: SignalBatch, exact: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import kernels

        q, y, row = self.queries(model, batch)
        kind = "typed" if exact and self.kind == "sampled" else self.kind
        if kind == "full":
            weight, bias = model.token_weight(), model.token_bias()  # (V, D), (V,) | None
            tok_loss = kernels.linear_cross_entropy(q, weight, y, bias=bias, reduction="none")  # (N,)
            correct = _chunked_correct(q, weight, bias, y)
        else:
            off = model.entity_offset
            tok_loss = q.new_zeros(q.shape[0], dtype=torch.float32 if q.dtype != torch.float64 else q.dtype)
            correct = torch.zeros_like(tok_loss)
            ent = y >= off  # (N,) entity targets
            st = ~ent
            if bool(st.any()):  # structure targets over the structure block (a few hundred tokens)
                logits = _at_least_f32(F.linear(q[st], model.token_weight()[:off]))  # (n_s, off)
                ys = y[st]
                tok_loss = tok_loss.index_put((st.nonzero(as_tuple=True)[0],),
                                              F.cross_entropy(logits, ys, reduction="none").to(tok_loss.dtype))
                correct[st] = (logits.argmax(-1) == ys).to(correct.dtype)
            if bool(ent.any()):
                qe, ye = q[ent], y[ent] - off  # (n_e, D), (n_e,) entity ids
                W, b = model.entity_weight(), model.entity_bias()  # (E, D), (E,) | None
                if kind == "sampled" and self.negatives < W.shape[0]:
                    le, ce = self.sampled_entity_loss(qe, ye, W, b)
                else:
                    le = kernels.linear_cross_entropy(qe, W, ye, bias=b, reduction="none")
                    ce = _chunked_correct(qe, W, b, ye)
                idx = ent.nonzero(as_tuple=True)[0]
                tok_loss = tok_loss.index_put((idx,), le.to(tok_loss.dtype))
                correct[ent] = ce.to(correct.dtype)
        return self.reduce(tok_loss, batch.task[row]), {"tok_loss": tok_loss.detach(), "correct": correct.detach(), "row": row}

    def sampled_entity_loss(self, q: torch.Tensor, y: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                            negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled-softmax loss of entity targets (see the class docstring): q (n, D), y (n,) entity ids,
        W (E, D), b (E,) | None, negatives (K,) the shared draws (default: ``negatives`` uniform draws
        from the global torch RNG) -> (loss (n,), correct (n,) over the scored candidates)."""
        E = W.shape[0]
        if negatives is None:
            negatives = torch.randint(0, E, (self.negatives,), device=q.device)
        K = negatives.shape[0]
        if self.in_batch:
            U, pos = torch.unique(y, return_inverse=True)  # (u,), (n,) column of each row's own target
            sU = F.linear(q, W[U], None if b is None else b[U])  # (n, u)
            in_u = torch.isin(negatives, U)  # (K,) draws already scored exactly
            sS = F.linear(q, W[negatives], None if b is None else b[negatives])  # (n, K)
            sS = sS.masked_fill(in_u[None, :], float("-inf"))
        else:
            pos = torch.zeros_like(y)
            sU = (q * W[y]).sum(-1, keepdim=True) + (0 if b is None else b[y][:, None])  # (n, 1)
            sS = F.linear(q, W[negatives], None if b is None else b[negatives])  # (n, K)
            sS = sS.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
        logits = _at_least_f32(torch.cat([sU, sS + math.log(E / K)], 1))  # (n, u + K), logQ-corrected draws
        loss = torch.logsumexp(logits, 1) - logits.gather(1, pos[:, None])[:, 0]
        with torch.no_grad():
            correct = (logits.argmax(1) == pos).float()
        return loss, correct

    def __repr__(self) -> str:
        return (f"SignalLoss(kind={self.kind!r}, negatives={self.negatives}, in_batch={self.in_batch}, "
                f"direct={self.direct})")


def _at_least_f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def _chunked_correct(q: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    """(N,) float: whether the argmax of ``q @ weight.T + bias`` is ``y``, in chunks of about 64 MB."""
    with torch.no_grad():
        correct = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
        step = max(1, (64 * 2**20) // (4 * weight.shape[0]))
        for a in range(0, q.shape[0], step):
            logits = q[a : a + step].float() @ weight.float().T
            if bias is not None:
                logits += bias.float()
            correct[a : a + step] = (logits.argmax(-1) == y[a : a + step]).float()
    return correct


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
