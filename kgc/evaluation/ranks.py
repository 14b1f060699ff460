"""Filtered ranks with explicit tie handling.

For a query with target ``t`` and score ``s_e`` per entity, and the filter ``F``
(known true answers; the target itself is never filtered)::

    optimistic  = 1 + #{e not in F, e != t : s_e >  s_t}
    pessimistic = 1 + #{e not in F, e != t : s_e >= s_t}
    realistic   = (optimistic + pessimistic) / 2

(the "Kernels" contract of docs/architecture.md; PyKEEN's optimistic /
pessimistic / realistic ranks). Ties are never hidden: a model giving every
entity the same score gets optimistic rank 1 but pessimistic rank E - |F \\ {t}|.

Ranks are counted block by block: unfiltered counts over a block of entity
columns, then the (sparse) filtered entries with a higher score are subtracted,
so no dense filter mask is built. Blocks are bounded by ``chunk_bytes``
(query chunks first, entity column chunks only when one query row of scores
does not fit) and, from the vectors, sized to stay in the last-level cache
(``cache_elems`` scores, at least ``MIN_QUERY_CHUNK`` queries so the matmul
keeps its arithmetic intensity). NaN scores raise :class:`kgc.KGCError`.

Counting a CPU block (float32/float64) is one fused pass - strict count,
non-strict count and NaN check per row - compiled with numba
(:func:`count_block`); elsewhere (CUDA, half precision, or
``set_count_impl("torch")``) it is two comparisons and a NaN reduction in torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from kgc import KGCError

TIE_POLICIES = ("realistic", "optimistic", "pessimistic")
DEFAULT_CHUNK_BYTES = 256 * 2**20
# bytes per score element of a block: the score (<= 8) plus two boolean comparison temporaries
_BYTES_PER_SCORE = 12
#: score elements per block when ranking from vectors (32 MiB of float32, about an L3 cache; measured on
#: WN18RR, d=200, 2 cores: blocks of 200-500 queries rank at the speed of the bare matmul, 64 are 1.6x slower)
DEFAULT_CACHE_ELEMS = 2**23
#: fewest queries per block: below this the entity matrix is re-read for too little arithmetic
MIN_QUERY_CHUNK = 128
COUNT_IMPLS = ("auto", "numba", "torch")
_count_impl = os.environ.get("KGC_RANK_COUNT", "auto")
_numba_count = None  # compiled on first use (detect once)


def check_tie_policy(policy: str) -> str:
    if policy not in TIE_POLICIES:
        raise KGCError(f"unknown tie policy {policy!r}; valid: {', '.join(TIE_POLICIES)}")
    return policy


@dataclass
class Ranks:
    """1-based filtered ranks of ``Q`` queries (int64 CPU or device tensors)."""

    optimistic: torch.Tensor
    pessimistic: torch.Tensor

    @property
    def realistic(self) -> torch.Tensor:
        """Mean of optimistic and pessimistic (float64; may be a half-integer)."""
        return (self.optimistic.to(torch.float64) + self.pessimistic.to(torch.float64)) / 2

    def get(self, policy: str) -> torch.Tensor:
        """Ranks under ``policy`` as float64."""
        check_tie_policy(policy)
        if policy == "realistic":
            return self.realistic
        return getattr(self, policy).to(torch.float64)

    def __len__(self) -> int:
        return int(self.optimistic.shape[0])

    def __getitem__(self, idx) -> "Ranks":
        return Ranks(self.optimistic[idx], self.pessimistic[idx])

    def cpu(self) -> "Ranks":
        return Ranks(self.optimistic.cpu(), self.pessimistic.cpu())

    @staticmethod
    def cat(parts: list["Ranks"]) -> "Ranks":
        if not parts:
            return Ranks(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
        return Ranks(torch.cat([p.optimistic for p in parts]), torch.cat([p.pessimistic for p in parts]))


# ---- filter preparation -------------------------------------------------------------
def _check_csr(indptr: torch.Tensor, indices: torch.Tensor, num_queries: int, num_entities: int) -> None:
    if indptr.dim() != 1 or indptr.shape[0] != num_queries + 1:
        raise KGCError(f"filter indptr must have shape ({num_queries + 1},), got {tuple(indptr.shape)}")
    if indices.dim() != 1:
        raise KGCError(f"filter indices must be 1-D, got shape {tuple(indices.shape)}")
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0]:
        raise KGCError(
            f"filter CSR is inconsistent: indptr[0]={int(indptr[0])}, indptr[-1]={int(indptr[-1])}, "
            f"nnz={indices.shape[0]}"
        )
    if num_queries and bool((indptr[1:] < indptr[:-1]).any()):
        raise KGCError("filter indptr must be non-decreasing")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_entities):
        raise KGCError(f"filter indices must lie in 0..{num_entities - 1}")


def _check_target(target: torch.Tensor, num_queries: int, num_entities: int) -> None:
    if target.dim() != 1 or target.shape[0] != num_queries:
        raise KGCError(f"target must have shape ({num_queries},), got {tuple(target.shape)}")
    if num_queries and (int(target.min()) < 0 or int(target.max()) >= num_entities):
        raise KGCError(f"target entity ids must lie in 0..{num_entities - 1}")


def _filter_entries(
    target: torch.Tensor, indptr: torch.Tensor, indices: torch.Tensor, num_entities: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, entity) of every filtered entry, deduplicated, sorted by row, the target itself removed."""
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


