"""kernels.filtered_rank: Triton (interpreter on CPU) and chunked paths vs the dense reference."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels._memory import peak_cpu_bytes
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
        got = kernels.filtered_rank(q, w, t, indptr, indices, b, impl=impl, chunk_bytes=chunk_bytes)
        assert got[0].dtype == torch.int64
        torch.testing.assert_close(got[0], ref[0], msg=f"{impl} optimistic")
        torch.testing.assert_close(got[1], ref[1], msg=f"{impl} pessimistic")
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


def test_nan_scores():
    g = torch.Generator().manual_seed(6)
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    t = torch.randint(0, E, (Q,), generator=g)
    w[7, 0] = float("nan")  # entity 7 scores NaN for every query: never counted
    t[:3] = 7  # ... and is the target of queries 0-2: they rank last among candidates
    indptr, indices = _random_filters(Q, E, t, seed=2)
    opt, pess = _check(q, w, t, indptr, indices)
    n_filt = torch.tensor([len(set(indices[indptr[i]:indptr[i + 1]].tolist()) - {7}) for i in range(3)])
    assert opt[:3].tolist() == (E - n_filt).tolist() == pess[:3].tolist()


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
