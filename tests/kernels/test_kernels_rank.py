"""kernels.filtered_rank: Triton (interpreter on CPU) and chunked paths (numba and torch block
counters) vs the dense reference; the chunked path's block counter and block sizes; the NaN rule."""

from __future__ import annotations

import sys

import pytest
import torch

import kernels
from kernels._memory import peak_cpu_bytes
from kernels.filtered_rank import (
    DEFAULT_CACHE_ELEMS,
    MIN_QUERY_CHUNK,
    NaNScoreError,
    _chunk_sizes,
    _force_counter,
    count_block,
)
from kgc import KGCError

Q, D, E = 21, 20, 37  # not multiples of the interpreter's 16-wide blocks
IMPLS = ["chunked", "triton"]


def _csr(lists):
    indptr = torch.tensor([0] + [len(x) for x in lists]).cumsum(0)
    indices = torch.tensor([i for x in lists for i in x], dtype=torch.long)
    return indptr, indices


def _random_filters(q, e, target, seed=0, max_len=12):
    g = torch.Generator().manual_seed(seed)
    lists = []
    for i in range(q):
        n = int(torch.randint(0, max_len, (1,), generator=g))
        lst = torch.randint(0, e, (n,), generator=g).tolist()
        if i % 3 == 0:
            lst.append(int(target[i]))  # the target inside its own filter: never filtered
        if i % 4 == 0 and lst:
            lst += lst[:2]  # duplicates count once
        lists.append(lst)
    lists[1] = []  # empty filter
    lists[2] = [x for x in range(e) if x != int(target[2])][: e - 3]  # large filter: almost everything
    return _csr(lists)


def _check(q, w, t, indptr, indices, b=None, impls=IMPLS, chunk_bytes=4096):
    ref = kernels.filtered_rank_ref(q, w, t, indptr, indices, b)
    for impl in impls:
        counters = ("numba", "torch") if impl == "chunked" else ("auto",)
        for counter in counters:
            with _force_counter(counter):
                got = kernels.filtered_rank(q, w, t, indptr, indices, b, impl=impl, chunk_bytes=chunk_bytes)
            assert got[0].dtype == torch.int64
            torch.testing.assert_close(got[0], ref[0], msg=f"{impl}/{counter} optimistic")
            torch.testing.assert_close(got[1], ref[1], msg=f"{impl}/{counter} pessimistic")
    return ref


@pytest.mark.parametrize("bias", [False, True])
def test_random_scores_match_reference(bias):
    g = torch.Generator().manual_seed(3)
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    b = torch.randn(E, generator=g) if bias else None
    t = torch.randint(0, E, (Q,), generator=g)
    indptr, indices = _random_filters(Q, E, t)
    opt, pess = _check(q, w, t, indptr, indices, b)
    assert bool((opt >= 1).all()) and bool((pess <= E).all())
    assert int(opt[2]) <= 3 and int(pess[2]) <= 3  # almost everything filtered


def test_ties_from_integer_and_duplicated_embeddings():
    g = torch.Generator().manual_seed(4)
    q = torch.randint(-2, 3, (Q, D), generator=g).float()
    w = torch.randint(-1, 2, (E, D), generator=g).float()
    w[20:30] = w[3]  # duplicated rows: exact ties with entity 3
    w[31] = 0.0
    t = torch.randint(0, E, (Q,), generator=g)
    t[:4] = 3
    q[5] = 0.0  # every score ties
    indptr, indices = _random_filters(Q, E, t, seed=1)
    opt, pess = _check(q, w, t, indptr, indices)
    assert bool((pess > opt).any())  # ties actually occur
    mask = torch.zeros(E, dtype=torch.bool)
    mask[indices[indptr[5]:indptr[6]]] = True
    mask[t[5]] = False
    assert int(opt[5]) == 1 and int(pess[5]) == E - int(mask.sum())


