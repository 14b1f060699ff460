"""Edge cases of the fast paths: infinite scores and all-NaN rows in ``filtered_rank``, cross-entropy batches
whose targets are all ignored, and duplicated multi-label targets. Every fast path is checked
against its dense reference and against a count or loss written out here."""

from __future__ import annotations

import pytest
import torch

import kernels

IMPLS = ["chunked", "triton"]


def _csr(lists):
    indptr = torch.tensor([0] + [len(x) for x in lists]).cumsum(0)
    return indptr, torch.tensor([i for x in lists for i in x], dtype=torch.long)


def _brute_ranks(scores, target, lists):
    """(optimistic, pessimistic) by counting (finite and infinite scores; NaN raises in the op)."""
    opt, pes = [], []
    for i, row in enumerate(scores.tolist()):
        t = int(target[i])
        filt = set(lists[i]) - {t}
        cand = [s for e, s in enumerate(row) if e != t and e not in filt]
        st = row[t]
        opt.append(1 + sum(1 for s in cand if s > st))
        pes.append(1 + sum(1 for s in cand if s >= st))
    return torch.tensor(opt), torch.tensor(pes)


@pytest.mark.parametrize("impl", IMPLS)
def test_filtered_rank_with_infinite_scores(impl):
    """+inf and -inf scores (through the bias) tie with each other exactly and order against finite
    ones; targets at +inf, -inf and finite scores, filtered infinities never counted."""
    g = torch.Generator().manual_seed(0)
    Q, D, E = 9, 8, 23
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    b = torch.zeros(E)
    b[[1, 4, 9]] = float("inf")
    b[[2, 7, 15, 16]] = float("-inf")
    t = torch.tensor([1, 2, 3, 4, 7, 9, 11, 15, 0])
    lists = [[4], [7, 2], [1, 9], [], [15, 16], [1, 4, 9], [2], [7], [1, 4, 9, 2, 7, 15, 16]]
    indptr, indices = _csr(lists)
    ref = kernels.filtered_rank_ref(q, w, t, indptr, indices, b)
    got = kernels.filtered_rank(q, w, t, indptr, indices, b, impl=impl, chunk_bytes=4096)
    want = _brute_ranks(q @ w.T + b, t, lists)
    for a, r, x in zip(got, ref, want):
        assert torch.equal(a, r) and torch.equal(a, x)
    # query 0 targets +inf with one of the other two +inf entities filtered: optimistic 1, pessimistic 2
    assert (got[0][0].item(), got[1][0].item()) == (1, 2)
    # query 1 targets -inf: every finite or +inf candidate is above, the unfiltered -inf ones tie
    assert got[1][1].item() == E - 1


@pytest.mark.parametrize("impl", IMPLS + ["ref"])
def test_filtered_rank_all_nan_query_rows(impl):
    """A query vector that is all NaN scores NaN everywhere: the op raises naming the first such
    query and counting all of them (one NaN rule on every path; no rank is made up for it)."""
    g = torch.Generator().manual_seed(1)
    Q, D, E = 6, 8, 19
    q, w = torch.randn(Q, D, generator=g), torch.randn(E, D, generator=g)
    t = torch.randint(0, E, (Q,), generator=g)
    lists = [[1, 2, 2], [], [3], [int(t[3]), 5, 6], [7], [8, 9]]
    indptr, indices = _csr(lists)
    ok = kernels.filtered_rank(q, w, t, indptr, indices, impl=impl, chunk_bytes=4096)
    want = _brute_ranks(q @ w.T, t, lists)
    assert torch.equal(ok[0], want[0]) and torch.equal(ok[1], want[1])
    q[[0, 3]] = float("nan")
    with pytest.raises(kernels.NaNScoreError, match="NaN score for query 0") as err:
        kernels.filtered_rank(q, w, t, indptr, indices, impl=impl, chunk_bytes=4096)
    assert err.value.queries == [0, 3] and err.value.count == 2


def _lce_data(impl, B=7, D=6, E=11, seed=0):
    """float64 inputs, float32 for the Triton kernels (which take no float64); the tolerance to use."""
    dtype = torch.float32 if impl == "triton" else torch.float64
    g = torch.Generator().manual_seed(seed)
    h, w, b = (torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
               for shape in ((B, D), (E, D), (E,)))
    return h, w, b, (dict(rtol=1e-5, atol=1e-6) if impl == "triton" else dict(rtol=1e-10, atol=1e-12))


@pytest.mark.parametrize("impl", ["chunked", "triton", "ref"])
def test_cross_entropy_batch_with_every_target_ignored(impl):
    """All rows ignored: "sum" is 0 with zero gradients, "none" is all zeros, "mean" follows
    ``F.cross_entropy`` (0 / 0 = NaN) - single-label and CSR multi-label alike."""
    h, w, b, _ = _lce_data(impl)
    B, E = h.shape[0], w.shape[0]
    single = dict(target=torch.full((B,), -100))
    multi = dict(target=None, target_indptr=torch.zeros(B + 1, dtype=torch.long),
                 target_indices=torch.zeros(0, dtype=torch.long))
    torch_mean = torch.nn.functional.cross_entropy(h.detach() @ w.detach().T + b.detach(), single["target"])
    assert torch.isnan(torch_mean)
    for targets in (single, multi):
        s = kernels.linear_cross_entropy(h, w, bias=b, reduction="sum", label_smoothing=0.1, impl=impl, **targets)
        assert s.item() == 0.0
        for grad in torch.autograd.grad(s, (h, w, b)):
            assert torch.equal(grad, torch.zeros_like(grad))
        none = kernels.linear_cross_entropy(h, w, bias=b, reduction="none", impl=impl, **targets)
        assert torch.equal(none.detach(), torch.zeros(B, dtype=h.dtype))
        mean = kernels.linear_cross_entropy(h, w, bias=b, reduction="mean", impl=impl, **targets)
        assert torch.isnan(mean)
    assert E == 11


@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_duplicate_multi_label_targets_weigh_as_a_multiset(impl):
    """A CSR row listing an entity twice gives it twice the target mass (p uniform over the listed
    multiset): equal to the reference and to soft-target ``F.cross_entropy`` with those weights."""
    h, w, b, tol = _lce_data(impl, seed=2)
    B, E = h.shape[0], w.shape[0]
    lists = [[3, 3, 5], [0], [1, 1], [2, 4, 4, 4], [6, 7], [8, 8, 9], [10, 0, 10]]
    indptr, indices = _csr(lists)
    probs = torch.zeros(B, E, dtype=h.dtype)
    for i, lst in enumerate(lists):
        for e in lst:
            probs[i, e] += 1 / len(lst)
    eps = 0.1
    logits = h @ w.T + b
    want = torch.nn.functional.cross_entropy(logits, probs, label_smoothing=eps)
    kw = dict(target=None, target_indptr=indptr, target_indices=indices, label_smoothing=eps)
    got = kernels.linear_cross_entropy(h, w, bias=b, impl=impl, **kw)
    ref = kernels.linear_cross_entropy_ref(h, w, bias=b, **kw)
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(ref, want, **tol)
    g_got = torch.autograd.grad(got, (h, w, b), retain_graph=True)
    g_want = torch.autograd.grad(want, (h, w, b))
    for a, x in zip(g_got, g_want):
        torch.testing.assert_close(a, x, **tol)