def set_count_impl(impl: str) -> None:
    """Choose how blocks are counted: ``auto`` (numba on CPU float32/64 when importable), ``numba``
    (required: an error where it cannot run) or ``torch`` (the reference). Also ``KGC_RANK_COUNT``."""
    global _count_impl
    if impl not in COUNT_IMPLS:
        raise KGCError(f"unknown rank count implementation {impl!r}; valid: {', '.join(COUNT_IMPLS)}")
    _count_impl = impl


def _get_numba_count():
    """The compiled fused counter (None without numba): per row ``i`` of ``block`` (B, C) it adds to
    ``gt[i]``/``ge[i]`` the number of scores ``>``/``>=`` ``st[i]``, minus those of the target column
    ``tgt[i] - col0`` and of the filtered columns ``fidx[fptr[i]:fptr[i + 1]] - col0`` that lie in the
    block, and writes the row's NaN count to ``nan[i]`` - one sweep of the block."""
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
                for k in range(fptr[i], fptr[i + 1]):
                    c = fidx[k] - col0
                    if 0 <= c < m:
                        v = block[i, c]
                        g -= v > s
                        e -= v >= s
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


def _fused_counter(block: torch.Tensor, st: torch.Tensor):
    """The numba counter when it applies to this block (else None; raises if ``numba`` was forced)."""
    impl = _count_impl
    fast = (block.device.type == "cpu" and block.dtype in (torch.float32, torch.float64) and st.dtype == block.dtype
            and not block.requires_grad)
    if impl == "torch" or (impl == "auto" and not fast):
        return None
    fn = _get_numba_count()
    if fn is None or not fast:
        if impl == "numba":
            raise KGCError("rank count implementation 'numba' needs numba and a CPU float32/float64 block")
        return None
    return fn


def _check_nan(nan: torch.Tensor) -> None:
    if bool(nan.any()):
        raise KGCError("the scorer produced NaN scores; cannot rank")


