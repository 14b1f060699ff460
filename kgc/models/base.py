"""Shared embedding front end and output heads of every kgc sequence encoder.

``KGCModel`` = token embedding (V, D) + role embedding (num_roles, D) + learned
position embedding (max_len, D) -> encoder (subclass) -> final LayerNorm ->
heads. Contract (docs/architecture.md, "Models")::

    encode(tokens (B, L) int64, prefix_len (B,) | None, roles (B, L) | None, extra (B, L) | None) -> h (B, L, D)
    query_vectors(h (N, D)) -> (N, D)           dense -> GELU -> LayerNorm (CoKE/HittER output layer)
    entity_weight() -> (E, D)                    token-embedding rows [entity_offset, +E) when tied
    entity_bias() -> (E,) | None
    entity_scores(h (N, D)) -> (N, E)            query_vectors(h) @ entity_weight().T + bias
    token_weight() -> (V, D)                     the token embedding, tied output layer of token_logits
    token_logits(h (..., D)) -> (..., V)         query_vectors(h) @ token_weight().T (+ entity bias)
    lp_forward(batch: LPBatch) -> LPOutput       link prediction: query vector (+ direct term), pointer logits
    lp_scores(batch: LPBatch) -> (B, E)           q @ W.T + bias + pointer logits scattered to their entities

Context items (link prediction with ``model.context.budget > 0``): a position whose ``extra``
token is not PAD is an *item* ``(label, entity)``: its input is ``emb(entity) + emb(label)``.
Items form a set: they all take position id 1 (just after the task token), and the other
tokens are numbered as if the items were absent, shifted by one when items are present
(``pos = cumsum(real & ~item) - 1 + [an item came before]``).

Packed rows (pretraining, ``pretrain_tasks.batching.collate_packed``): ``encode(..., segments=S,
prefix_mask=P)`` with S (B, L) int64 = 1..k for the k sequences laid side by side in a row (each
contiguous, 0 on PAD) and P (B, L) bool = the token lies in its sequence's prompt. Positions
restart at 0 at each segment start and attention is block-diagonal by segment, prefix-LM inside
a segment (a query sees the earlier keys of its own segment, or all of its prompt when it is
itself in the prompt): every sequence gets the hidden states it would get encoded alone. Only
encoders with ``supports_segments`` (the Transformer) take them; the hybrid's Mamba2 scan cannot
reset its state at a segment start, so it raises.

Padding: token 0 is PAD. Positions are counted over non-pad tokens
(``pos = cumsum(token != PAD) - 1``), so left- and right-padding give real
tokens the same position ids; pads are masked as attention keys, zeroed in the
Mamba2 input, and their hidden states are returned as zeros. ``prefix_len`` is
counted in the same non-pad positions (equal to raw indices for right padding).
When tied, ``token_logits(h)[..., entity_offset:entity_offset+E] == entity_scores(h)``:
pretraining targets over the vocabulary and link prediction share one head.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from kgc.errors import KGCError
from kgc.models.batch import LPBatch, LPOutput
from kgc.models.config import ModelConfig

PAD_ID = 0


def last_positions(tokens: torch.Tensor) -> torch.Tensor:
    """Index of the last non-pad token of each row (the queried MASK): tokens (B, L) -> (B,).

    Correct for right, left and middle padding alike."""
    keep = (tokens != PAD_ID).long()
    idx = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    return (idx * keep).amax(dim=1)


def _cmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex product of (..., D) vectors stored as [real half, imaginary half]."""
    ar, ai = a.chunk(2, dim=-1)
    br, bi = b.chunk(2, dim=-1)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], dim=-1)


