"""Pre-norm Transformer encoder with a prefix-LM mask (CoKE/HittER-sized by default).

Block (nanoGPT layout, pre-norm)::

    x = x + Dropout(Proj(SDPA(LN(x) -> q, k, v; mask)))      q, k, v (B, H, L, D/H)
    x = x + Dropout(Linear(GELU(Linear(LN(x)))))               hidden mlp_ratio * D

Mask (:func:`kgc.models.base.attention_mask`): with ``prefix_len`` the prefix
(prompt) is bidirectional and the rest (target) causal; without it the whole
non-pad sequence is bidirectional. Pad keys are always masked. Packed rows (``segments``) are
block-diagonal by sequence, the same prefix-LM mask inside each.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kgc.models.base import KGCModel, attention_mask
from kgc.models.config import ModelConfig


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.attn_dropout = cfg.heads, cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.proj._residual_proj = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D), mask (B, 1, L, L) bool -> (B, L, D).

        With ``at`` (B,) only the query at position ``at[b]`` of each row is computed (keys and
        values still cover the whole row): -> (B, 1, D), equal to the full output's rows ``at``."""
        Bsz, L, D = x.shape
        if at is None:
            q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, L, D)
        else:
            rows = torch.arange(Bsz, device=x.device)
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[rows, at][:, None], w[:D], b[:D])  # (B, 1, D)
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=2)  # 2 x (B, L, D)
            mask = mask[rows, 0, at][:, None, None, :]  # (B, L) -> (B, 1, 1, L)
        Lq = q.shape[1]
        q = q.view(Bsz, Lq, self.heads, D // self.heads).transpose(1, 2)  # (B, H, Lq, Dh)
        k, v = (t.view(Bsz, L, self.heads, D // self.heads).transpose(1, 2) for t in (k, v))  # (B, H, L, Dh)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, Lq, Dh)
        y = y.transpose(1, 2).reshape(Bsz, Lq, D)  # (B, Lq, D)
        return self.drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.dim)
        self.fc = nn.Linear(cfg.dim, hidden)
        self.proj = nn.Linear(hidden, cfg.dim)
        self.proj._residual_proj = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm attention + MLP block. x (B, L, D), mask (B, 1, L, L) -> (B, L, D);
    with ``at`` (B,) only the positions ``at`` -> (B, 1, D) (see :meth:`SelfAttention.forward`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        skip = x if at is None else x[torch.arange(x.shape[0], device=x.device), at][:, None]  # (B, L|1, D)
        x = skip + self.attn(self.ln1(x), mask, at)
        return x + self.mlp(self.ln2(x))


class TransformerModel(KGCModel):
    """Prefix-LM Transformer encoder + kgc heads (see :class:`kgc.models.base.KGCModel`)."""

    causal = False

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_entities: int, entity_offset: int):
        super().__init__(cfg, vocab_size, num_entities, entity_offset)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.init_weights()

    def _encode(self, x, keep, pos, prefix_len, at=None, segments=None, prefix_mask=None):
        """x (B, L, D) -> (B, L, D); prefix positions bidirectional, the rest causal (within each
        segment of a packed row, with ``segments``/``prefix_mask``: :func:`attention_mask`).

        With ``at`` (B,) -> (B, D): the last block computes only those positions (its keys and
        values still cover every token), which is what link prediction reads without a pointer."""
        mask = attention_mask(keep, pos, prefix_len, causal=False, segments=segments,
                              prefix_mask=prefix_mask)  # (B, 1, L, L)
        for i, block in enumerate(self.blocks):
            last = at is not None and i == len(self.blocks) - 1
            x = block(x, mask, at if last else None)  # (B, L, D), the last one (B, 1, D) with ``at``
        if at is None:
            return x
        if not self.blocks:  # no block: the embeddings at ``at``
            return x[torch.arange(x.shape[0], device=x.device), at]
        return x[:, 0]  # (B, 1, D) -> (B, D)