def _count_block_torch(block: torch.Tensor, st: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # one cheap reduction; the exact check only runs when it is NaN (NaN, or +inf and -inf together)
    if torch.isnan(block.sum()) and bool(torch.isnan(block).any()):
        raise KGCError("the scorer produced NaN scores; cannot rank")
    st = st.unsqueeze(1)
    return _count(block > st), _count(block >= st)


def count_block(block: torch.Tensor, st: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row ``i`` of a score block ``(B, C)``: ``#{j: block[i, j] > st[i]}`` and ``#{j: block[i, j] >= st[i]}``
    (int64, both ``(B,)``); raises :class:`kgc.KGCError` on NaN scores. One fused numba pass on CPU
    float32/float64 (see :func:`set_count_impl`), torch comparisons otherwise."""
    if bool(torch.isnan(st).any()):
        raise KGCError("the scorer produced NaN scores; cannot rank")
    fn = _fused_counter(block, st)
    if fn is None:
        return _count_block_torch(block, st)
    n = block.shape[0]
    gt = torch.zeros(n, dtype=torch.int64)
    ge = torch.zeros(n, dtype=torch.int64)
    nan = torch.empty(n, dtype=torch.int64)
    no_target = torch.full((n,), -1, dtype=torch.int64)
    fn(block.numpy(), st.contiguous().numpy(), no_target.numpy(), torch.zeros(n + 1, dtype=torch.int64).numpy(),
       torch.zeros(0, dtype=torch.int64).numpy(), 0, gt.numpy(), ge.numpy(), nan.numpy())
    _check_nan(nan)
    return gt, ge


class _Counter:
    """Accumulates strict / non-strict counts of scores against the target score over blocks."""

    def __init__(self, target: torch.Tensor, target_score: torch.Tensor, frow: torch.Tensor, fidx: torch.Tensor):
        self.target = target
        self.st = target_score
        self.frow, self.fidx = frow, fidx
        n = target.shape[0]
        self.gt = torch.zeros(n, dtype=torch.int64, device=target.device)
        self.ge = torch.zeros(n, dtype=torch.int64, device=target.device)
        self._fptr: torch.Tensor | None = None  # per-row offsets into (frow, fidx), built on first fused use

    def add(self, block: torch.Tensor, col0: int) -> None:
        n, width = block.shape
        col1 = col0 + width
        fn = _fused_counter(block, self.st) if self.gt.device.type == "cpu" else None
        if fn is not None:  # counts, target and filter corrections in one sweep
            if bool(torch.isnan(self.st).any()):
                raise KGCError("the scorer produced NaN scores; cannot rank")
            if self._fptr is None:
                self._fptr = torch.searchsorted(self.frow, torch.arange(n + 1)).contiguous()
            nan = torch.empty(n, dtype=torch.int64)
            fn(block.numpy(), self.st.contiguous().numpy(), self.target.contiguous().numpy(), self._fptr.numpy(),
               self.fidx.contiguous().numpy(), int(col0), self.gt.numpy(), self.ge.numpy(), nan.numpy())
            _check_nan(nan)
            return
        gt, ge = count_block(block, self.st)
        self.gt += gt.to(self.gt.device)
        self.ge += ge.to(self.ge.device)
        # the target is never counted against itself
        rows = ((self.target >= col0) & (self.target < col1)).nonzero(as_tuple=True)[0]
        if rows.numel():
            v = block[rows, self.target[rows] - col0]
            self.gt[rows] -= (v > self.st[rows]).to(torch.int64)
            self.ge[rows] -= (v >= self.st[rows]).to(torch.int64)
        # filtered entries are not counted either
        if self.frow.numel():
            sel = (self.fidx >= col0) & (self.fidx < col1)
            r = self.frow[sel]
            if r.numel():
                v = block[r, self.fidx[sel] - col0]
                s = self.st[r]
                self.gt -= torch.bincount(r[v > s], minlength=n)
                self.ge -= torch.bincount(r[v >= s], minlength=n)

    def ranks(self) -> Ranks:
        return Ranks(self.gt + 1, self.ge + 1)


def _slice_csr(indptr: torch.Tensor, indices: torch.Tensor, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = int(indptr[a]), int(indptr[b])
    return indptr[a : b + 1] - lo, indices[lo:hi]


# ---- from dense score blocks ------------------------------------------------------------
def filtered_ranks_from_scores(
    scores: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    *,
    entity_chunk: int | None = None,
    chunk_bytes: int | None = None,
) -> Ranks:
    """Ranks from a score matrix ``(B, E)`` (any float dtype; compared as given).

    ``entity_chunk`` bounds the comparison temporaries to ``B x entity_chunk``; without it,
    ``chunk_bytes`` does (``entity_chunk = chunk_bytes / (12 B)``); with neither, whole rows.
    """
    if scores.dim() != 2:
        raise KGCError(f"scores must be (B, E), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise KGCError(f"scores must be floating point, got {scores.dtype}")
    b, e = scores.shape
    target = target.to(device=scores.device, dtype=torch.int64)
    _check_target(target, b, e)
    _check_csr(filter_indptr, filter_indices, b, e)
    frow, fidx = _filter_entries(target, filter_indptr, filter_indices, e)
    st = scores.gather(1, target.unsqueeze(1)).squeeze(1)
    counter = _Counter(target, st, frow, fidx)
    if not entity_chunk and chunk_bytes:
        entity_chunk = max(1, chunk_bytes // (_BYTES_PER_SCORE * max(b, 1)))
    step = e if not entity_chunk else max(1, int(entity_chunk))
    for c0 in range(0, e, step):
        counter.add(scores[:, c0 : c0 + step], c0)
    return counter.ranks()


# ---- from query vectors (the model's head) ------------------------------------------------
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


def _kernel_filtered_rank():
    try:
        import kernels  # noqa: PLC0415  (lazy: Triton import is slow)

        return getattr(kernels, "filtered_rank", None)
    except ImportError:
        return None


def filtered_ranks_from_vectors(
    queries: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    query_chunk: int | None = None,
    entity_chunk: int | None = None,
    use_kernel: bool | str = "auto",
) -> Ranks:
    """Ranks for scores ``queries @ weight.T + bias`` without materialising more than one block.

    ``use_kernel``: ``True`` calls ``kernels.filtered_rank`` (error if missing), ``False``
    never does, ``"auto"`` calls it for CUDA tensors when it is importable. The chunked
    path computes in float32 (float64 if ``weight`` is float64). When one query row of
    scores exceeds the block budget (or ``entity_chunk`` is set) the entity columns are
    chunked, which takes two passes: the target score is read from the very block that
    scores every other entity, so ties are exact.
    """
    if queries.dim() != 2 or weight.dim() != 2 or queries.shape[1] != weight.shape[1]:
        raise KGCError(
            f"query vectors (Q, D) and entity weight (E, D) must agree, got {tuple(queries.shape)} "
            f"and {tuple(weight.shape)}"
        )
    q, e = queries.shape[0], weight.shape[0]
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != e):
        raise KGCError(f"entity bias must have shape ({e},), got {tuple(bias.shape)}")
    device = weight.device
    target = target.to(device=device, dtype=torch.int64)
    _check_target(target, q, e)
    _check_csr(filter_indptr, filter_indices, q, e)

    if use_kernel not in (True, False, "auto"):
        raise KGCError(f"use_kernel must be True, False or 'auto', got {use_kernel!r}")
    if use_kernel is True or (use_kernel == "auto" and device.type == "cuda"):
        fn = _kernel_filtered_rank()
        if fn is not None:
            kd = torch.float64 if weight.dtype == torch.float64 else torch.float32  # same dtype as our path
            opt, pes = fn(
                queries.to(device=device, dtype=kd), weight.to(kd), target,
                filter_indptr.to(device), filter_indices.to(device), None if bias is None else bias.to(kd),
                chunk_bytes=chunk_bytes,
            )
            return Ranks(opt.to(torch.int64), pes.to(torch.int64))
        if use_kernel is True:
            raise KGCError("use_kernel=True but kernels.filtered_rank is not available")

    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.to(dtype)
    bb = None if bias is None else bias.to(dtype)
    qv = queries.to(device=device, dtype=dtype)
    qc, ec = _chunk_sizes(q, e, chunk_bytes, query_chunk, entity_chunk)
    frow_all, fidx_all = _filter_entries(target, filter_indptr, filter_indices, e)
    # per-row offsets of the deduplicated filter entries (sorted by row)
    fptr = torch.searchsorted(frow_all, torch.arange(q + 1, device=device))

    def block(qs: torch.Tensor, c0: int) -> torch.Tensor:
        out = qs @ w[c0 : c0 + ec].T
        if bb is not None:
            out = out + bb[c0 : c0 + ec]
        return out

    parts = []
    for a in range(0, q, qc):
        b = min(q, a + qc)
        qs, tg = qv[a:b], target[a:b]
        lo, hi = int(fptr[a]), int(fptr[b])
        frow, fidx = frow_all[lo:hi] - a, fidx_all[lo:hi]
        if ec >= e:
            scores = block(qs, 0)
            st = scores.gather(1, tg.unsqueeze(1)).squeeze(1)
            counter = _Counter(tg, st, frow, fidx)
            counter.add(scores, 0)
        else:
            st = torch.empty(b - a, dtype=dtype, device=device)
            for c0 in range(0, e, ec):  # pass 1: target scores from the same blocks
                rows = ((tg >= c0) & (tg < c0 + ec)).nonzero(as_tuple=True)[0]
                if rows.numel():
                    st[rows] = block(qs, c0)[rows, tg[rows] - c0]
            counter = _Counter(tg, st, frow, fidx)
            for c0 in range(0, e, ec):  # pass 2: counts
                counter.add(block(qs, c0), c0)
        parts.append(counter.ranks())
    return Ranks.cat(parts)


def rank_output(model, out, target: torch.Tensor, filter_indptr: torch.Tensor, filter_indices: torch.Tensor,
                *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, use_kernel: bool | str = "auto") -> Ranks:
    """Filtered ranks of a model's link-prediction output (``KGCModel.lp_forward``): from the query
    vectors without materialising the scores when there is no context pointer, else from the
    model's (B, E) scores (``lp_output_scores``). The counting (and its tie and NaN rules) is one."""
    device = out.query.device
    filter_indptr, filter_indices = filter_indptr.to(device), filter_indices.to(device)
    if out.item_entity is None:
        bias = model.entity_bias()
        return filtered_ranks_from_vectors(
            out.query.float(), model.entity_weight().float(), target, filter_indptr, filter_indices,
            bias=None if bias is None else bias.float(), chunk_bytes=chunk_bytes, use_kernel=use_kernel,
        )
    scores = model.lp_output_scores(out).float()
    return filtered_ranks_from_scores(scores, target.to(device), filter_indptr, filter_indices, chunk_bytes=chunk_bytes)
