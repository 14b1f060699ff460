"""Fused filtered ranking of each query's target among all entities.

Definitions (docs/architecture.md, "Kernels")::

    s_e     = queries[i] . weight[e] + bias[e]            scores, never stored as (Q, E)
    F_i     = set(filter_indices[filter_indptr[i]:filter_indptr[i+1]]) - {target[i]}
              (known true answers; the target itself is never filtered; duplicates count once)
    optimistic_i  = 1 + #{e not in F_i, e != t : s_e >  s_t}
    pessimistic_i = 1 + #{e not in F_i, e != t : s_e >= s_t}
    realistic_i   = (optimistic_i + pessimistic_i) / 2     (computed by the caller)

NaN: a NaN entity score is never counted (every comparison with NaN is false); a NaN target
score ranks last: optimistic = pessimistic = E - |F_i| (the number of candidates).

Ties are decided on scores computed by one arithmetic: the target's score is the one the
entity-block matmul produces for the target column. It is first estimated with a matmul of
the same shape class (query block x gathered target rows) and, for the rare rows where it
differs from the in-block value by rounding, the block is counted again with the in-block
value, so duplicated entity embeddings always tie exactly.

Layout: Triton kernel -> launcher -> chunked PyTorch path -> public op -> reference.
"""

from __future__ import annotations

import torch

from kgc.errors import KGCError
from kernels import _config

if _config.HAS_TRITON:
    import triton
    import triton.language as tl
else:  # pragma: no cover
    triton = None
    tl = None


# --------------------------------------------------------------------------- Triton kernel

