"""Fused linear + label-smoothed cross-entropy over all entities (1-N KGC training loss).

Convention (identical to ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)``)::

    z    = hidden @ weight.T + bias                      (B, E) logits, never stored in full
    p_i  = uniform distribution over the true answers of row i
           (one-hot of target[i]; or the CSR set target_indices[target_indptr[i]:target_indptr[i+1]])
    q_i  = (1 - eps) * p_i + eps / E
    l_i  = -sum_e q_ie * log_softmax(z_i)_e
         = lse_i - (1 - eps) * mean_{j in T_i} z_ij - (eps / E) * sum_e z_ie
    loss = mean over non-ignored rows of l_i  ("mean"), their sum ("sum"), or l ("none", 0 on ignored rows)

Rows whose target equals ``ignore_index`` (single label) or that have no true answer
(multi-label) are ignored, as in ``F.cross_entropy``.

Only the log-sum-exp and the softmax part of the gradient need all E logits; they are
computed blockwise with an online log-sum-exp (forward) and recomputed in backward, in
fp32 (fp64 for fp64 inputs). The target and smoothing terms are O(B*D + nnz*D) gathers:

    dl_i/dz_ie = softmax_ie - (1 - eps) p_ie - eps / E

Layout: Triton kernels -> launchers -> chunked PyTorch path -> autograd.Function ->
public op -> reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kgc.errors import KGCError
from kernels import _config

if _config.HAS_TRITON:
    import triton
    import triton.language as tl
else:  # pragma: no cover
    triton = None
    tl = None


# --------------------------------------------------------------------------- Triton kernels

if triton is not None:

    @triton.jit
    def _lse_fwd_kernel(
        H, W, Bias, LSE,
        B, E, D,
        stride_hb, stride_we,
        HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """LSE[b] = logsumexp_e(H[b] . W[e] + Bias[e]) with an online max/sum over entity blocks."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
        dk = tl.arange(0, BLOCK_D)
        row_ok = rows < B
        dk_ok = dk < D
        h = tl.load(H + rows.to(tl.int64)[:, None] * stride_hb + dk[None, :],
                    mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
        m = tl.full([BLOCK_B], float("-inf"), tl.float32)
        s = tl.zeros([BLOCK_B], dtype=tl.float32)
        for e0 in range(0, E, BLOCK_E):
            cols = e0 + tl.arange(0, BLOCK_E)
            col_ok = cols < E
            w = tl.load(W + cols.to(tl.int64)[:, None] * stride_we + dk[None, :],
                        mask=col_ok[:, None] & dk_ok[None, :], other=0.0)
            z = tl.dot(h, tl.trans(w), input_precision=PRECISION)
            if HAS_BIAS:
                z += tl.load(Bias + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            z = tl.where(col_ok[None, :], z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(z - m_safe[:, None]), 1)
            m = m_new
        lse = tl.where(m == float("-inf"), m, m + tl.log(s))
        tl.store(LSE + rows, lse, mask=row_ok)

    @triton.jit
    def _dense_grad_h_kernel(
        H, W, Bias, LSE, G, DH,
        B, E, D,
        stride_hb, stride_we, stride_dhb,
        HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """DH[b] = sum_e G[b] * softmax(z_b)_e * W[e]  (z recomputed per entity block)."""
        pid = tl.program_id(0)
        rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
        dk = tl.arange(0, BLOCK_D)
        row_ok = rows < B
        dk_ok = dk < D
        h = tl.load(H + rows.to(tl.int64)[:, None] * stride_hb + dk[None, :],
                    mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
        lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
        g = tl.load(G + rows, mask=row_ok, other=0.0)
        acc = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
        for e0 in range(0, E, BLOCK_E):
            cols = e0 + tl.arange(0, BLOCK_E)
            col_ok = cols < E
            w = tl.load(W + cols.to(tl.int64)[:, None] * stride_we + dk[None, :],
                        mask=col_ok[:, None] & dk_ok[None, :], other=0.0)
            z = tl.dot(h, tl.trans(w), input_precision=PRECISION)
            if HAS_BIAS:
                z += tl.load(Bias + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            p = tl.exp(z - lse[:, None]) * g[:, None]
            p = tl.where(col_ok[None, :] & (g != 0.0)[:, None], p, 0.0)
            acc += tl.dot(p.to(w.dtype), w, input_precision=PRECISION)
        tl.store(DH + rows.to(tl.int64)[:, None] * stride_dhb + dk[None, :], acc,
                 mask=row_ok[:, None] & dk_ok[None, :])

    @triton.jit
    def _dense_grad_w_kernel(
        H, W, Bias, LSE, G, DW, DB,
        B, E, D,
        stride_hb, stride_we, stride_dwe,
        HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """DW[e] = sum_b G[b] * softmax(z_b)_e * H[b], DB[e] = sum_b G[b] * softmax(z_b)_e."""
        pid = tl.program_id(0)
        cols = pid * BLOCK_E + tl.arange(0, BLOCK_E)
        dk = tl.arange(0, BLOCK_D)
        col_ok = cols < E
        dk_ok = dk < D
        w = tl.load(W + cols.to(tl.int64)[:, None] * stride_we + dk[None, :],
                    mask=col_ok[:, None] & dk_ok[None, :], other=0.0)
        if HAS_BIAS:
            bias = tl.load(Bias + cols, mask=col_ok, other=0.0).to(tl.float32)
        acc = tl.zeros([BLOCK_E, BLOCK_D], dtype=tl.float32)
        dbacc = tl.zeros([BLOCK_E], dtype=tl.float32)
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            h = tl.load(H + rows.to(tl.int64)[:, None] * stride_hb + dk[None, :],
                        mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
            lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
            g = tl.load(G + rows, mask=row_ok, other=0.0)
            zt = tl.dot(w, tl.trans(h), input_precision=PRECISION)  # (BLOCK_E, BLOCK_B)
            if HAS_BIAS:
                zt += bias[:, None]
            p = tl.exp(zt - lse[None, :]) * g[None, :]
            p = tl.where(col_ok[:, None] & (row_ok & (g != 0.0))[None, :], p, 0.0)
            acc += tl.dot(p.to(h.dtype), h, input_precision=PRECISION)
            dbacc += tl.sum(p, 1)
        tl.store(DW + cols.to(tl.int64)[:, None] * stride_dwe + dk[None, :], acc,
                 mask=col_ok[:, None] & dk_ok[None, :])
        tl.store(DB + cols, dbacc, mask=col_ok)


# --------------------------------------------------------------------------- launchers


def _blocks(d: int, device: torch.device) -> dict:
    """One fixed config per shape class (the interpreter cannot autotune)."""
    block_d = max(16, triton.next_power_of_2(d))
    if device.type != "cuda":  # TRITON_INTERPRET=1: tiny blocks keep tests exercising edges
        return dict(BLOCK_B=16, BLOCK_E=16, BLOCK_D=block_d, num_warps=1)
    if block_d <= 128:
        return dict(BLOCK_B=64, BLOCK_E=64, BLOCK_D=block_d, num_warps=4)
    if block_d <= 256:
        return dict(BLOCK_B=64, BLOCK_E=64, BLOCK_D=block_d, num_warps=8)
    if block_d <= 512:
        return dict(BLOCK_B=32, BLOCK_E=32, BLOCK_D=block_d, num_warps=8)
    return dict(BLOCK_B=16, BLOCK_E=16, BLOCK_D=block_d, num_warps=8)


def _precision(x: torch.Tensor) -> str:
    if x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _lse_triton(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    B, D = h.shape
    E = w.shape[0]
    cfg = _blocks(D, h.device)
    lse = torch.empty(B, device=h.device, dtype=torch.float32)
    grid = (triton.cdiv(B, cfg["BLOCK_B"]),)
    _lse_fwd_kernel[grid](
        h, w, b if b is not None else w, lse, B, E, D, h.stride(0), w.stride(0),
        HAS_BIAS=b is not None, PRECISION=_precision(h), **cfg,
    )
    return lse


def _dense_grads_triton(h, w, b, lse, g):
    B, D = h.shape
    E = w.shape[0]
    cfg = _blocks(D, h.device)
    dh = torch.empty(B, D, device=h.device, dtype=torch.float32)
    dw = torch.empty(E, D, device=h.device, dtype=torch.float32)
    db = torch.empty(E, device=h.device, dtype=torch.float32)
    common = dict(HAS_BIAS=b is not None, PRECISION=_precision(h), **cfg)
    bb = b if b is not None else w
    _dense_grad_h_kernel[(triton.cdiv(B, cfg["BLOCK_B"]),)](
        h, w, bb, lse, g, dh, B, E, D, h.stride(0), w.stride(0), dh.stride(0), **common
    )
    _dense_grad_w_kernel[(triton.cdiv(E, cfg["BLOCK_E"]),)](
        h, w, bb, lse, g, dw, db, B, E, D, h.stride(0), w.stride(0), dw.stride(0), **common
    )
    return dh, dw, db


# --------------------------------------------------------------------------- chunked PyTorch path


def _lse_chunked(h, w, b, chunk_bytes: int) -> torch.Tensor:
    """Online log-sum-exp over (row, entity) chunks; temporaries <= chunk_bytes."""
    B, D = h.shape
    E = w.shape[0]
    ct = _config.compute_dtype(h.dtype)
    esize = torch.finfo(ct).bits // 8
    upcast = w.dtype != ct
    rc, cc = _config.plan_chunks(B, E, chunk_bytes // esize, col_extra=D if upcast else 0)
    hc_all = h.to(ct)
    lse = torch.empty(B, device=h.device, dtype=ct)
    for b0 in range(0, B, rc):
        hc = hc_all[b0:b0 + rc]
        m = torch.full((hc.shape[0],), -math.inf, device=h.device, dtype=ct)
        s = torch.zeros_like(m)
        for e0 in range(0, E, cc):
            wc = w[e0:e0 + cc].to(ct)
            z = hc @ wc.T if b is None else torch.addmm(b[e0:e0 + cc].to(ct), hc, wc.T)
            del wc
            m_new = torch.maximum(m, z.amax(1))
            m_safe = torch.where(torch.isneginf(m_new), torch.zeros_like(m_new), m_new)
            s = s * torch.exp(m - m_safe) + z.sub_(m_safe[:, None]).exp_().sum(1)
            m = m_new
            del z
        lse[b0:b0 + rc] = torch.where(torch.isneginf(m), m, m + torch.log(s))
    return lse


def _dense_grads_chunked(h, w, b, lse, g, chunk_bytes: int):
    """dh = P @ W, dW = P.T @ h, db = P.sum(0) with P = g * softmax(z), z recomputed per chunk."""
    B, D = h.shape
    E = w.shape[0]
    ct = lse.dtype
    esize = torch.finfo(ct).bits // 8
    upcast = w.dtype != ct
    rc, cc = _config.plan_chunks(B, E, chunk_bytes // esize, col_extra=D if upcast else 0)
    hc_all = h.to(ct)
    dh = torch.zeros(B, D, device=h.device, dtype=ct)
    dw = torch.zeros(E, D, device=h.device, dtype=ct)
    db = torch.zeros(E, device=h.device, dtype=ct)
    active = (g != 0).nonzero().squeeze(1)
    if active.numel() == 0:
        return dh, dw, db
    all_rows = active.numel() == B
    ha = hc_all if all_rows else hc_all[active]
    la = lse if all_rows else lse[active]
    ga = g.to(ct) if all_rows else g.to(ct)[active]
    dha = dh if all_rows else torch.zeros_like(ha)
    n = ha.shape[0]
    for e0 in range(0, E, cc):
        wc = w[e0:e0 + cc].to(ct)
        bc = None if b is None else b[e0:e0 + cc].to(ct)
        for r0 in range(0, n, rc):
            hr = ha[r0:r0 + rc]
            z = hr @ wc.T if bc is None else torch.addmm(bc, hr, wc.T)
            p = z.sub_(la[r0:r0 + rc, None]).exp_().mul_(ga[r0:r0 + rc, None])
            dha[r0:r0 + rc].addmm_(p, wc)
            dw[e0:e0 + cc].addmm_(p.T, hr)
            db[e0:e0 + cc] += p.sum(0)
            del z, p
        del wc
    if not all_rows:
        dh[active] = dha
    return dh, dw, db


# --------------------------------------------------------------------------- autograd


def _pair_logits(h, w, b, rows, cols, ct, chunk_elems: int) -> torch.Tensor:
    """z[rows[k], cols[k]] for the true-answer pairs, in pieces of <= chunk_elems gathered values."""
    K, D = rows.numel(), h.shape[1]
    out = torch.empty(K, device=h.device, dtype=ct)
    step = max(1, chunk_elems // max(1, 2 * D))
    for k0 in range(0, K, step):
        r, c = rows[k0:k0 + step], cols[k0:k0 + step]
        z = (h[r].to(ct) * w[c].to(ct)).sum(1)
        if b is not None:
            z += b[c].to(ct)
        out[k0:k0 + step] = z
    return out


class _LinearCrossEntropyFn(torch.autograd.Function):
    """Per-row losses (B,) of label-smoothed CE; the dense part runs on ``impl``."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, rows, cols, coef, valid, eps, impl, chunk_bytes):
        ct = _config.compute_dtype(hidden.dtype)
        E = weight.shape[0]
        elems = max(1, chunk_bytes // (torch.finfo(ct).bits // 8))
        if impl == "triton":
            lse = _lse_triton(hidden, weight, bias)
        else:
            lse = _lse_chunked(hidden, weight, bias, chunk_bytes)
        zt = torch.zeros(hidden.shape[0], device=hidden.device, dtype=ct)
        zt.index_add_(0, rows, coef.to(ct) * _pair_logits(hidden, weight, bias, rows, cols, ct, elems))
        loss = lse - (1.0 - eps) * zt
        if eps != 0.0:
            wsum = weight.to(ct).sum(0)
            zsum = hidden.to(ct) @ wsum
            if bias is not None:
                zsum = zsum + bias.to(ct).sum()
            loss = loss - (eps / E) * zsum
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        ctx.save_for_backward(hidden, weight, bias, rows, cols, coef, valid, lse)
        ctx.eps, ctx.impl, ctx.chunk_bytes = eps, impl, chunk_bytes
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, weight, bias, rows, cols, coef, valid, lse = ctx.saved_tensors
        eps, E, ct = ctx.eps, weight.shape[0], lse.dtype
        g = torch.where(valid, grad_loss.to(ct), torch.zeros((), device=lse.device, dtype=ct)).contiguous()
        if ctx.impl == "triton":
            dh, dw, db = _dense_grads_triton(hidden, weight, bias, lse, g)
        else:
            dh, dw, db = _dense_grads_chunked(hidden, weight, bias, lse, g, ctx.chunk_bytes)
        # target term: -(1 - eps) * coef_k * g_row * (d z_{row,col})
        a = (1.0 - eps) * coef.to(ct) * g[rows]
        elems = max(1, ctx.chunk_bytes // (torch.finfo(ct).bits // 8))
        step = max(1, elems // max(1, 2 * hidden.shape[1]))
        for k0 in range(0, rows.numel(), step):
            r, c, ak = rows[k0:k0 + step], cols[k0:k0 + step], a[k0:k0 + step, None]
            dh.index_add_(0, r, -ak * weight[c].to(ct))
            dw.index_add_(0, c, -ak * hidden[r].to(ct))
        db.index_add_(0, cols, -a)
        if eps != 0.0:  # uniform term: -(eps / E) * g_i for every entity
            u = eps / E
            dh -= (u * g)[:, None] * weight.to(ct).sum(0)[None, :]
            dw -= u * (g @ hidden.to(ct))[None, :]
            db -= u * g.sum()
        grad_h = dh.to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_w = dw.to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_b = db.to(bias.dtype) if (bias is not None and ctx.needs_input_grad[2]) else None
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None


# --------------------------------------------------------------------------- public op


def _check_args(hidden, weight, target, bias, label_smoothing, reduction, target_indptr, target_indices):
    op = "linear_cross_entropy"
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise KGCError(f"{op}: expected hidden (B, D) and weight (E, D); got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise KGCError(f"{op}: hidden/weight/bias dtypes differ ({hidden.dtype}, {weight.dtype}, {None if bias is None else bias.dtype})")
    if not hidden.is_floating_point():
        raise KGCError(f"{op}: hidden must be floating point, got {hidden.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise KGCError(f"{op}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise KGCError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if reduction not in ("mean", "sum", "none"):
        raise KGCError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    multi = target_indptr is not None or target_indices is not None
    if multi == (target is not None):
        raise KGCError(f"{op}: pass either target (B,) or the CSR pair target_indptr/target_indices, not both/neither")
    if multi and (target_indptr is None or target_indices is None):
        raise KGCError(f"{op}: target_indptr and target_indices must be given together")


def _targets(hidden, weight, target, target_indptr, target_indices, ignore_index):
    """(rows, cols, coef, valid): true-answer pairs, their weights 1/|T_i| and the non-ignored rows."""
    B, E, dev = hidden.shape[0], weight.shape[0], hidden.device
    op = "linear_cross_entropy"
    if target is not None:
        target = target.to(dev)
        if target.dtype not in (torch.int64, torch.int32) or tuple(target.shape) != (B,):
            raise KGCError(f"{op}: target must be an integer tensor of shape ({B},), got {target.dtype} {tuple(target.shape)}")
        target = target.long()
        valid = target != ignore_index
        bad = valid & ((target < 0) | (target >= E))
        if bool(bad.any()):
            raise KGCError(f"{op}: target id {int(target[bad][0])} out of range [0, {E}) (row {int(bad.nonzero()[0])})")
        rows = valid.nonzero().squeeze(1)
        cols = target[rows]
        coef = torch.ones(rows.numel(), device=dev, dtype=_config.compute_dtype(hidden.dtype))
        return rows, cols, coef, valid
    indptr = target_indptr.to(dev).long()
    cols = target_indices.to(dev).long()
    if tuple(indptr.shape) != (B + 1,) or int(indptr[0]) != 0 or int(indptr[-1]) != cols.numel() or bool((indptr[1:] < indptr[:-1]).any()):
        raise KGCError(f"{op}: target_indptr must be non-decreasing of shape ({B + 1},) from 0 to len(target_indices)={cols.numel()}")
    if cols.numel() and bool(((cols < 0) | (cols >= E)).any()):
        raise KGCError(f"{op}: target_indices out of range [0, {E})")
    counts = indptr[1:] - indptr[:-1]
    rows = torch.repeat_interleave(torch.arange(B, device=dev), counts)
    # 1 / |T_i| in the compute dtype: float32 weights would cap float64 inputs at ~1e-8 relative error
    coef = (1.0 / counts.clamp_min(1).to(_config.compute_dtype(hidden.dtype)))[rows]
    return rows, cols, coef, counts > 0


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    *,
    target_indptr: torch.Tensor | None = None,
    target_indices: torch.Tensor | None = None,
    ignore_index: int = -100,
    impl: str | None = None,
    chunk_bytes: int | str | None = None,
) -> torch.Tensor:
    """Label-smoothed cross-entropy of ``hidden @ weight.T + bias`` without storing the logits.

    Args:
        hidden: (B, D) float16/bfloat16/float32/float64.
        weight: (E, D) same dtype (entity embedding matrix).
        target: (B,) int64 entity ids (``ignore_index`` rows are skipped), or None with the CSR pair.
        bias: optional (E,).
        label_smoothing: eps in q = (1 - eps) * p + eps / E (F.cross_entropy's convention).
        reduction: "mean" (over non-ignored rows), "sum" or "none" ((B,), 0 on ignored rows).
        target_indptr, target_indices: multi-label targets as CSR (B + 1,), (nnz,): p_i is uniform
            over target_indices[target_indptr[i]:target_indptr[i+1]]; rows with none are ignored.
        impl: "auto" | "triton" | "chunked" | "ref" (see kernels._config).
        chunk_bytes: temporary-memory bound of the chunked path.
    Returns:
        scalar loss (or (B,) for reduction="none"), float32 (float64 for float64 inputs).
    """
    _check_args(hidden, weight, target, bias, label_smoothing, reduction, target_indptr, target_indices)
    which = _config.resolve_impl(impl, hidden, hidden.shape[1], "linear_cross_entropy")
    budget = _config.get_chunk_bytes(chunk_bytes)
    if (
        which == "chunked"
        and _config.requested_impl(impl) == "auto"
        and 3 * hidden.shape[0] * weight.shape[0] * 4 <= budget
    ):
        # auto on CPU: when the dense logits (plus softmax and grad) fit in the memory budget, the
        # dense path is faster (it keeps the logits for backward instead of recomputing them)
        which = "ref"
    if which == "ref":
        return linear_cross_entropy_ref(
            hidden, weight, target, bias, label_smoothing, reduction,
            target_indptr=target_indptr, target_indices=target_indices, ignore_index=ignore_index,
        )
    rows, cols, coef, valid = _targets(hidden, weight, target, target_indptr, target_indices, ignore_index)
    if which == "triton":
        hidden, weight = hidden.contiguous(), weight.contiguous()
        bias = None if bias is None else bias.contiguous()
    losses = _LinearCrossEntropyFn.apply(
        hidden, weight, bias, rows, cols, coef, valid, float(label_smoothing), which, _config.get_chunk_bytes(chunk_bytes)
    )
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / valid.sum().to(losses.dtype)


def linear_cross_entropy_ref(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    *,
    target_indptr: torch.Tensor | None = None,
    target_indices: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Dense reference: ``F.cross_entropy(hidden @ weight.T + bias, target, label_smoothing=eps)``.

    Same shapes and conventions as :func:`linear_cross_entropy`; computes in the input dtype
    and materialises the (B, E) logits (and, for multi-label targets, a dense (B, E) target
    distribution). For tests and debugging only.
    """
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    return cross_entropy_from_logits(logits, target, label_smoothing, reduction, target_indptr=target_indptr,
                                     target_indices=target_indices, ignore_index=ignore_index)


def cross_entropy_from_logits(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    *,
    target_indptr: torch.Tensor | None = None,
    target_indices: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The loss of :func:`linear_cross_entropy` on given (B, E) logits (single or CSR multi-label
    targets, same conventions). Used when the scores are more than ``hidden @ weight.T + bias``
    (a context pointer adds sparse terms); dense, so the (B, E) logits are kept for backward."""
    if (target is None) == (target_indptr is None):
        raise ValueError("give either target or target_indptr/target_indices")
    if target is not None:
        return F.cross_entropy(logits, target.long(), ignore_index=ignore_index,
                               label_smoothing=label_smoothing, reduction=reduction)
    B, E = logits.shape
    indptr, idx = target_indptr.long(), target_indices.long()
    counts = indptr[1:] - indptr[:-1]
    rows = torch.repeat_interleave(torch.arange(B, device=logits.device), counts)
    probs = torch.zeros(B, E, dtype=logits.dtype, device=logits.device)
    probs.index_put_((rows, idx), (1.0 / counts.clamp_min(1).to(logits.dtype))[rows], accumulate=True)
    keep = counts > 0
    per_row = torch.zeros(B, dtype=logits.dtype, device=logits.device)
    per_row[keep] = F.cross_entropy(logits[keep], probs[keep], label_smoothing=label_smoothing, reduction="none")
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / keep.sum().to(per_row.dtype)
