"""Zamba-style hybrid encoder: Mamba2 blocks + ONE shared attention/MLP block.

Layout (``layers`` Mamba2 blocks, shared block after every ``attn_every``)::

    x0 = embeddings (B, L, D)
    for i in range(layers):
        x = x + Mamba2(RMSNorm(x), keep)                                   # causal, O(L)
        if (i + 1) % attn_every == 0:                                      # application k
            s = SharedBlock(Linear_2D->D(concat(x, x0)))                   # one set of weights
            x = x + Out_k(s)                                               # per-application D->D linear

Kept from Zamba (Glorioso et al. 2024): one attention+MLP block whose weights
are shared by every application, fed the current residual stream concatenated
with the original embeddings, its output mapped back by a non-shared linear
per application (Zamba2 uses per-application LoRA on the shared block; a full
D x D linear is the simple, equally cheap choice at our width). Kept from
Block-State Transformer (Fathi et al. 2023): the SSM supplies long-range
context and the attention refines it locally — we use it only as motivation
for interleaving, not its block-recurrent attention. Dropped: rotary
embeddings (we use the shared learned positions), two alternating shared
blocks (Zamba2), KV caching/generation.

The whole encoder is causal (left to right): the shared attention uses a
causal mask and ``prefix_len`` is ignored, so the link-prediction query token
goes last to see the whole fact. Packed rows (``encode(segments=...)``) raise a ``KGCError``:
the Mamba2 scan would carry its state from one sequence into the next.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from kgc.models.base import KGCModel, attention_mask
from kgc.models.config import ModelConfig
from kgc.models.mamba2 import Mamba2
from kgc.models.transformer import Block


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba2 block: x (B, L, D), keep (B, L) -> (B, L, D)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.mixer = Mamba2(
            cfg.dim,
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            headdim=cfg.headdim,
            chunk_size=cfg.chunk_size,
            use_mamba_ssm=cfg.use_mamba_ssm,
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.mixer(self.norm(x), keep))


class SharedAttention(nn.Module):
    """The shared block: concat(x, x0) (B, L, 2D) -> Linear -> pre-norm attention+MLP Block -> (B, L, D)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.in_proj = nn.Linear(2 * cfg.dim, cfg.dim)
        self.block = Block(cfg)

    def forward(self, x: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(self.in_proj(torch.cat([x, x0], dim=-1)), mask)  # (B, L, 2D) -> (B, L, D)


class HybridModel(KGCModel):
    """Mamba2 backbone + shared attention (see module docstring) + kgc heads."""

    causal = True
    #: the pure-PyTorch SSD scan cannot reset its state at a packed row's segment starts
    supports_segments = False

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_entities: int, entity_offset: int):
        super().__init__(cfg, vocab_size, num_entities, entity_offset)
        self.mamba = nn.ModuleList(MambaLayer(cfg) for _ in range(cfg.layers))
        self.num_shared_applications = cfg.layers // cfg.attn_every
        self.shared = SharedAttention(cfg)
        self.shared_out = nn.ModuleList(nn.Linear(cfg.dim, cfg.dim, bias=False) for _ in range(self.num_shared_applications))
        for lin in self.shared_out:
            lin._residual_proj = True
        self.init_weights()

    def _encode(self, x, keep, pos, prefix_len, at=None):
        """x (B, L, D) -> (B, L, D), causal; ``prefix_len`` is ignored. With ``at`` (B,) -> (B, D),
        the rows ``at`` of the full output (the Mamba2 scan needs every position anyway)."""
        mask = attention_mask(keep, pos, None, causal=True)  # (B, 1, L, L)
        x0, k = x, 0
        for i, layer in enumerate(self.mamba):
            x = layer(x, keep)
            if (i + 1) % self.cfg.attn_every == 0:
                x = x + self.shared_out[k](self.shared(x, x0, mask))
                k += 1
        return x if at is None else x[torch.arange(x.shape[0], device=x.device), at]
