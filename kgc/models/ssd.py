"""Mamba2 state-space duality (SSD) in pure PyTorch: a chunked scan and a naive reference.

The selective SSM of Mamba2 (Dao & Gu 2024, "Transformers are SSMs"), per head h::

    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * x_t (outer) B_t      state (P, N)
    y_t     = state_t @ C_t + D_h * x_t                                     y (P,)

:func:`ssd_recurrent_ref` runs that loop step by step (the test oracle).
:func:`ssd_chunked` computes the same thing in chunks of ``chunk_size`` as in
the paper's minimal listing: (1) inside each chunk, the quadratic "attention"
form ``Y = (L o C B^T) X`` with the decay matrix ``L``; (2) the state each
chunk leaves behind; (3) a short recurrence passing states between chunks;
(4) the contribution of the incoming state to each chunk's outputs.

Shapes (b batch, l length, h heads, p head dim, g groups of B/C, n state)::

    x  (b, l, h, p)     dt (b, l, h) > 0 (already softplus'ed)    A (h,) < 0
    B  (b, l, g, n)     C  (b, l, g, n)     with h % g == 0 (heads share B/C within a group)
    D  (h,) or (h, p) or None               initial_states (b, h, p, n) or None
    -> y (b, l, h, p), final_state (b, h, p, n)

A position with ``dt = 0`` is transparent: it neither decays nor writes the
state (the Mamba2 block uses this for padding). Lengths that are not a
multiple of ``chunk_size`` are right-padded with such positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand_groups(t: torch.Tensor, heads: int) -> torch.Tensor:
    """(b, l, g, n) -> (b, l, h, n): each group of B/C serves h // g consecutive heads."""
    g = t.shape[2]
    if heads % g:
        raise ValueError(f"heads ({heads}) must be divisible by groups ({g})")
    return t.repeat_interleave(heads // g, dim=2)


def _apply_d(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None) -> torch.Tensor:
    if D is None:
        return y
    d = D[:, None] if D.dim() == 1 else D  # (h, 1) or (h, p)
    return y + x * d


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Stable segment sums: ``out[..., i, j] = sum(a[..., j+1 : i+1])`` for j <= i, -inf above the diagonal.

    a (..., T) -> (..., T, T). Built by cumsum over a masked copy (no ``cumsum_i - cumsum_j``
    cancellation), so ``exp(segsum(a))`` is the lower-triangular decay matrix.
    """
    T = a.shape[-1]
    a = a[..., None].expand(*a.shape, T)  # (..., T, T): a[..., i, j] = a_i
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    a = a.masked_fill(~strict, 0.0)
    out = torch.cumsum(a, dim=-2)  # out[i, j] = sum_{j < k <= i} a_k
    lower = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~lower, float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked SSD scan. Shapes in the module docstring; returns ``(y (b,l,h,p), final_state (b,h,p,n))``.

    With ``return_final_state=False`` the final state is None, and a sequence that fits in one
    chunk with no initial state skips the state computation entirely (steps 2-4): the common
    case for short KG sequences, where the (b, h, p, n) states dominate memory."""
    b, l, h, p = x.shape
    B = _expand_groups(B, h)  # (b, l, h, n)
    C = _expand_groups(C, h)
    n = B.shape[-1]
    chunk_size = max(1, min(chunk_size, l))  # a short sequence is one chunk (no padding to chunk_size)
    pad = (-l) % chunk_size
    if pad:  # right-pad with transparent steps (dt = 0): outputs ignored, state untouched
        x_, dt_, B_, C_ = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, dt, B, C))
    else:
        x_, dt_, B_, C_ = x, dt, B, C
    c, q = (l + pad) // chunk_size, chunk_size
    X = (x_ * dt_[..., None]).reshape(b, c, q, h, p)  # discretised input dt*x, (b, c, q, h, p)
    Ad = (dt_ * A).reshape(b, c, q, h).permute(0, 3, 1, 2)  # log-decay dt*A, (b, h, c, q)
    Bc = B_.reshape(b, c, q, h, n)
    Cc = C_.reshape(b, c, q, h, n)
    A_cum = torch.cumsum(Ad, dim=-1)  # (b, h, c, q)

    # 1. within-chunk outputs: y_i = sum_{j<=i} C_i.B_j exp(sum_{j<k<=i} a_k) X_j
    Ldec = torch.exp(segsum(Ad))  # (b, h, c, q, q)
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, Ldec, X)
    if c == 1 and initial_states is None and not return_final_state:
        return _apply_d(y_diag.reshape(b, q, h, p)[:, :l], x, D), None

    # 2. state left at the end of each chunk by its own inputs
    decay_to_end = torch.exp(A_cum[..., -1:] - A_cum)  # (b, h, c, q)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bc, decay_to_end, X)  # (b, c, h, p, n)

    # 3. pass states across chunks (a c+1 step recurrence, written as one decay matrix)
    if initial_states is None:
        initial_states = torch.zeros(b, 1, h, p, n, dtype=X.dtype, device=X.device)
    else:
        initial_states = initial_states[:, None].to(X.dtype)  # (b, 1, h, p, n)
    states = torch.cat([initial_states, states], dim=1)  # (b, c+1, h, p, n)
    chunk_decay = torch.exp(segsum(F.pad(A_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)  # (b, c+1, h, p, n)
    incoming, final_state = states[:, :-1], states[:, -1]  # state entering each chunk; after the last

    # 4. contribution of the incoming state to each position of the chunk
    decay_from_start = torch.exp(A_cum)  # (b, h, c, q)
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cc, incoming, decay_from_start)

    y = (y_diag + y_off).reshape(b, c * q, h, p)[:, :l]  # (b, l, h, p)
    return _apply_d(y, x, D), (final_state if return_final_state else None)


def ssd_recurrent_ref(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Naive step-by-step scan (reference for :func:`ssd_chunked`; same shapes, no chunking)."""
    b, l, h, p = x.shape
    B = _expand_groups(B, h)
    C = _expand_groups(C, h)
    n = B.shape[-1]
    state = torch.zeros(b, h, p, n, dtype=x.dtype, device=x.device) if initial_states is None else initial_states
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, h, 1, 1)
        write = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]  # (b, h, p, n)
        state = decay * state + write
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = torch.stack(ys, dim=1)  # (b, l, h, p)
    return _apply_d(y, x, D), state
