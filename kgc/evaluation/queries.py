"""Link-prediction queries of a dataset split (DESIGN.md section 4).

Binary datasets (``max_arity == 2``): every fact ``(r, h, t)`` gives two
queries, in this order

* tail query ``(h, r, ?)``: ``label = r``, context ``h`` (role 0), target ``t`` (role 1), ``direction = 0``;
* head query ``(?, r, t)`` asked as ``(t, r^-1, ?)``: ``label = r + R``, context ``t`` (role 0),
  target ``h`` (role 1), ``direction = 1``.

N-ary datasets (HypE protocol): every position ``q`` of every fact of arity
``k`` is a query: ``label = r`` (the base relation), context = the other ``k - 1``
entities in position order with their positions as roles, target = the entity
at position ``q`` with ``target_role = q``; ``direction = q``. Queries are
ordered fact by fact, positions ascending.

So a split of ``N`` binary facts has ``2 N`` queries and an n-ary split has
``sum(arity)`` queries.

Context columns are left-packed: the ``n`` real context entities come first,
``-1`` pads the rest (entity and role alike).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from kgc.errors import KGCError

_TENSOR_FIELDS = (
    "label",
    "context",
    "context_roles",
    "target_role",
    "target",
    "fact_index",
    "direction",
    "arity",
    "relation",
)


def _check_facts(facts: torch.Tensor, num_entities: int | None, num_relations: int, what: str) -> torch.Tensor:
    facts = torch.as_tensor(facts)
    if facts.dim() != 2 or facts.shape[1] < 3:
        raise KGCError(f"{what}: facts must be (N, 1 + max_arity >= 3), got shape {tuple(facts.shape)}")
    if facts.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise KGCError(f"{what}: facts must be an integer tensor, got {facts.dtype}")
    facts = facts.to(torch.int64).cpu()
    if facts.shape[0] == 0:
        return facts
    rel = facts[:, 0]
    if int(rel.min()) < 0 or int(rel.max()) >= num_relations:
        bad = int(((rel < 0) | (rel >= num_relations)).nonzero()[0, 0])
        raise KGCError(f"{what}: row {bad} has relation id {int(rel[bad])} outside 0..{num_relations - 1}")
    ents = facts[:, 1:]
    pad = ents < 0
    if bool((ents < -1).any()):
        bad = int((ents < -1).any(1).nonzero()[0, 0])
        raise KGCError(f"{what}: row {bad} has a negative entity id other than the -1 pad")
    # pads must be trailing: once a column is -1 every later column is -1
    if bool((pad[:, :-1] & ~pad[:, 1:]).any()):
        bad = int((pad[:, :-1] & ~pad[:, 1:]).any(1).nonzero()[0, 0])
        raise KGCError(f"{what}: row {bad} has an entity after a -1 pad (pads must be trailing)")
    arity = (~pad).sum(1)
    if bool((arity < 2).any()):
        bad = int((arity < 2).nonzero()[0, 0])
        raise KGCError(f"{what}: row {bad} has arity {int(arity[bad])} (< 2)")
    if num_entities is not None and int(ents.max()) >= num_entities:
        bad = int((ents >= num_entities).any(1).nonzero()[0, 0])
        raise KGCError(f"{what}: row {bad} has an entity id >= num_entities ({num_entities})")
    return facts


@dataclass
class LinkPredictionQueries:
    """A batch of link-prediction queries; every field is an int64 CPU tensor of length ``Q``
    (``context``/``context_roles`` are ``(Q, W)`` with ``W = max_arity - 1``)."""

    label: torch.Tensor          # (Q,) relation label: r (tail / n-ary) or r + R (head query)
    context: torch.Tensor        # (Q, W) known entity ids, left-packed, -1 pad
    context_roles: torch.Tensor  # (Q, W) role (position) of each context entity, -1 pad
    target_role: torch.Tensor    # (Q,) role of the queried position
    target: torch.Tensor         # (Q,) true entity id
    fact_index: torch.Tensor     # (Q,) row of the fact in its split
    direction: torch.Tensor      # (Q,) binary: 0 tail / 1 head; n-ary: queried position
    arity: torch.Tensor          # (Q,) arity of the fact
    relation: torch.Tensor       # (Q,) base relation id
    num_relations: int = 0       # R (base relations); labels lie in [0, 2R) for binary data
    is_binary: bool = True

    def __post_init__(self) -> None:
        q = self.label.shape[0]
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
                raise KGCError(f"LinkPredictionQueries.{name} must be an int64 tensor")
            if t.shape[0] != q:
                raise KGCError(f"LinkPredictionQueries.{name} has {t.shape[0]} rows, expected {q}")
        if self.context.dim() != 2 or self.context.shape != self.context_roles.shape:
            raise KGCError("LinkPredictionQueries.context and context_roles must both be (Q, W)")

    # ---- construction --------------------------------------------------------
    @classmethod
    def from_facts(
        cls,
        facts: torch.Tensor,
        num_relations: int,
        is_binary: bool | None = None,
        num_entities: int | None = None,
    ) -> "LinkPredictionQueries":
        """Queries of ``facts`` (N, 1 + max_arity) ``[r, e1..ek, -1 pad]``.

        ``is_binary`` defaults to ``max_arity == 2`` (binary protocol with inverse labels).
        """
        facts = _check_facts(facts, num_entities, num_relations, "link-prediction facts")
        n, width = facts.shape
        max_arity = width - 1
        if is_binary is None:
            is_binary = max_arity == 2
        if is_binary and max_arity != 2:
            raise KGCError(f"binary link-prediction protocol needs max_arity 2, got {max_arity}")
        rel = facts[:, 0]
        ents = facts[:, 1:]
        arity = (ents >= 0).sum(1)
        positions = torch.arange(max_arity)
        if is_binary:
            # per fact: tail query (position 1 queried) then head query (position 0 queried)
            qpos = torch.tensor([1, 0]).repeat(n)
            fidx = torch.arange(n).repeat_interleave(2)
        else:
            valid = positions.unsqueeze(0) < arity.unsqueeze(1)  # (N, A) fact-major order
            fidx, qpos = valid.nonzero(as_tuple=True)
        f_ents = ents[fidx]  # (Q, A)
        target = f_ents.gather(1, qpos.unsqueeze(1)).squeeze(1)
        # context = all columns but the queried one, keeping order (stays left-packed)
        keep = positions.unsqueeze(0) != qpos.unsqueeze(1)  # (Q, A), exactly A-1 True per row
        cols = positions.unsqueeze(0).expand_as(keep)[keep].view(-1, max_arity - 1)
        context = f_ents.gather(1, cols)
        context_roles = torch.where(context >= 0, cols, torch.full_like(cols, -1))
        relation = rel[fidx]
        q_arity = arity[fidx]
        if is_binary:
            head = qpos == 0
            label = torch.where(head, relation + num_relations, relation)
            direction = head.to(torch.int64)
            # in the label's own frame the context is always role 0 and the target role 1
            context_roles = torch.zeros_like(context)
            target_role = torch.ones_like(target)
        else:
            label = relation.clone()
            direction = qpos.clone()
            target_role = qpos.clone()
        return cls(
            label=label,
            context=context.contiguous(),
            context_roles=context_roles.contiguous(),
            target_role=target_role,
            target=target,
            fact_index=fidx.to(torch.int64),
            direction=direction,
            arity=q_arity,
            relation=relation,
            num_relations=int(num_relations),
            is_binary=bool(is_binary),
        )

    @classmethod
    def from_dataset(cls, dataset, split: str = "test") -> "LinkPredictionQueries":
        """Queries of ``dataset.splits[split]`` (a ``kgc.data.KGDataset`` or anything with its attributes)."""
        splits = getattr(dataset, "splits", None)
        if not isinstance(splits, dict) or split not in splits:
            have = ", ".join(sorted(splits)) if isinstance(splits, dict) else "none"
            raise KGCError(f"dataset {getattr(dataset, 'name', '?')!r} has no split {split!r} (splits: {have})")
        return cls.from_facts(
            splits[split],
            num_relations=int(dataset.num_relations),
            is_binary=bool(dataset.is_binary),
            num_entities=int(dataset.num_entities),
        )

    # ---- container protocol ----------------------------------------------------
    def __len__(self) -> int:
        return int(self.label.shape[0])

    def __getitem__(self, idx) -> "LinkPredictionQueries":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return self._map(lambda t: t[idx])

    def _map(self, fn) -> "LinkPredictionQueries":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _TENSOR_FIELDS:
            kw[name] = fn(kw[name])
        return LinkPredictionQueries(**kw)

    @staticmethod
    def cat(parts: list["LinkPredictionQueries"]) -> "LinkPredictionQueries":
        if not parts:
            raise KGCError("cannot concatenate an empty list of queries")
        first = parts[0]
        kw = {f.name: getattr(first, f.name) for f in fields(first)}
        for name in _TENSOR_FIELDS:
            kw[name] = torch.cat([getattr(p, name) for p in parts])
        return LinkPredictionQueries(**kw)

    @property
    def max_arity(self) -> int:
        return int(self.context.shape[1]) + 1

    @property
    def num_context(self) -> torch.Tensor:
        """(Q,) number of real context entities."""
        return (self.context >= 0).sum(1)

    # ---- model input -------------------------------------------------------------
    def to_tokens(self, vocab) -> tuple[torch.Tensor, torch.Tensor]:
        """Token and role ids ``(Q, L)`` in the "Link-prediction sequences" layout.

        Row ``i`` is ``[TASK_lp, rel(label), ent(c_1), ..., ent(c_n), MASK]`` with roles
        ``[0, 0, role(c_1), ..., role(c_n), target_role]``; the queried position (MASK)
        is last. Rows are padded on the **right** with PAD (token 0, role 0) to the
        longest row of the batch, ``L = 3 + max n``; the model reads the hidden state
        at the last non-pad position, :func:`kgc.models.base.last_positions` (the one helper
        for the queried position: right, left or middle padding alike).
        """
        q = len(self)
        n_ctx = self.num_context
        width = self.context.shape[1]
        L = 3 + (int(n_ctx.max()) if q else 0)
        tokens = torch.zeros(q, 3 + width, dtype=torch.int64)
        roles = torch.zeros(q, 3 + width, dtype=torch.int64)
        tokens[:, 0] = vocab.task("lp")
        tokens[:, 1] = vocab.rel(self.label)
        ctx_valid = self.context >= 0
        tokens[:, 2 : 2 + width] = torch.where(ctx_valid, vocab.ent(self.context), torch.zeros_like(self.context))
        roles[:, 2 : 2 + width] = torch.where(ctx_valid, self.context_roles, torch.zeros_like(self.context))
        mask_col = (2 + n_ctx).unsqueeze(1)
        tokens.scatter_(1, mask_col, vocab.mask)
        roles.scatter_(1, mask_col, self.target_role.unsqueeze(1))
        return tokens[:, :L].contiguous(), roles[:, :L].contiguous()

    def anchor_positions(self) -> torch.Tensor:
        """(Q, W) fact column (0-based position) of each known entity (-1 pad); for binary queries
        the context entity is the head (position 0) of a tail query and the tail of a head query."""
        if self.is_binary:
            return torch.where(self.context >= 0, self.direction.unsqueeze(1), torch.full_like(self.context, -1))
        return self.context_roles.clone()

    def to_batch(self, vocab, items: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        """A :class:`kgc.models.batch.LPBatch` of these queries (every row; cut it with ``[...]``).

        Without ``items`` the tokens and roles are those of :meth:`to_tokens`. With ``items`` =
        ``(entity, label, anchor)`` each ``(Q, K)`` (``kgc.evaluation.context``; -1 padding, left-packed)
        the rows are ``[TASK_lp, item_1..item_K, rel(label), ent(c_1)..ent(c_n), MASK]``: item
        ``j`` has token ``ent(entity_j)``, extra token ``rel(label_j)`` and the role of its anchor;
        missing items are PAD (the model masks them; :func:`compact_batch` drops all-PAD columns).
        """
        from kgc.models.batch import LPBatch

        tokens, roles = self.to_tokens(vocab)  # (Q, 3 + n)
        extra = None
        if items is not None:
            ent, lab, anc = (torch.as_tensor(a, dtype=torch.int64) for a in items)
            if ent.shape != lab.shape or ent.shape != anc.shape or ent.shape[0] != len(self):
                raise KGCError(f"context items must be three (Q={len(self)}, K) arrays, got {tuple(ent.shape)}, "
                               f"{tuple(lab.shape)}, {tuple(anc.shape)}")
            ok = ent >= 0
            item_tok = torch.where(ok, vocab.ent(ent.clamp_min(0)), torch.zeros_like(ent))
            item_lab = torch.where(ok, vocab.rel(lab.clamp_min(0)), torch.zeros_like(lab))
            item_role = torch.where(ok, self.context_roles.gather(1, anc.clamp_min(0)), torch.zeros_like(anc))
            zeros = torch.zeros_like(tokens)
            tokens = torch.cat([tokens[:, :1], item_tok, tokens[:, 1:]], 1)
            roles = torch.cat([roles[:, :1], item_role, roles[:, 1:]], 1)
            extra = torch.cat([zeros[:, :1], item_lab, zeros[:, 1:]], 1)
        ctx_ok = self.context >= 0
        return LPBatch(
            tokens=tokens.contiguous(),
            roles=roles.contiguous(),
            extra=None if extra is None else extra.contiguous(),
            relation_token=vocab.rel(self.label),
            anchors=self.context.clone(),
            anchor_roles=torch.where(ctx_ok, self.context_roles, torch.zeros_like(self.context_roles)),
            target_role=self.target_role.clone(),
            target=self.target.clone(),
            query_index=torch.arange(len(self)),
        )


def compact_batch(batch):
    """``batch`` rows with every all-PAD column removed (same meaning: pads are masked and positions
    count real tokens only); cuts a padded row block to the width its rows need."""
    keep = (batch.tokens != 0).any(0)
    return batch if bool(keep.all()) else batch.columns(keep.nonzero(as_tuple=True)[0])


def select_rows(batch, ix: torch.Tensor):
    """Rows ``ix`` of a full-split :class:`~kgc.models.batch.LPBatch` (no multi-label targets), compacted."""
    return compact_batch(batch.rows(ix))
