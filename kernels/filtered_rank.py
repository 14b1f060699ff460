"""The filtered-rank op: each query's target ranked among all entities, known true answers filtered.

Definitions (docs/architecture.md, "Kernels")::

    s_e     = queries[i] . weight[e] + bias[e]            (filtered_rank: never stored as (Q, E))
            = scores[i, e]                                (filtered_rank_from_scores)
    F_i     = set(filter_indices[filter_indptr[i]:filter_indptr[i+1]]) - {target[i]}
              (known true answers; the target itself is never filtered; duplicates count once)
    optimistic_i  = 1 + #{e not in F_i, e != t : s_e >  s_t}
    pessimistic_i = 1 + #{e not in F_i, e != t : s_e >= s_t}
    realistic_i   = (optimistic_i + pessimistic_i) / 2     (computed by the caller)

Ties are never hidden: a model giving every entity the same score gets optimistic rank 1 but
pessimistic rank E - |F_i|.

NaN rule (every implementation): a NaN score of the target or of any candidate (an unfiltered
entity) raises :class:`NaNScoreError` (a :class:`kgc.KGCError`) naming the query; a NaN in a
filtered-out column is ignored, since that column is never compared.

One switch chooses the implementation (``impl=``, ``kernels.use_impl`` / ``set_impl``, then
``KGC_KERNEL_IMPL``; see :mod:`kernels._config`):

* ``"triton"`` - a fused kernel (CUDA fp32/fp16/bf16, D <= 1024; the CPU interpreter under
  ``TRITON_INTERPRET=1``). The target's score is the one the entity-block matmul produces for
  the target column: it is first estimated with a matmul of the same shape class (query block x
  gathered target rows) and, for the rare rows where it differs from the in-block value by
  rounding, the block is counted again with the in-block value, so duplicated entity embeddings
  always tie exactly.
* ``"chunked"`` - blocks of scores bounded by ``chunk_bytes`` (query chunks first, entity column
  chunks only when one query row of scores does not fit) and, from vectors, sized to stay in the
  last-level cache. Each block is counted in one fused numba pass on CPU float32/float64 (strict
  count, non-strict count, target and filter corrections, NaN check per row), by torch
  comparisons elsewhere (CUDA fallback, half precision). Unfiltered counts minus the (sparse)
  filtered entries: no dense filter mask. The target score is read from the block that scores
  every other entity, so ties are exact.
* ``"ref"`` - dense plain PyTorch (tests, debugging).

``filtered_rank_from_scores`` ranks a (B, E) score matrix (models whose scores are not one matmul,
callable scorers); there is nothing to fuse, so ``"triton"`` and ``"auto"`` run the chunked path.

Layout: Triton kernel -> launcher -> chunked path (numba / torch block counter) -> validator ->
public ops -> references.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from kgc.errors import KGCError
from kernels import _config

if _config.HAS_TRITON:
    import triton
    import triton.language as tl
else:  # pragma: no cover
    triton = None
    tl = None

# bytes per score element of a block: the score (<= 8) plus two boolean comparison temporaries
_BYTES_PER_SCORE = 12
#: score elements per block when ranking from vectors (32 MiB of float32, about an L3 cache; measured on
#: WN18RR, d=200, 2 cores: blocks of 200-500 queries rank at the speed of the bare matmul, 64 are 1.6x slower)
DEFAULT_CACHE_ELEMS = 2**23
#: fewest queries per block: below this the entity matrix is re-read for too little arithmetic
MIN_QUERY_CHUNK = 128
#: block counters of the chunked path (chosen per block; ``_force_counter`` is a test hook, not a setting)
COUNTERS = ("auto", "numba", "torch")
_counter = {"force": "auto"}
_numba_count = None  # compiled on first use (detect once)

if os.environ.get("KGC_RANK_COUNT"):
    warnings.warn("KGC_RANK_COUNT is no longer read: ranking has one switch, KGC_KERNEL_IMPL "
                  "(auto | triton | chunked | ref); the chunked path counts with numba wherever it can",
                  DeprecationWarning, stacklevel=2)


class NaNScoreError(KGCError):
    """A NaN score of a query's target or of one of its unfiltered candidates.

    ``queries``: offending query ids (row positions in the call, or the ids given to :meth:`relabel`),
    ascending, the first being the lowest of the call (the chunked path stops at the block holding
    it, so only that block's are listed); ``count``: how many were found."""

    def __init__(self, queries: list[int], count: int | None = None):
        self.queries = [int(q) for q in queries]
        self.count = len(self.queries) if count is None else int(count)
        more = f" (and {self.count - 1} more: {self.queries[1:6]}{'...' if self.count > 6 else ''})" \
            if self.count > 1 else ""
        super().__init__(f"NaN score for query {self.queries[0]}{more}: the scorer produced NaN for its target "
                         "or an unfiltered candidate; cannot rank")

    def relabel(self, ids: torch.Tensor | list[int]) -> "NaNScoreError":
        """The same error with row positions replaced by ``ids[row]`` (e.g. a batch's query index)."""
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        return NaNScoreError([ids[q] for q in self.queries], self.count)


def _raise_nan(bad_rows: torch.Tensor, row0: int = 0) -> None:
    """Raise :class:`NaNScoreError` if ``bad_rows`` ((n,) bool or counts) has any hit."""
    hit = bad_rows.nonzero(as_tuple=True)[0]
    if hit.numel():
        first = (hit[:6] + row0).tolist()
        raise NaNScoreError(first, int(hit.numel()))


# --------------------------------------------------------------------------- Triton kernel

if triton is not None:

    @triton.jit
    def _filtered_rank_kernel(
        Qv, W, Bias, T, ST_IN, Indptr, Indices, BlockIds,
        GT, GE, NAN, ST_USED, ST_TILE,
        Q, E, D,
        stride_q, stride_w,
        HAS_BIAS: tl.constexpr, HAS_ST: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_Q: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        """Counts of unfiltered non-target entities scoring >, >= the target (and NaN), per query.

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
        bad = tl.zeros([BLOCK_Q], dtype=tl.int32)
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
            bad += tl.sum((keep & (z != z)).to(tl.int32), 1)
        tl.store(GT + rows, gt, mask=row_ok)
        tl.store(GE + rows, ge, mask=row_ok)
        tl.store(NAN + rows, bad, mask=row_ok)
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
    """(gt, ge, nan) via the kernel: blocks whose target estimate differs from the in-block target
    score are counted again against the in-block score; ``nan`` flags rows with a NaN target or
    unfiltered candidate score."""
    Q, D = q.shape
    E = w.shape[0]
    cfg = _blocks(D, q.device)
    nblk = triton.cdiv(Q, cfg["BLOCK_Q"])
    gt = torch.empty(Q, device=q.device, dtype=torch.int32)
    ge = torch.empty_like(gt)
    nan = torch.empty_like(gt)
    st_used = torch.empty(Q, device=q.device, dtype=torch.float32)
    st_tile = torch.empty(Q, device=q.device, dtype=torch.float32)
    prec = "tf32" if (q.dtype == torch.float32 and q.is_cuda and torch.backends.cuda.matmul.allow_tf32) else "ieee"
    idx = indices if indices.numel() else torch.zeros(1, device=q.device, dtype=indices.dtype)

    def launch(block_ids, st_in):
        _filtered_rank_kernel[(block_ids.numel(),)](
            q, w, b if b is not None else w, t, st_in if st_in is not None else st_used, indptr, idx, block_ids,
            gt, ge, nan, st_used, st_tile, Q, E, D, q.stride(0), w.stride(0),
            HAS_BIAS=b is not None, HAS_ST=st_in is not None, PRECISION=prec, **cfg,
        )

    launch(torch.arange(nblk, device=q.device, dtype=torch.int32), None)
    bad = ~_same(st_used, st_tile)
    if bool(bad.any()):
        blocks = torch.unique(bad.nonzero().squeeze(1) // cfg["BLOCK_Q"]).to(torch.int32)
        launch(blocks, st_tile.clone())
    return gt.long(), ge.long(), (nan > 0) | torch.isnan(st_tile)


# --------------------------------------------------------------------------- chunked path


def _filter_entries(
    target: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, num_entities: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, entity) of every filtered entry, deduplicated, sorted by row then entity, the target
    itself removed."""
    q = target.shape[0]
    device = target.device
    indptr = indptr.to(device=device, dtype=torch.int64)
    indices = indices.to(device=device, dtype=torch.int64)
    row = torch.repeat_interleave(torch.arange(q, device=device), indptr[1:] - indptr[:-1])
    keep = indices != target[row]
    row, idx = row[keep], indices[keep]
    # FilterIndex rows are sorted and unique: then no sort is needed (O(nnz) check)
    if idx.numel() > 1:
        ordered = (row[1:] > row[:-1]) | ((row[1:] == row[:-1]) & (idx[1:] > idx[:-1]))
        if not bool(ordered.all()):
            code = torch.unique(row * num_entities + idx)
            return code // num_entities, code % num_entities
    return row, idx


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Row sums of a boolean (B, C) mask as int64 (int32 accumulation over a uint8 view is ~2x faster)."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32).to(torch.int64)


@contextlib.contextmanager
def _force_counter(counter: str):
    """Test hook: count every block of the chunked path with ``counter`` (``numba`` raises where it
    cannot run). Not a setting: the implementation switch is ``impl`` / ``KGC_KERNEL_IMPL``."""
    if counter not in COUNTERS:
        raise KGCError(f"unknown rank count counter {counter!r}; valid: {', '.join(COUNTERS)}")
    old = _counter["force"]
    _counter["force"] = counter
    try:
        yield
    finally:
        _counter["force"] = old


def _get_numba_count():
    """The compiled fused counter (None without numba): per row ``i`` of ``block`` (B, C) it adds to
    ``gt[i]``/``ge[i]`` the number of scores ``>``/``>=`` ``st[i]``, minus those of the target column
    ``tgt[i] - col0`` and of the filtered columns ``fidx[fptr[i]:fptr[i + 1]] - col0`` that lie in the
    block, and writes to ``nan[i]`` the row's NaN count outside those columns - one sweep of the block."""
    global _numba_count
    if _numba_count is None:
        try:
            import numba
        except ImportError:
            _numba_count = False
            return None

        @numba.njit(cache=True, nogil=True, parallel=True)
        def _count_rows(block, st, tgt, fptr, fidx, col0, gt, ge, nan):  # pragma: no cover - compiled
            n, m = block.shape
            for i in numba.prange(n):
                s = st[i]
                g = 0
                e = 0
                bad = 0
                for j in range(m):
                    v = block[i, j]
                    g += v > s
                    e += v >= s
                    bad += v != v
                c = tgt[i] - col0
                if 0 <= c < m:
                    v = block[i, c]
                    g -= v > s
                    e -= v >= s
                    bad -= v != v
                for k in range(fptr[i], fptr[i + 1]):
                    c = fidx[k] - col0
                    if 0 <= c < m:
                        v = block[i, c]
                        g -= v > s
                        e -= v >= s
                        bad -= v != v
                gt[i] += g
                ge[i] += e
                nan[i] = bad

        def _run(block, st, tgt, fptr, fidx, col0, gt, ge, nan):
            # as many threads as torch's intra-op setting (numba would otherwise take every core)
            threads = torch.get_num_threads()
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            try:
                _count_rows(block, st, tgt, fptr, fidx, col0, gt, ge, nan)
            finally:
                # numba's OpenMP threading layer, started by the first parallel call, resets the OpenMP
                # thread count torch shares: training after the first validation then ran on more
                # threads (other float sums in LayerNorm's backward) than a run resumed past it
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)

        _numba_count = _run
    return _numba_count or None


def _fused_counter(block: torch.Tensor, st: torch.Tensor, counter: str | None = None):
    """The numba counter when it applies to this block (else None; raises if ``numba`` was forced)."""
    impl = _counter["force"] if counter is None else counter
    if impl not in COUNTERS:
        raise KGCError(f"unknown rank count counter {impl!r}; valid: {', '.join(COUNTERS)}")
    fast = (block.device.type == "cpu" and block.dtype in (torch.float32, torch.float64) and st.dtype == block.dtype
            and not block.requires_grad)
    if impl == "torch" or (impl == "auto" and not fast):
        return None
    fn = _get_numba_count()
    if fn is None or not fast:
        if impl == "numba":
            raise KGCError("rank count counter 'numba' needs numba and a CPU float32/float64 block")
        return None
    return fn


def count_block(block: torch.Tensor, st: torch.Tensor, *, counter: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row ``i`` of a score block ``(B, C)``: ``#{j: block[i, j] > st[i]}`` and ``#{j: block[i, j] >= st[i]}``
    (int64, both ``(B,)``), no filter; a NaN in ``st`` or the block raises :class:`NaNScoreError`. One fused
    numba pass on CPU float32/float64, torch comparisons otherwise (``counter`` forces one: tests)."""
    _raise_nan(torch.isnan(st))
    fn = _fused_counter(block, st, counter)
    if fn is None:
        if torch.isnan(block.sum()):  # one cheap reduction; exact only then (NaN, or +inf and -inf)
            _raise_nan(torch.isnan(block).any(1))
        s = st.unsqueeze(1)
        return _count(block > s), _count(block >= s)
    n = block.shape[0]
    gt = torch.zeros(n, dtype=torch.int64)
    ge = torch.zeros(n, dtype=torch.int64)
    nan = torch.empty(n, dtype=torch.int64)
    no_target = torch.full((n,), -1, dtype=torch.int64)
    fn(block.numpy(), st.contiguous().numpy(), no_target.numpy(), torch.zeros(n + 1, dtype=torch.int64).numpy(),
       torch.zeros(0, dtype=torch.int64).numpy(), 0, gt.numpy(), ge.numpy(), nan.numpy())
    _raise_nan(nan)
    return gt, ge


class _Counter:
    """Accumulates strict / non-strict counts of scores against the target score over blocks of the
    rows ``row0..row0 + n`` (``row0`` only names queries in errors)."""

    def __init__(self, target: torch.Tensor, target_score: torch.Tensor, frow: torch.Tensor, fidx: torch.Tensor,
                 row0: int = 0):
        self.target = target
        self.st = target_score
        self.frow, self.fidx = frow, fidx
        self.row0 = row0
        n = target.shape[0]
        self.gt = torch.zeros(n, dtype=torch.int64, device=target.device)
        self.ge = torch.zeros(n, dtype=torch.int64, device=target.device)
        self._fptr: torch.Tensor | None = None  # per-row offsets into (frow, fidx), built on first fused use
        _raise_nan(torch.isnan(target_score), row0)

    def add(self, block: torch.Tensor, col0: int) -> None:
        n, width = block.shape
        col1 = col0 + width
        fn = _fused_counter(block, self.st) if self.gt.device.type == "cpu" else None
        if fn is not None:  # counts, target and filter corrections, NaN check in one sweep
            if self._fptr is None:
                self._fptr = torch.searchsorted(self.frow, torch.arange(n + 1)).contiguous()
            nan = torch.empty(n, dtype=torch.int64)
            fn(block.numpy(), self.st.contiguous().numpy(), self.target.contiguous().numpy(), self._fptr.numpy(),
               self.fidx.contiguous().numpy(), int(col0), self.gt.numpy(), self.ge.numpy(), nan.numpy())
            _raise_nan(nan, self.row0)
            return
        rows = ((self.target >= col0) & (self.target < col1)).nonzero(as_tuple=True)[0]
        sel = (self.fidx >= col0) & (self.fidx < col1) if self.frow.numel() else None
        if torch.isnan(block.sum()):  # one cheap reduction; the exact check only then
            bad = torch.isnan(block)
            bad[rows, self.target[rows] - col0] = False  # the target's own NaN was checked on its score
            if sel is not None:
                bad[self.frow[sel], self.fidx[sel] - col0] = False  # filtered columns are never compared
            _raise_nan(bad.any(1), self.row0)
        st = self.st.unsqueeze(1)
        self.gt += _count(block > st).to(self.gt.device)
        self.ge += _count(block >= st).to(self.ge.device)
        # the target is never counted against itself
        if rows.numel():
            v = block[rows, self.target[rows] - col0]
            self.gt[rows] -= (v > self.st[rows]).to(torch.int64)
            self.ge[rows] -= (v >= self.st[rows]).to(torch.int64)
        # filtered entries are not counted either
        if sel is not None:
            r = self.frow[sel]
            if r.numel():
                v = block[r, self.fidx[sel] - col0]
                s = self.st[r]
                self.gt -= torch.bincount(r[v > s], minlength=n)
                self.ge -= torch.bincount(r[v >= s], minlength=n)

    def ranks(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gt + 1, self.ge + 1


def _chunk_sizes(
    q: int, e: int, chunk_bytes: int, query_chunk: int | None, entity_chunk: int | None,
    cache_elems: int = DEFAULT_CACHE_ELEMS,
) -> tuple[int, int]:
    """(queries, entities) per block: within ``chunk_bytes`` always; by default about ``cache_elems``
    scores (but at least :data:`MIN_QUERY_CHUNK` queries when the memory bound allows)."""
    if chunk_bytes <= 0:
        raise KGCError(f"chunk_bytes must be positive, got {chunk_bytes}")
    budget = max(1, chunk_bytes // _BYTES_PER_SCORE)  # score elements per block
    ec = int(entity_chunk) if entity_chunk else min(e, budget)
    if query_chunk:
        qc = int(query_chunk)
    else:
        qc = max(1, budget // max(ec, 1))
        if cache_elems:
            qc = min(qc, max(MIN_QUERY_CHUNK, cache_elems // max(ec, 1)))
    return max(1, min(qc, max(q, 1))), max(1, min(ec, e))


def _ranks_vectors_chunked(qv, w, bb, target, frow_all, fidx_all, chunk_bytes, query_chunk, entity_chunk):
    """Chunked ranks of ``qv @ w.T + bb`` (all in one compute dtype, on one device)."""
    q, e = qv.shape[0], w.shape[0]
    device = w.device
    qc, ec = _chunk_sizes(q, e, chunk_bytes, query_chunk, entity_chunk)
    # per-row offsets of the deduplicated filter entries (sorted by row)
    fptr = torch.searchsorted(frow_all, torch.arange(q + 1, device=device))

    def block(qs: torch.Tensor, c0: int) -> torch.Tensor:
        out = qs @ w[c0 : c0 + ec].T
        if bb is not None:
            out = out + bb[c0 : c0 + ec]
        return out

    opt, pes = [], []
    for a in range(0, q, qc):
        b = min(q, a + qc)
        qs, tg = qv[a:b], target[a:b]
        lo, hi = int(fptr[a]), int(fptr[b])
        frow, fidx = frow_all[lo:hi] - a, fidx_all[lo:hi]
        if ec >= e:
            scores = block(qs, 0)
            st = scores.gather(1, tg.unsqueeze(1)).squeeze(1)
            counter = _Counter(tg, st, frow, fidx, row0=a)
            counter.add(scores, 0)
        else:
            st = torch.empty(b - a, dtype=qv.dtype, device=device)
            for c0 in range(0, e, ec):  # pass 1: target scores from the same blocks
                rows = ((tg >= c0) & (tg < c0 + ec)).nonzero(as_tuple=True)[0]
                if rows.numel():
                    st[rows] = block(qs, c0)[rows, tg[rows] - c0]
            counter = _Counter(tg, st, frow, fidx, row0=a)
            for c0 in range(0, e, ec):  # pass 2: counts
                counter.add(block(qs, c0), c0)
        o, p = counter.ranks()
        opt.append(o)
        pes.append(p)
    if not opt:
        z = torch.zeros(0, dtype=torch.int64, device=device)
        return z, z.clone()
    return torch.cat(opt), torch.cat(pes)


# --------------------------------------------------------------------------- validator


def _check(op: str, q: int, e: int, target: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor) -> None:
    """The one validator of both ops: target ids and the CSR filter of ``q`` queries over ``e`` entities."""
    if target.dim() != 1 or target.shape[0] != q or target.is_floating_point() or target.is_complex():
        raise KGCError(f"{op}: target must be an integer tensor of shape ({q},), got {target.dtype} {tuple(target.shape)}")
    if q and bool(((target < 0) | (target >= e)).any()):
        raise KGCError(f"{op}: target entity ids must lie in 0..{e - 1}")
    if indptr.dim() != 1 or indptr.shape[0] != q + 1:
        raise KGCError(f"{op}: filter_indptr must have shape ({q + 1},), got {tuple(indptr.shape)}")
    if indices.dim() != 1:
        raise KGCError(f"{op}: filter_indices must be 1-D, got shape {tuple(indices.shape)}")
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0] or (q and bool((indptr[1:] < indptr[:-1]).any())):
        raise KGCError(f"{op}: filter_indptr must be non-decreasing from 0 to len(filter_indices)={indices.shape[0]} "
                       f"(got indptr[0]={int(indptr[0])}, indptr[-1]={int(indptr[-1])})")
    if indices.numel() and bool(((indices < 0) | (indices >= e)).any()):
        raise KGCError(f"{op}: filter_indices must lie in 0..{e - 1}")


def _chunk_bytes(value: int | str | None) -> int:
    """An int is a byte bound as given (>= 1; tests use tiny ones); a string or None goes through
    :func:`kernels._config.get_chunk_bytes` (``set_chunk_bytes``, ``KGC_KERNEL_CHUNK_BYTES``, 256 MiB)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise KGCError(f"chunk_bytes must be positive, got {value}")
        return value
    return _config.get_chunk_bytes(value)


# --------------------------------------------------------------------------- public ops


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
    query_chunk: int | None = None,
    entity_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Filtered optimistic and pessimistic 1-based ranks of each query's target, scores
    ``queries @ weight.T + bias`` never stored as a whole.

    Args:
        queries: (Q, D) query vectors (float16/bfloat16/float32/float64).
        weight: (E, D) entity matrix; bias: optional (E,). Mixed float dtypes are promoted.
        target: (Q,) integer target entity per query.
        filter_indptr: (Q + 1,) CSR row pointer of the known true answers per query.
        filter_indices: (nnz,) entity ids (any order, duplicates and the target allowed).
        impl: "auto" | "triton" | "chunked" | "ref" (default: ``kernels.use_impl``/``set_impl``,
            then ``KGC_KERNEL_IMPL``, then "auto": Triton for supported CUDA inputs, else chunked).
        chunk_bytes: the chunked path's block bound; query_chunk / entity_chunk: explicit block
            sizes of the chunked path (tests, benchmarks).
    Returns:
        (optimistic (Q,), pessimistic (Q,)) int64 on the weight's device.
    Raises:
        NaNScoreError: a NaN target or unfiltered candidate score (filtered NaNs are ignored).
    """
    op = "filtered_rank"
    if queries.dim() != 2 or weight.dim() != 2 or queries.shape[1] != weight.shape[1]:
        raise KGCError(f"{op}: query vectors (Q, D) and entity weight (E, D) must agree, got "
                       f"{tuple(queries.shape)} and {tuple(weight.shape)}")
    if not queries.is_floating_point() or not weight.is_floating_point() or (bias is not None and not bias.is_floating_point()):
        raise KGCError(f"{op}: queries/weight/bias must be floating point ({queries.dtype}, {weight.dtype})")
    q_n, e = queries.shape[0], weight.shape[0]
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != e):
        raise KGCError(f"{op}: entity bias must have shape ({e},), got {tuple(bias.shape)}")
    dev = weight.device
    target = target.to(dev)
    filter_indptr, filter_indices = filter_indptr.to(dev), filter_indices.to(dev)
    _check(op, q_n, e, target, filter_indptr, filter_indices)
    dtype = torch.promote_types(queries.dtype, weight.dtype)
    if bias is not None:
        dtype = torch.promote_types(dtype, bias.dtype)
    which = _config.resolve_impl(impl, torch.empty(0, dtype=dtype, device=dev), queries.shape[1], op)
    target = target.long()
    filter_indptr, filter_indices = filter_indptr.long(), filter_indices.long()
    if which == "ref":
        b = None if bias is None else bias.to(dev, dtype)
        scores = queries.to(dev, dtype) @ weight.to(dtype).T
        return _ranks_dense(scores if b is None else scores + b, target, filter_indptr, filter_indices)
    if q_n == 0:
        z = torch.zeros(0, dtype=torch.int64, device=dev)
        return z, z.clone()
    frow, fidx = _filter_entries(target, filter_indptr, filter_indices, e)
    if which == "triton":
        cast = (lambda x: x.to(dev, dtype).contiguous())
        indptr = torch.searchsorted(frow, torch.arange(q_n + 1, device=dev))
        gt, ge, nan = _counts_triton(cast(queries), cast(weight), None if bias is None else cast(bias), target,
                                     indptr, fidx)
        _raise_nan(nan)
        return 1 + gt, 1 + ge
    ct = _config.compute_dtype(dtype)  # float32, or float64 for float64 inputs
    return _ranks_vectors_chunked(
        queries.to(dev, ct), weight.to(ct), None if bias is None else bias.to(dev, ct), target, frow, fidx,
        _chunk_bytes(chunk_bytes), query_chunk, entity_chunk,
    )


@torch.no_grad()
def filtered_rank_from_scores(
    scores: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    *,
    impl: str | None = None,
    chunk_bytes: int | str | None = None,
    entity_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`filtered_rank` of a score matrix ``(B, E)`` (any float dtype; compared as given).

    ``impl``: "ref" is the dense reference; any other choice ("auto", "triton", "chunked") runs the
    chunked path, whose comparison temporaries stay within ``B x entity_chunk`` (without
    ``entity_chunk``: ``entity_chunk = chunk_bytes / (12 B)``). Same NaN rule as :func:`filtered_rank`.
    """
    op = "filtered_rank_from_scores"
    if scores.dim() != 2:
        raise KGCError(f"{op}: scores must be (B, E), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise KGCError(f"{op}: scores must be floating point, got {scores.dtype}")
    choice = _config.requested_impl(impl)
    if choice not in _config.IMPLS:
        raise KGCError(f"{op}: unknown implementation {choice!r} (choose from {', '.join(_config.IMPLS)})")
    b, e = scores.shape
    dev = scores.device
    target = target.to(dev)
    filter_indptr, filter_indices = filter_indptr.to(dev), filter_indices.to(dev)
    _check(op, b, e, target, filter_indptr, filter_indices)
    target = target.long()
    filter_indptr, filter_indices = filter_indptr.long(), filter_indices.long()
    if choice == "ref":
        return _ranks_dense(scores, target, filter_indptr, filter_indices)
    frow, fidx = _filter_entries(target, filter_indptr, filter_indices, e)
    st = scores.gather(1, target.unsqueeze(1)).squeeze(1)
    counter = _Counter(target, st, frow, fidx)
    if not entity_chunk:
        entity_chunk = max(1, _chunk_bytes(chunk_bytes) // (_BYTES_PER_SCORE * max(b, 1)))
    step = max(1, int(entity_chunk))
    for c0 in range(0, e, step):
        counter.add(scores[:, c0 : c0 + step], c0)
    return counter.ranks()


# --------------------------------------------------------------------------- references


def _ranks_dense(scores: torch.Tensor, target: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor):
    """Dense (Q, E) mask and comparisons; the NaN rule of the fast paths."""
    Q, E = scores.shape
    dev = scores.device
    ar = torch.arange(Q, device=dev)
    t = target.long()
    mask = torch.zeros(Q, E, dtype=torch.bool, device=dev)
    mask[torch.repeat_interleave(ar, indptr[1:] - indptr[:-1]), indices.long()] = True
    mask[ar, t] = False  # the target is never filtered
    _raise_nan((torch.isnan(scores) & ~mask).any(1))  # target or an unfiltered candidate
    mask[ar, t] = True  # exclude the target from the counts
    st = scores[ar, t]
    gt = ((scores > st[:, None]) & ~mask).sum(1)
    ge = ((scores >= st[:, None]) & ~mask).sum(1)
    return 1 + gt, 1 + ge


@torch.no_grad()
def filtered_rank_ref(
    queries: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense reference of :func:`filtered_rank` (``impl="ref"``): builds (Q, E) scores and mask.

    Scores are computed in the input dtype as ``queries @ weight.T + bias``. Tests only."""
    return filtered_rank(queries, weight, target, filter_indptr, filter_indices, bias, impl="ref")


@torch.no_grad()
def filtered_rank_from_scores_ref(scores, target, filter_indptr, filter_indices) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense reference of :func:`filtered_rank_from_scores` (``impl="ref"``). Tests only."""
    return filtered_rank_from_scores(scores, target, filter_indptr, filter_indices, impl="ref")