def test_non_integer_duplicate_rows_tie_exactly():
    g = torch.Generator().manual_seed(5)
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    t = torch.randint(0, E, (Q,), generator=g)
    w[t[:6]] = w[36].clone()  # several targets share their row with entity 36
    t[6] = 36
    empty = torch.zeros(Q + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    opt, pess = _check(q, w, t, *empty)
    n_same = int((w == w[36]).all(1).sum())
    assert n_same > 1 and bool((pess[:7] == opt[:7] + n_same - 1).all())


def _nan_data():
    g = torch.Generator().manual_seed(6)
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    t = torch.randint(0, E, (Q,), generator=g)
    t[t == 7] = 8
    return q, w, t


@pytest.mark.parametrize("impl, counter", [("chunked", "numba"), ("chunked", "torch"), ("triton", "auto"),
                                           ("ref", "auto")])
def test_nan_candidate_raises_naming_the_query_unless_filtered(impl, counter):
    """One NaN rule on every path: entity 7 scores NaN for every query; queries that filter it rank
    as if it were absent, the first query that does not is named in the error."""
    q, w, t = _nan_data()
    w[7, 0] = float("nan")
    lists = [[7, 1, 2], [7], [7, 3, 3]] + [[7] for _ in range(Q - 3)]
    indptr, indices = _csr(lists)
    with _force_counter(counter):
        got = kernels.filtered_rank(q, w, t, indptr, indices, impl=impl, chunk_bytes=4096)
    keep = torch.ones(E, dtype=torch.bool)
    keep[7] = False  # same ranks as without entity 7 (filtered everywhere)
    filt = [[x if x < 7 else x - 1 for x in set(lst) - {7}] for lst in lists]
    want = kernels.filtered_rank_ref(q, w[keep], t - (t > 7).long(), *_csr(filt))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    lists[4], lists[9] = [1], []  # queries 4 and 9 now compare against entity 7
    with _force_counter(counter), pytest.raises(NaNScoreError, match="NaN score for query 4") as err:
        kernels.filtered_rank(q, w, t, *_csr(lists), impl=impl, chunk_bytes=4096)
    # the first offending query is named; the chunked path stops at the block it is in
    assert err.value.queries == ([4, 9] if impl != "chunked" else [4]) and isinstance(err.value, KGCError)


@pytest.mark.parametrize("impl", IMPLS + ["ref"])
def test_nan_target_raises_even_when_filtered(impl):
    """The target is never filtered: a NaN target score raises though the target is in its own filter."""
    q, w, t = _nan_data()
    w[7, 0] = float("nan")
    t[5] = 7
    lists = [[7] for _ in range(Q)]
    with pytest.raises(NaNScoreError, match="NaN score for query 5") as err:
        kernels.filtered_rank(q, w, t, *_csr(lists), impl=impl, chunk_bytes=4096)
    assert err.value.queries == [5]
    # relabel names the query by a caller's ids (e.g. a batch's query index)
    assert err.value.relabel(torch.arange(Q) + 100).queries == [105]


@pytest.mark.parametrize("impl", ["chunked", "ref"])
@pytest.mark.parametrize("counter", ["numba", "torch"])
def test_scores_entry_same_nan_rule_and_ranks(impl, counter):
    g = torch.Generator().manual_seed(11)
    scores = torch.randint(-2, 3, (Q, E), generator=g).float()
    t = torch.randint(0, E, (Q,), generator=g)
    indptr, indices = _random_filters(Q, E, t, seed=4)
    ref = kernels.filtered_rank_ref(torch.eye(Q), scores.T.contiguous(), t, indptr, indices)
    with _force_counter(counter):
        for ec in (None, 1, 5):
            got = kernels.filtered_rank_from_scores(scores, t, indptr, indices, impl=impl, entity_chunk=ec)
            assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        bad = scores.clone()
        bad[2, int(indices[indptr[2]])] = float("nan")  # a filtered column (row 2 filters all but 3): ignored
        assert torch.equal(kernels.filtered_rank_from_scores(bad, t, indptr, indices, impl=impl)[0], ref[0])
        bad[6, [c for c in range(E) if c != int(t[6]) and c not in indices[indptr[6]:indptr[7]].tolist()][0]] = \
            float("nan")
        with pytest.raises(NaNScoreError, match="NaN score for query 6"):
            kernels.filtered_rank_from_scores(bad, t, indptr, indices, impl=impl, entity_chunk=2)


def test_chunked_many_chunks_and_float64():
    g = torch.Generator().manual_seed(7)
    q, w = torch.randn(150, 6, generator=g, dtype=torch.float64), torch.randn(333, 6, generator=g, dtype=torch.float64)
    b = torch.randn(333, generator=g, dtype=torch.float64)
    t = torch.randint(0, 333, (150,), generator=g)
    indptr, indices = _random_filters(150, 333, t, seed=3, max_len=40)
    _check(q, w, t, indptr, indices, b, impls=["chunked"], chunk_bytes=4096)


def test_chunked_peak_memory_under_setting():
    g = torch.Generator().manual_seed(8)
    q_n, e, d, limit = 64, 4000, 8, 64 * 1024
    q, w = torch.randn(q_n, d, generator=g), torch.randn(e, d, generator=g)
    t = torch.randint(0, e, (q_n,), generator=g)
    indptr, indices = _csr([torch.randint(0, e, (10,), generator=g).tolist() for _ in range(q_n)])
    io_bytes = 8 * 12 * (q_n + indices.numel())  # int64 per-query vectors, filter cleaning (keys, sort, CSR)
    (ref_o, ref_p), naive = peak_cpu_bytes(lambda: kernels.filtered_rank_ref(q, w, t, indptr, indices))
    (o, p), chunked = peak_cpu_bytes(lambda: kernels.filtered_rank(q, w, t, indptr, indices, impl="chunked", chunk_bytes=limit))
    assert torch.equal(o, ref_o) and torch.equal(p, ref_p)
    assert naive > 4 * q_n * e
    assert chunked - io_bytes <= limit, (chunked, io_bytes, limit)


def test_validation_errors():
    q, w = torch.randn(3, 4), torch.randn(5, 4)
    t = torch.tensor([0, 1, 2])
    ok = torch.tensor([0, 1, 1, 2]), torch.tensor([4, 3])
    with pytest.raises(KGCError, match="target"):
        kernels.filtered_rank(q, w, torch.tensor([0, 1, 5]), *ok)
    with pytest.raises(KGCError, match="filter_indices"):
        kernels.filtered_rank(q, w, t, ok[0], torch.tensor([4, 9]))
    with pytest.raises(KGCError, match="filter_indptr"):
        kernels.filtered_rank(q, w, t, torch.tensor([0, 2, 1, 2]), ok[1])
    with pytest.raises(KGCError):
        kernels.filtered_rank(q, w[:, :2], t, *ok)
    o, p = kernels.filtered_rank(q[:0], w, t[:0], torch.zeros(1, dtype=torch.long), ok[1][:0])
    assert o.shape == (0,) and p.shape == (0,)


# --------------------------------------------------------------------------- the chunked path's block counter
# (moved from tests/evaluation/test_eval_ranks_metrics.py with the counter itself)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_block_count_equals_torch_reference(dtype):
    g = torch.Generator().manual_seed(3)
    block = torch.randint(-3, 4, (37, 101), generator=g).to(dtype)  # many ties
    block[0, :5] = float("inf")
    block[1, 7:9] = float("-inf")
    st = block[torch.arange(37), torch.randint(0, 101, (37,), generator=g)].clone()
    st[2] = float("inf")
    st[3] = float("-inf")
    views = [block, block[:, 3:60], block[::2], block.T.contiguous().T]  # contiguous and strided
    for view in views:
        s = st[: view.shape[0]]
        gt, ge = count_block(view, s, counter="numba")
        ref_gt = (view > s[:, None]).sum(1)
        ref_ge = (view >= s[:, None]).sum(1)
        assert torch.equal(gt, ref_gt) and torch.equal(ge, ref_ge)
        assert (ref_ge > ref_gt).sum() > view.shape[0] // 2  # ties are plentiful


@pytest.mark.parametrize("counter", ["numba", "torch"])
def test_block_count_rejects_nan(counter):
    block = torch.zeros(4, 9)
    block[2, 5] = float("nan")
    with pytest.raises(NaNScoreError, match="NaN score for query 2"):
        count_block(block, torch.zeros(4), counter=counter)
    with pytest.raises(NaNScoreError, match="NaN score for query 1"):  # a NaN target score too
        count_block(torch.zeros(4, 9), torch.tensor([0.0, float("nan"), 0.0, 0.0]), counter=counter)


def test_block_count_dispatch():
    half = torch.zeros(2, 3, dtype=torch.float16)
    gt, ge = count_block(half, torch.zeros(2, dtype=torch.float16))  # auto: torch for half
    assert gt.tolist() == [0, 0] and ge.tolist() == [3, 3]
    with pytest.raises(KGCError, match="numba"):
        count_block(half, torch.zeros(2, dtype=torch.float16), counter="numba")
    with pytest.raises(KGCError, match="unknown rank count"):
        count_block(half, torch.zeros(2, dtype=torch.float16), counter="cuda")
    with pytest.raises(KGCError, match="unknown rank count"):
        with _force_counter("cuda"):
            pass


def test_vector_blocks_are_cache_sized_within_the_memory_bound():
    cache = DEFAULT_CACHE_ELEMS
    assert _chunk_sizes(10_000, 40_943, 256 * 2**20, None, None) == (cache // 40_943, 40_943)
    assert _chunk_sizes(10_000, 14_541, 256 * 2**20, None, None) == (cache // 14_541, 14_541)
    # a million entities: the floor of MIN_QUERY_CHUNK queries keeps the matmul efficient
    assert _chunk_sizes(10_000, 10**6, 2**31, None, None)[0] == MIN_QUERY_CHUNK
    # the memory bound always wins over that floor
    qc, ec = _chunk_sizes(10_000, 40_943, 12 * 40_943 * 10, None, None)
    assert (qc, ec) == (10, 40_943)
    # cache sizing off: the whole memory budget
    assert _chunk_sizes(10_000, 40_943, 256 * 2**20, None, None, cache_elems=0)[0] == \
        (256 * 2**20 // 12) // 40_943


def test_one_implementation_switch(monkeypatch):
    """``impl=`` / ``use_impl`` / ``KGC_KERNEL_IMPL`` choose the rank implementation, and the
    evaluation wrappers follow it: an unknown choice fails, ``ref`` runs the dense reference."""
    from kgc.evaluation.ranks import filtered_ranks_from_vectors, impl_for

    g = torch.Generator().manual_seed(12)
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    t = torch.randint(0, E, (Q,), generator=g)
    indptr, indices = _random_filters(Q, E, t)
    calls = []
    mod = sys.modules["kernels.filtered_rank"]  # the submodule (``kernels.filtered_rank`` is the op)
    real = mod._ranks_dense
    monkeypatch.setattr(mod, "_ranks_dense", lambda *a: calls.append(1) or real(*a))
    with kernels.use_impl("ref"):
        r = filtered_ranks_from_vectors(q, w, t, indptr, indices)
    assert calls == [1]
    want = kernels.filtered_rank(q, w, t, indptr, indices, impl="chunked")
    assert torch.equal(r.optimistic, want[0]) and torch.equal(r.pessimistic, want[1])
    monkeypatch.setenv("KGC_KERNEL_IMPL", "ref")
    kernels.filtered_rank(q, w, t, indptr, indices)
    assert calls == [1, 1]
    monkeypatch.setenv("KGC_KERNEL_IMPL", "fast")
    with pytest.raises(KGCError, match="KGC_KERNEL_IMPL"):
        kernels.filtered_rank(q, w, t, indptr, indices)
    assert (impl_for(True), impl_for(False), impl_for("auto")) == ("triton", "chunked", None)
    with pytest.raises(KGCError, match="use_kernel"):
        impl_for("yes")


# --------------------------------------------------------------------------- CUDA (skipped here)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_matches_reference(dtype):
    g = torch.Generator().manual_seed(9)
    q_n, e, d = 700, 14541, 256
    q, w = torch.randn(q_n, d, generator=g), torch.randn(e, d, generator=g)
    b = torch.randn(e, generator=g)
    t = torch.randint(0, e, (q_n,), generator=g)
    indptr, indices = _random_filters(q_n, e, t, seed=5, max_len=300)
    dev = [x.cuda() for x in (t, indptr, indices)]
    qd, wd, bd = (x.to("cuda", dtype) for x in (q, w, b))
    # reference on the upcast inputs: kernels accumulate low-precision products in fp32
    ref = kernels.filtered_rank_ref(qd.double(), wd.double(), dev[0], dev[1], dev[2], bd.double())
    got = kernels.filtered_rank(qd, wd, dev[0], dev[1], dev[2], bd, impl="triton")
    for a, r in zip(got, ref):
        diff = (a - r).abs()
        assert float((diff == 0).float().mean()) >= 0.99
        assert int(diff.max()) <= 3
    chunked = kernels.filtered_rank(qd, wd, dev[0], dev[1], dev[2], bd, impl="chunked")
    for a, c in zip(got, chunked):
        assert int((a - c).abs().max()) <= 3