class DirectTerm(nn.Module):
    """The identity path of link prediction: a DistMult/ComplEx query vector from the embeddings.

    ``q = (sum_i rho_in[role_i] * e_{c_i}) * w_r * rho_out[target_role]`` with ``*`` the
    elementwise (``distmult``) or complex (``complex``, halves = real/imaginary parts) product;
    ``q . e_t`` is then DistMult's ``<e_h, w_r, e_t>`` or ComplEx's ``Re(<e_h, w_r, conj(e_t)>)``
    for a binary query (one known entity, fixed roles: ``rho`` is absorbed into ``w_r``). Inverse
    labels ``r^-1`` have their own ``w``, as PyKEEN's inverse triples. ``e`` are the (tied) entity
    embeddings the output layer scores against; ``rho`` start at the identity (1, or 1 + 0i).
    ``dropout`` acts on the entity inputs and on the resulting query vector (TuckER-style).

    Shapes: anchors (B, W) entity ids (-1 pad), anchor_roles (B, W), relation_token (B,),
    target_role (B,), entity_weight (E, D) -> (B, D).
    """

    def __init__(self, kind: str, num_relation_tokens: int, num_roles: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.kind = kind
        self.drop = nn.Dropout(dropout)
        self.rel = nn.Embedding(num_relation_tokens, dim)
        self.role_in = nn.Embedding(num_roles, dim)
        self.role_out = nn.Embedding(num_roles, dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.rel.weight, 0.0, 1.0)
        one = torch.ones(self.rel.weight.shape[1])
        if self.kind == "complex":
            one[one.shape[0] // 2 :] = 0.0  # 1 + 0i
        with torch.no_grad():
            self.role_in.weight.copy_(one.expand_as(self.role_in.weight))
            self.role_out.weight.copy_(one.expand_as(self.role_out.weight))

    def forward(self, anchors, anchor_roles, relation_token, target_role, entity_weight) -> torch.Tensor:
        mul = _cmul if self.kind == "complex" else torch.mul
        valid = anchors >= 0  # (B, W)
        e = self.drop(entity_weight[anchors.clamp_min(0)])  # (B, W, D)
        rho = self.role_in(anchor_roles.clamp_min(0))  # (B, W, D)
        a = (mul(e, rho) * valid[..., None].to(e.dtype)).sum(1)  # (B, D)
        return self.drop(mul(mul(a, self.rel(relation_token)), self.role_out(target_role)))  # (B, D)


def attention_mask(
    keep: torch.Tensor, pos: torch.Tensor, prefix_len: torch.Tensor | None, causal: bool,
    segments: torch.Tensor | None = None, prefix_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean SDPA mask (B, 1, L, L), True = may attend.

    keep (B, L) non-pad flags; pos (B, L) non-pad positions. With ``prefix_len`` (B,):
    prefix-LM — query i sees key j if j <= i, or if both are in the prefix
    (pos < prefix_len). Without it: fully bidirectional (``causal=False``) or causal.
    With ``segments`` (B, L) (packed rows, see the module docstring) a query sees only keys of
    its own segment, and the prefix is ``prefix_mask`` (B, L) bool instead of ``prefix_len``
    (prefix-LM within each segment; without ``prefix_mask``: bidirectional or causal within it).
    Pad keys are always masked; a pad query sees only itself (rows stay finite).
    """
    Bsz, L = keep.shape
    idx = torch.arange(L, device=keep.device)
    in_prefix = None
    if segments is not None:
        in_prefix = None if prefix_mask is None else keep & prefix_mask.to(keep.device)  # (B, L)
    elif prefix_len is not None:
        in_prefix = keep & (pos < prefix_len.to(pos.device)[:, None])  # (B, L)
    if in_prefix is None and not causal:
        allowed = torch.ones(1, L, L, dtype=torch.bool, device=keep.device)
    else:
        allowed = (idx[:, None] >= idx[None, :])[None]  # (1, L, L) causal by index
        if in_prefix is not None:
            allowed = allowed | (in_prefix[:, :, None] & in_prefix[:, None, :])  # (B, L, L)
    if segments is not None:
        seg = segments.to(keep.device)
        allowed = allowed & (seg[:, :, None] == seg[:, None, :])  # (B, L, L) block-diagonal by segment
    allowed = allowed & keep[:, None, :] & keep[:, :, None]  # mask pad keys (and pad queries)
    allowed = allowed | torch.eye(L, dtype=torch.bool, device=keep.device)[None]
    return allowed[:, None]  # (B, 1, L, L), broadcast over heads


class KGCModel(nn.Module):
    """Embeddings + encoder + heads. Subclasses set ``self.encoder`` and implement :meth:`_encode`."""

    #: whether the encoder is causal left to right (hybrid) or prefix-LM/bidirectional (transformer)
    causal: bool = False
    #: whether :meth:`encode` takes packed rows (``segments``/``prefix_mask``, see the module docstring)
    supports_segments: bool = True

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_entities: int, entity_offset: int):
        super().__init__()
        if num_entities < 1 or entity_offset < 0 or entity_offset + num_entities > vocab_size:
            raise KGCError(
                f"entity rows [{entity_offset}, {entity_offset + num_entities}) do not fit in vocab_size {vocab_size}"
            )
        self.cfg = cfg
        self.vocab_size, self.num_entities, self.entity_offset = vocab_size, num_entities, entity_offset
        D = cfg.dim
        self.tok_emb = nn.Embedding(vocab_size, D)
        self.role_emb = nn.Embedding(cfg.num_roles, D)
        self.pos_emb = nn.Embedding(cfg.max_len, D)
        self.drop = nn.Dropout(cfg.dropout)
        self.ln_f = nn.LayerNorm(D)
        self.head_dense = nn.Linear(D, D)
        self.head_norm = nn.LayerNorm(D)
        self.entity_emb = None if cfg.tie_entity_embeddings else nn.Parameter(torch.empty(num_entities, D))
        self.ent_bias = nn.Parameter(torch.zeros(num_entities)) if cfg.entity_bias else None
        # relation tokens lie below entity_offset: the direct term's table is indexed by token id
        self.direct = None if cfg.direct == "none" else DirectTerm(cfg.direct, entity_offset, cfg.num_roles, D,
                                                                 cfg.direct_dropout)
        self.pointer = nn.Linear(D, D, bias=False) if cfg.context.budget > 0 and cfg.context.pointer else None

    # ---- init (GPT-2 / nanoGPT) ---------------------------------------------
    def init_weights(self) -> None:
        """N(0, 0.02) for Linear/Embedding, zero biases; residual projections (``_residual_proj``)
        N(0, 0.02 / sqrt(2 * layers)). Mamba2's dt_bias/A_log/D and conv keep their own init."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / math.sqrt(2 * self.cfg.layers) if getattr(m, "_residual_proj", False) else 0.02
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)
        if self.entity_emb is not None:
            nn.init.normal_(self.entity_emb, 0.0, 0.02)
        if self.direct is not None:
            self.direct.reset_parameters()
            # ReZero-style: the encoder's query contribution starts at zero, so early training
            # follows the identity path and the encoder adds what the direct term cannot express
            nn.init.zeros_(self.head_norm.weight)

    # ---- encoder -------------------------------------------------------------
    def _encode(self, x: torch.Tensor, keep: torch.Tensor, pos: torch.Tensor, prefix_len: torch.Tensor | None,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D) embeddings, keep (B, L), pos (B, L) -> (B, L, D) before the final norm;
        with ``at`` (B,) only the hidden states at those positions -> (B, D). Encoders with
        ``supports_segments`` also take keyword ``segments``/``prefix_mask`` (packed rows), passed
        only when given."""
        raise NotImplementedError

    def encode(
        self,
        tokens: torch.Tensor,
        prefix_len: torch.Tensor | None = None,
        roles: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
        at: torch.Tensor | None = None,
        *,
        segments: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens (B, L) int64 (0 = PAD), prefix_len (B,) | None, roles (B, L) | None,
        extra (B, L) | None (context items' label tokens, PAD elsewhere) -> h (B, L, D).

        Packed rows (module docstring): ``segments`` (B, L) int64 (1..k per sequence of a row, 0 on
        PAD) and ``prefix_mask`` (B, L) bool | None (the token is in its sequence's prompt) replace
        ``prefix_len`` (which must then be None); ``extra`` is not supported with them.

        Hidden states at pad positions are zero. With ``at`` (B,) (non-pad positions, e.g. the
        MASK of :func:`last_positions`) -> h (B, D), equal to ``encode(...)[arange(B), at]``; the
        Transformer then skips the last block's other positions (the fast path of link
        prediction without a pointer)."""
        if tokens.dim() != 2:
            raise KGCError(f"tokens must be (B, L), got shape {tuple(tokens.shape)}")
        Bsz, L = tokens.shape
        if L > self.cfg.max_len:
            raise KGCError(f"sequence length {L} exceeds model max_len {self.cfg.max_len}")
        if roles is not None and roles.shape != tokens.shape:
            raise KGCError(f"roles shape {tuple(roles.shape)} != tokens shape {tuple(tokens.shape)}")
        if extra is not None and extra.shape != tokens.shape:
            raise KGCError(f"extra shape {tuple(extra.shape)} != tokens shape {tuple(tokens.shape)}")
        if segments is not None:
            if not self.supports_segments:
                raise KGCError(f"{type(self).__name__} cannot encode packed rows (segments): its Mamba2 scan "
                               "cannot reset its state between the sequences of a row; pretrain it with "
                               "signals.packing: false")
            if segments.shape != tokens.shape:
                raise KGCError(f"segments shape {tuple(segments.shape)} != tokens shape {tuple(tokens.shape)}")
            if prefix_mask is not None and prefix_mask.shape != tokens.shape:
                raise KGCError(f"prefix_mask shape {tuple(prefix_mask.shape)} != tokens shape {tuple(tokens.shape)}")
            if prefix_len is not None or extra is not None:
                raise KGCError("packed rows (segments) take prefix_mask, not prefix_len, and no context items (extra)")
        elif prefix_mask is not None:
            raise KGCError("prefix_mask is only for packed rows: pass segments too (or prefix_len alone)")
        keep = tokens != PAD_ID  # (B, L)
        if segments is not None:  # positions restart at each segment's first token
            seg = segments.to(tokens.device)
            cnt = keep.long().cumsum(1)  # (B, L) non-pad tokens up to and including j
            start = keep & (seg != F.pad(seg[:, :-1], (1, 0)))  # (B, L) first token of a segment
            base = torch.where(start, cnt - 1, torch.zeros_like(cnt)).cummax(1).values  # tokens before it
            pos = (cnt - 1 - base).clamp_min(0)  # (B, L) position within the segment
            x = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L, D)
        elif extra is None:
            pos = (keep.long().cumsum(1) - 1).clamp_min(0)  # (B, L) position among non-pad tokens
            x = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L, D)
        else:
            item = keep & (extra != PAD_ID)  # (B, L) context items share one position
            seen = item.long().cumsum(1) > 0
            pos = ((keep & ~item).long().cumsum(1) - 1 + seen.long()).clamp_min(0)  # (B, L)
            x = self.tok_emb(tokens) + self.pos_emb(pos) + self.tok_emb(extra) * item[..., None].to(self.tok_emb.weight.dtype)
        if roles is not None:
            x = x + self.role_emb(roles)
        else:
            x = x + self.role_emb.weight[0]
        x = self.drop(x)
        packed = {} if segments is None else {"segments": segments, "prefix_mask": prefix_mask}
        if at is not None:
            return self.ln_f(self._encode(x, keep, pos, prefix_len, at, **packed))  # (B, D)
        h = self.ln_f(self._encode(x, keep, pos, prefix_len, **packed))  # (B, L, D)
        return h * keep[..., None].to(h.dtype)

    # ---- heads -----------------------------------------------------------------
    def query_vectors(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., D) -> (..., D): dense -> GELU -> LayerNorm, the vector scored against entities/tokens."""
        return self.head_norm(F.gelu(self.head_dense(h)))

    def entity_weight(self) -> torch.Tensor:
        """(E, D): entity rows of the token embedding (tied) or the separate entity matrix."""
        if self.entity_emb is not None:
            return self.entity_emb
        return self.tok_emb.weight[self.entity_offset : self.entity_offset + self.num_entities]

    def entity_bias(self) -> torch.Tensor | None:
        """(E,) learned per-entity score bias, or None."""
        return self.ent_bias

    def entity_scores(self, h: torch.Tensor) -> torch.Tensor:
        """h (N, D) -> scores (N, E) over all entities (1-N scoring)."""
        return F.linear(self.query_vectors(h), self.entity_weight(), self.ent_bias)

    def token_weight(self) -> torch.Tensor:
        """(V, D): the token embedding matrix, also the (tied) output layer of :meth:`token_logits`."""
        return self.tok_emb.weight

    def token_bias(self) -> torch.Tensor | None:
        """(V,) bias of :meth:`token_logits`: the entity bias on the entity columns (tied), else None."""
        if self.ent_bias is None or self.entity_emb is not None:
            return None
        a = self.entity_offset
        b = self.vocab_size - a - self.num_entities
        z = self.ent_bias.new_zeros
        return torch.cat([z(a), self.ent_bias, z(b)])

    def token_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., D) -> logits (..., V) over the whole vocabulary (tied to the token embedding).

        The entity bias is added to the entity columns when entity embeddings are tied."""
        logits = F.linear(self.query_vectors(h), self.token_weight())  # (..., V)
        if self.ent_bias is not None and self.entity_emb is None:
            a, b = self.entity_offset, self.entity_offset + self.num_entities
            logits = torch.cat([logits[..., :a], logits[..., a:b] + self.ent_bias, logits[..., b:]], dim=-1)
        return logits

    # ---- link prediction ---------------------------------------------------------------
    def lp_forward(self, batch: LPBatch) -> LPOutput:
        """Query vectors and pointer logits of a link-prediction batch (see :class:`LPOutput`)."""
        at = last_positions(batch.tokens)  # (B,) the MASK
        pointer = self.pointer is not None and batch.extra is not None
        if pointer:  # the pointer reads every item's final hidden state
            h = self.encode(batch.tokens, None, batch.roles, batch.extra)  # (B, L, D)
            hq = h[torch.arange(h.shape[0], device=h.device), at]  # (B, D) hidden state at the MASK
        else:
            hq = self.encode(batch.tokens, None, batch.roles, batch.extra, at=at)  # (B, D)
        q = self.query_vectors(hq)  # (B, D)
        if self.direct is not None:
            q = q + self.direct(batch.anchors, batch.anchor_roles, batch.relation_token, batch.target_role,
                                self.entity_weight())
        if not pointer:
            return LPOutput(q)
        item = (batch.extra != PAD_ID) & (batch.tokens != PAD_ID)  # (B, L)
        logit = torch.einsum("bld,bd->bl", h, self.pointer(hq)) / math.sqrt(h.shape[-1])  # (B, L)
        ent = torch.where(item, batch.tokens - self.entity_offset, torch.full_like(batch.tokens, -1))
        return LPOutput(q, ent, logit * item.to(logit.dtype))

    def lp_scores(self, batch: LPBatch) -> torch.Tensor:
        """(B, E) scores over all entities: ``q @ W.T + bias``, plus each context item's pointer
        logit on its entity (summed when an entity occurs in several items)."""
        return self.lp_output_scores(self.lp_forward(batch))

    def lp_output_scores(self, out: LPOutput) -> torch.Tensor:
        """(B, E) scores of an :meth:`lp_forward` output."""
        scores = F.linear(out.query, self.entity_weight(), self.ent_bias)  # (B, E)
        if out.item_entity is not None:
            scores = scores.scatter_add(1, out.item_entity.clamp_min(0), out.item_logit.to(scores.dtype))
        return scores

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