if triton is not None:

    @triton.jit
    def _filtered_rank_kernel(
        Qv, W, Bias, T, ST_IN, Indptr, Indices, BlockIds,
        GT, GE, ST_USED, ST_TILE,
        Q, E, D,
        stride_q, stride_w,
        HAS_BIAS: tl.constexpr, HAS_ST: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_Q: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """Counts of unfiltered non-target entities scoring >, >= the target, per query.

        Filters are sorted, deduplicated and target-free per row (the launcher cleans them);
        each row walks its filter list with a pointer as entity blocks advance.
        """
        blk = tl.load(BlockIds + tl.program_id(0))
        rows = blk * BLOCK_Q + tl.arange(0, BLOCK_Q)
        row_ok = rows < Q
        dk = tl.arange(0, BLOCK_D)
        dk_ok = dk < D
        q = tl.load(Qv + rows.to(tl.int64)[:, None] * stride_q + dk[None, :],
                    mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
        t = tl.load(T + rows, mask=row_ok, other=-1)
        if HAS_ST:
            st = tl.load(ST_IN + rows, mask=row_ok, other=0.0)
        else:
            # same matmul shape class as the entity blocks: (query block) x (gathered target rows)
            wt = tl.load(W + tl.maximum(t, 0).to(tl.int64)[:, None] * stride_w + dk[None, :],
                         mask=row_ok[:, None] & dk_ok[None, :], other=0.0)
            dd = tl.dot(q, tl.trans(wt), input_precision=PRECISION)
            eye = tl.arange(0, BLOCK_Q)[:, None] == tl.arange(0, BLOCK_Q)[None, :]
            st = tl.sum(tl.where(eye, dd, 0.0), 1)
            if HAS_BIAS:
                st += tl.load(Bias + tl.maximum(t, 0), mask=row_ok, other=0.0).to(tl.float32)
        ptr = tl.load(Indptr + rows, mask=row_ok, other=0)
        end = tl.load(Indptr + rows + 1, mask=row_ok, other=0)
        f = tl.load(Indices + ptr, mask=ptr < end, other=E)
        gt = tl.zeros([BLOCK_Q], dtype=tl.int32)
        ge = tl.zeros([BLOCK_Q], dtype=tl.int32)
        st_tile = tl.zeros([BLOCK_Q], dtype=tl.float32)
        for e0 in range(0, E, BLOCK_E):
            cols = e0 + tl.arange(0, BLOCK_E)
            col_ok = cols < E
            w = tl.load(W + cols.to(tl.int64)[:, None] * stride_w + dk[None, :],
                        mask=col_ok[:, None] & dk_ok[None, :], other=0.0)
            z = tl.dot(q, tl.trans(w), input_precision=PRECISION)
            if HAS_BIAS:
                z += tl.load(Bias + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            # filtered columns of this block: advance each row's pointer through its sorted list
            filt = tl.zeros([BLOCK_Q, BLOCK_E], dtype=tl.int1)
            act = (ptr < end) & (f < e0 + BLOCK_E)
            while tl.max(act.to(tl.int32), 0) > 0:
                filt = filt | ((cols[None, :] == f[:, None]) & act[:, None])
                ptr = ptr + act.to(ptr.dtype)
                f = tl.load(Indices + ptr, mask=ptr < end, other=E)
                act = (ptr < end) & (f < e0 + BLOCK_E)
            is_t = cols[None, :] == t[:, None]
            st_tile += tl.sum(tl.where(is_t, z, 0.0), 1)
            keep = col_ok[None, :] & (~is_t) & (~filt)
            gt += tl.sum((keep & (z > st[:, None])).to(tl.int32), 1)
            ge += tl.sum((keep & (z >= st[:, None])).to(tl.int32), 1)
        tl.store(GT + rows, gt, mask=row_ok)
        tl.store(GE + rows, ge, mask=row_ok)
        tl.store(ST_USED + rows, st, mask=row_ok)
        tl.store(ST_TILE + rows, st_tile, mask=row_ok)


def _blocks(d: int, device: torch.device) -> dict:
    block_d = max(16, triton.next_power_of_2(d))
    if device.type != "cuda":  # TRITON_INTERPRET=1
        return dict(BLOCK_Q=16, BLOCK_E=16, BLOCK_D=block_d, num_warps=1)
    if block_d <= 256:
        return dict(BLOCK_Q=64, BLOCK_E=64, BLOCK_D=block_d, num_warps=4 if block_d <= 128 else 8)
    if block_d <= 512:
        return dict(BLOCK_Q=32, BLOCK_E=32, BLOCK_D=block_d, num_warps=8)
    return dict(BLOCK_Q=16, BLOCK_E=16, BLOCK_D=block_d, num_warps=8)


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def _counts_triton(q, w, b, t, indptr, indices):
    """(gt, ge, s_t) via the kernel; blocks whose target estimate differs from the in-block
    target score are counted again against the in-block score."""
    Q, D = q.shape
    E = w.shape[0]
    cfg = _blocks(D, q.device)
    nblk = triton.cdiv(Q, cfg["BLOCK_Q"])
    gt = torch.empty(Q, device=q.device, dtype=torch.int32)
    ge = torch.empty_like(gt)
    st_used = torch.empty(Q, device=q.device, dtype=torch.float32)
    st_tile = torch.empty(Q, device=q.device, dtype=torch.float32)
    prec = "tf32" if (q.dtype == torch.float32 and q.is_cuda and torch.backends.cuda.matmul.allow_tf32) else "ieee"
    idx = indices if indices.numel() else torch.zeros(1, device=q.device, dtype=indices.dtype)

    def launch(block_ids, st_in):
        _filtered_rank_kernel[(block_ids.numel(),)](
            q, w, b if b is not None else w, t, st_in if st_in is not None else st_used, indptr, idx, block_ids,
            gt, ge, st_used, st_tile, Q, E, D, q.stride(0), w.stride(0),
            HAS_BIAS=b is not None, HAS_ST=st_in is not None, PRECISION=prec, **cfg,
        )

    launch(torch.arange(nblk, device=q.device, dtype=torch.int32), None)
    bad = ~_same(st_used, st_tile)
    if bool(bad.any()):
        blocks = torch.unique(bad.nonzero().squeeze(1) // cfg["BLOCK_Q"]).to(torch.int32)
        launch(blocks, st_tile.clone())
    return gt.long(), ge.long(), st_tile


def _clean_filter(indptr, indices, target, E):
    """Per-row sorted, deduplicated filter lists without each row's target (CSR, int64)."""
    Q = target.numel()
    counts = indptr[1:] - indptr[:-1]
    rows = torch.repeat_interleave(torch.arange(Q, device=target.device), counts)
    keep = indices != target[rows]
    key = torch.unique(rows[keep] * E + indices[keep])  # sorted
    rows, idx = key // E, key % E
    new_ptr = torch.zeros(Q + 1, dtype=torch.int64, device=target.device)
    new_ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=Q), 0)
    return new_ptr, idx

# --------------------------------------------------------------------------- chunked PyTorch path


def _counts_chunked(q, w, b, t, indptr, indices, chunk_bytes: int):
    """(gt, ge, s_t) over (query, entity) chunks; temporaries <= chunk_bytes.

    Per chunk: scores (fp32/fp64) and one comparison buffer of the same dtype (comparisons
    are written into it and summed, so no bool->int64 copy is made); filtered and target
    columns are set to NaN so that no comparison counts them.
    """
    Q, D = q.shape
    E = w.shape[0]
    ct = _config.compute_dtype(q.dtype)
    esize = torch.finfo(ct).bits // 8
    upcast = w.dtype != ct
    # 3/4 of the budget: scores + comparison buffer (+ an upcast weight chunk); 1/4: target estimate
    qc_n, ec_n = _config.plan_chunks(Q, E, (3 * chunk_bytes // 4) // (2 * esize), col_extra=(D + 1) // 2 if upcast else 0)
    ec_n = min(ec_n, 2**24)  # float32 sums of 0/1 stay exact
    gt = torch.zeros(Q, dtype=torch.int64, device=q.device)
    ge = torch.zeros_like(gt)
    st_all = torch.empty(Q, dtype=ct, device=q.device)
    nan = float("nan")
    buf = torch.empty(qc_n * ec_n, dtype=ct, device=q.device)
    for q0 in range(0, Q, qc_n):
        q1 = min(Q, q0 + qc_n)
        qc, tc = q[q0:q1].to(ct), t[q0:q1]
        n = q1 - q0
        # target estimate: (query chunk) x (gathered target rows) matmul, diagonal, in sub-blocks
        st = torch.empty(n, dtype=ct, device=q.device)
        sub = max(1, min(n, int((chunk_bytes // 4 // esize) ** 0.5) // 2))  # sub x sub product + sub x D rows
        for s0 in range(0, n, sub):
            wt = w[tc[s0:s0 + sub]].to(ct)
            st[s0:s0 + sub] = (qc[s0:s0 + sub] @ wt.T).diagonal()
        if b is not None:
            st += b[tc].to(ct)
        # this chunk's filter entries grouped by entity chunk
        lo, hi = int(indptr[q0]), int(indptr[q1])
        f_idx = indices[lo:hi]
        f_row = torch.repeat_interleave(torch.arange(n, device=q.device), indptr[q0 + 1:q1 + 1] - indptr[q0:q1])
        f_blk = f_idx // ec_n
        order = torch.argsort(f_blk, stable=True)
        f_idx, f_row = f_idx[order], f_row[order]
        bounds = torch.searchsorted(f_blk[order], torch.arange(0, (E + ec_n - 1) // ec_n + 1, device=q.device)).tolist()

        def count(st_cmp):
            g1 = torch.zeros(n, dtype=torch.int64, device=q.device)
            g2 = torch.zeros_like(g1)
            tile = torch.full((n,), nan, dtype=ct, device=q.device)
            for k, e0 in enumerate(range(0, E, ec_n)):
                e1 = min(E, e0 + ec_n)
                s = qc @ w[e0:e1].to(ct).T
                if b is not None:
                    s += b[e0:e1].to(ct)
                r = ((tc >= e0) & (tc < e1)).nonzero().squeeze(1)
                tile[r] = s[r, tc[r] - e0]
                s[r, tc[r] - e0] = nan
                a, z = bounds[k], bounds[k + 1]
                if z > a:
                    s[f_row[a:z], f_idx[a:z] - e0] = nan
                out = buf[: n * (e1 - e0)].view(n, e1 - e0)
                torch.gt(s, st_cmp[:, None], out=out)
                g1 += out.sum(1).long()
                torch.ge(s, st_cmp[:, None], out=out)
                g2 += out.sum(1).long()
                del s
            return g1, g2, tile

        c_gt, c_ge, tile = count(st)
        if not bool(_same(st, tile).all()):  # rounding differed: recount against the in-block score
            c_gt, c_ge, tile = count(tile)
        gt[q0:q1], ge[q0:q1], st_all[q0:q1] = c_gt, c_ge, tile
    return gt, ge, st_all


# --------------------------------------------------------------------------- public op


def _check(queries, weight, target, filter_indptr, filter_indices, bias):
    op = "filtered_rank"
    if queries.dim() != 2 or weight.dim() != 2 or queries.shape[1] != weight.shape[1]:
        raise KGCError(f"{op}: expected queries (Q, D) and weight (E, D); got {tuple(queries.shape)} and {tuple(weight.shape)}")
    if not queries.is_floating_point() or queries.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise KGCError(f"{op}: queries/weight/bias must share one floating dtype ({queries.dtype}, {weight.dtype})")
    Q, E = queries.shape[0], weight.shape[0]
    if bias is not None and tuple(bias.shape) != (E,):
        raise KGCError(f"{op}: bias must have shape ({E},), got {tuple(bias.shape)}")
    if tuple(target.shape) != (Q,) or target.dtype not in (torch.int64, torch.int32):
        raise KGCError(f"{op}: target must be an integer tensor of shape ({Q},), got {target.dtype} {tuple(target.shape)}")
    if Q and bool(((target < 0) | (target >= E)).any()):
        raise KGCError(f"{op}: target ids must be in [0, {E})")
    if tuple(filter_indptr.shape) != (Q + 1,) or int(filter_indptr[0]) != 0 or int(filter_indptr[-1]) != filter_indices.numel() \
            or bool((filter_indptr[1:] < filter_indptr[:-1]).any()):
        raise KGCError(f"{op}: filter_indptr must be non-decreasing of shape ({Q + 1},) from 0 to len(filter_indices)={filter_indices.numel()}")
    if filter_indices.numel() and bool(((filter_indices < 0) | (filter_indices >= E)).any()):
        raise KGCError(f"{op}: filter_indices must be in [0, {E})")


@torch.no_grad()
def filtered_rank(
    queries: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    impl: str | None = None,
    chunk_bytes: int | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Filtered optimistic and pessimistic 1-based ranks of each query's target.

    Args:
        queries: (Q, D) query vectors (float16/bfloat16/float32/float64).
        weight: (E, D) entity matrix, same dtype.
        target: (Q,) int64 target entity per query.
        filter_indptr: (Q + 1,) int64 CSR row pointer of the known true answers per query.
        filter_indices: (nnz,) int64 entity ids (any order, duplicates and the target allowed).
        bias: optional (E,).
        impl: "auto" | "triton" | "chunked" | "ref".  chunk_bytes: chunked-path memory bound.
    Returns:
        (optimistic (Q,), pessimistic (Q,)) int64 on the queries' device.
    """
    dev = queries.device
    target = target.to(dev)
    filter_indptr, filter_indices = filter_indptr.to(dev).long(), filter_indices.to(dev).long()
    _check(queries, weight, target, filter_indptr, filter_indices, bias)
    which = _config.resolve_impl(impl, queries, queries.shape[1], "filtered_rank")
    if which == "ref":
        return filtered_rank_ref(queries, weight, target, filter_indptr, filter_indices, bias)
    target = target.long()
    Q, E = queries.shape[0], weight.shape[0]
    if Q == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return empty, empty.clone()
    indptr, indices = _clean_filter(filter_indptr, filter_indices, target, E)
    if which == "triton":
        gt, ge, st = _counts_triton(queries.contiguous(), weight.contiguous(),
                                    None if bias is None else bias.contiguous(), target, indptr, indices)
    else:
        gt, ge, st = _counts_chunked(queries, weight, bias, target, indptr, indices, _config.get_chunk_bytes(chunk_bytes))
    worst = E - (indptr[1:] - indptr[:-1])
    nan_t = torch.isnan(st)
    return torch.where(nan_t, worst, 1 + gt), torch.where(nan_t, worst, 1 + ge)


@torch.no_grad()
def filtered_rank_ref(
    queries: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense reference of :func:`filtered_rank`: same shapes; builds (Q, E) scores and mask.

    Scores are computed in the input dtype as ``queries @ weight.T + bias``. Tests only.
    """
    scores = queries @ weight.T
    if bias is not None:
        scores = scores + bias
    Q, E = scores.shape
    dev = scores.device
    ar = torch.arange(Q, device=dev)
    t = target.long()
    counts = filter_indptr[1:] - filter_indptr[:-1]
    mask = torch.zeros(Q, E, dtype=torch.bool, device=dev)
    mask[torch.repeat_interleave(ar, counts), filter_indices.long()] = True
    mask[ar, t] = False
    n_filtered = mask.sum(1)
    mask[ar, t] = True  # exclude the target from the counts
    st = scores[ar, t]
    gt = ((scores > st[:, None]) & ~mask).sum(1)
    ge = ((scores >= st[:, None]) & ~mask).sum(1)
    worst = E - n_filtered
    nan_t = torch.isnan(st)
    return torch.where(nan_t, worst, 1 + gt), torch.where(nan_t, worst, 1 + ge)
