import math

import pytest
import torch

from kgc import KGCError
from kgc.evaluation import (
    FilterIndex,
    LinkPredictionQueries,
    Ranks,
    breakdown,
    filtered_ranks_from_scores,
    filtered_ranks_from_vectors,
    policy_metrics,
    rank_metrics,
)
from kgc.evaluation.filter import empty_filter
from kernels.filtered_rank import _force_counter

from eval_helpers import brute_ranks, make_dataset, random_dataset


def _setup(seed, binary, num_levels=3):
    """Queries of a random dataset's test split, their CSR filter, and tie-heavy integer scores."""
    ds = random_dataset(seed, n_facts=80, num_entities=8 if binary else 4, binary=binary)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    index = FilterIndex.from_dataset(ds)
    indptr, indices = index.lookup(q)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, num_levels, (len(q), ds.num_entities), generator=g).to(torch.float32)
    filters = [set(x.tolist()) for x in index.answers(q)]
    return ds, q, indptr, indices, scores, filters


@pytest.fixture(params=["numba", "torch"])
def count_impl(request):
    """Run a test with the fused numba block counter and with the torch reference."""
    with _force_counter(request.param):
        yield request.param


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_ranks_equal_brute_force_with_ties(seed, binary, count_impl):
    ds, q, indptr, indices, scores, filters = _setup(seed, binary)
    opt_ref, pes_ref = brute_ranks(scores, q.target, filters)
    assert (pes_ref > opt_ref).any()  # the data really has ties
    for ec in (None, 1, 2, 3, 5):
        r = filtered_ranks_from_scores(scores, q.target, indptr, indices, entity_chunk=ec)
        assert torch.equal(r.optimistic, opt_ref) and torch.equal(r.pessimistic, pes_ref)
        for policy in ("optimistic", "pessimistic", "realistic"):
            ref = {"optimistic": opt_ref.double(), "pessimistic": pes_ref.double(),
                   "realistic": (opt_ref + pes_ref).double() / 2}[policy]
            assert torch.equal(r.get(policy), ref)


@pytest.mark.parametrize("binary", [True, False])
def test_vector_ranks_equal_brute_force_for_every_chunking(binary, count_impl):
    ds, q, indptr, indices, _, filters = _setup(5, binary)
    g = torch.Generator().manual_seed(7)
    e, d = ds.num_entities, 3
    # small integers: every dot product is exact in float32, and ties are plentiful
    qv = torch.randint(-1, 2, (len(q), d), generator=g).float()
    w = torch.randint(-1, 2, (e, d), generator=g).float()
    bias = torch.randint(0, 2, (e,), generator=g).float()
    for b in (None, bias):
        dense = qv.double() @ w.double().T + (0 if b is None else b.double())
        opt_ref, pes_ref = brute_ranks(dense, q.target, filters)
        assert (pes_ref > opt_ref).any()
        for kw in ({}, {"query_chunk": 1}, {"query_chunk": 4, "entity_chunk": 1}, {"entity_chunk": 3},
                   {"chunk_bytes": 12 * e}, {"chunk_bytes": 1}):
            r = filtered_ranks_from_vectors(qv, w, q.target, indptr, indices, b, use_kernel=False, **kw)
            assert torch.equal(r.optimistic, opt_ref), kw
            assert torch.equal(r.pessimistic, pes_ref), kw


def test_vector_ranks_match_kernel_when_available():
    ds, q, indptr, indices, _, filters = _setup(6, False)
    g = torch.Generator().manual_seed(1)
    qv = torch.randint(-2, 3, (len(q), 8), generator=g).float()
    w = torch.randint(-2, 3, (ds.num_entities, 8), generator=g).float()
    ours = filtered_ranks_from_vectors(qv, w, q.target, indptr, indices, use_kernel=False)
    theirs = filtered_ranks_from_vectors(qv, w, q.target, indptr, indices, use_kernel=True)
    assert torch.equal(ours.optimistic, theirs.optimistic) and torch.equal(ours.pessimistic, theirs.pessimistic)


def test_filter_never_removes_target_and_valid_answers_filter_test():
    # entities 0..4; (0, r0, 1) in train, (0, r0, 2) in valid, test (0, r0, 3) and the train fact again
    ds = make_dataset({"train": torch.tensor([[0, 0, 1]]), "valid": torch.tensor([[0, 0, 2]]),
                       "test": torch.tensor([[0, 0, 3], [0, 0, 1]])}, 5, 1)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    tail = q.direction == 0
    qt = q[tail]
    indptr, indices = FilterIndex.from_dataset(ds).lookup(qt)
    assert indices[indptr[0]:indptr[1]].tolist() == [1, 2, 3]
    #                 e0   e1   e2   e3   e4
    scores = torch.tensor([[0.0, 9.0, 8.0, 5.0, 1.0],
                           [0.0, 5.0, 8.0, 9.0, 5.0]])
    r = filtered_ranks_from_scores(scores, qt.target, indptr, indices)
    # query 0 (target 3): e1 (train) and e2 (valid) are filtered -> rank 1; raw rank would be 3
    assert r.optimistic[0] == 1 and r.pessimistic[0] == 1
    raw = filtered_ranks_from_scores(scores, qt.target, *empty_filter(2))
    assert raw.optimistic[0] == 3
    # query 1 (target 1, itself in the filter from train): only e4 ties, e2/e3 filtered
    assert r.optimistic[1] == 1 and r.pessimistic[1] == 2


def test_all_equal_scores_rank_worst_pessimistically():
    scores = torch.zeros(1, 10)
    r = filtered_ranks_from_scores(scores, torch.tensor([4]), torch.tensor([0, 2]), torch.tensor([1, 4]))
    assert r.optimistic.tolist() == [1] and r.pessimistic.tolist() == [9]  # 10 - 1 filtered
    assert r.realistic.tolist() == [5.0]


def test_duplicate_filter_entries_count_once():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    r = filtered_ranks_from_scores(scores, torch.tensor([3]), torch.tensor([0, 4]), torch.tensor([0, 0, 0, 3]))
    assert r.optimistic.tolist() == [3]


@pytest.mark.parametrize("call, msg", [
    (lambda: filtered_ranks_from_scores(torch.tensor([[0.0, float("nan")]]), torch.tensor([0]),
                                        *empty_filter(1)), "NaN score for query 0"),
    (lambda: filtered_ranks_from_scores(torch.zeros(1, 3), torch.tensor([3]), *empty_filter(1)), "target"),
    (lambda: filtered_ranks_from_scores(torch.zeros(2, 3), torch.tensor([0, 1]), *empty_filter(1)), "indptr"),
    (lambda: filtered_ranks_from_scores(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([0, 1]),
                                        torch.tensor([7])), "indices"),
    (lambda: filtered_ranks_from_vectors(torch.zeros(1, 2), torch.zeros(3, 4), torch.tensor([0]),
                                         *empty_filter(1)), "must agree"),
])
def test_bad_rank_inputs_raise(call, msg):
    with pytest.raises(KGCError, match=msg):
        call()


def test_metrics_hand_computed():
    m = rank_metrics(torch.tensor([1, 2, 4, 10, 11]), ks=(1, 3, 10))
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 11) / 5, rel=1e-15, abs=0)
    assert m["mr"] == pytest.approx(5.6, rel=1e-15, abs=0)
    assert (m["hits@1"], m["hits@3"], m["hits@10"]) == (0.2, 0.4, 0.8)
    assert m["count"] == 5


def test_policy_metrics_hand_computed():
    r = Ranks(torch.tensor([1, 1, 3]), torch.tensor([1, 4, 3]))
    real = policy_metrics(r, "realistic", ks=(1, 2, 3))
    assert real["mr"] == pytest.approx((1 + 2.5 + 3) / 3, rel=1e-15, abs=0)
    assert real["mrr"] == pytest.approx((1 + 1 / 2.5 + 1 / 3) / 3, rel=1e-15, abs=0)
    assert real["hits@1"] == pytest.approx(1 / 3, rel=1e-15, abs=0) and real["hits@2"] == pytest.approx(1 / 3, rel=1e-15, abs=0)
    assert real["hits@3"] == 1.0  # 2.5 <= 3
    assert policy_metrics(r, "pessimistic", ks=(3,))["hits@3"] == pytest.approx(2 / 3, rel=1e-15, abs=0)  # 4 > 3
    assert policy_metrics(r, "optimistic", ks=(1,))["hits@1"] == pytest.approx(2 / 3, rel=1e-15, abs=0)
    assert policy_metrics(r, "pessimistic", ks=(1,))["mr"] == pytest.approx(8 / 3, rel=1e-15, abs=0)
    with pytest.raises(KGCError, match="tie policy"):
        policy_metrics(r, "mean")


def test_breakdown_groups():
    ranks = torch.tensor([1.0, 2.0, 4.0, 1.0])
    groups = torch.tensor([1, 0, 1, 5])
    b = breakdown(ranks, groups, name=lambda g: f"g{g}", ks=(1,))
    assert list(b) == ["g0", "g1", "g5"]
    assert b["g1"]["mrr"] == pytest.approx((1 + 0.25) / 2, rel=1e-15, abs=0) and b["g1"]["count"] == 2
    assert b["g0"]["hits@1"] == 0.0 and b["g5"]["mr"] == 1.0
    assert not math.isnan(b["g0"]["mrr"])
    with pytest.raises(KGCError, match="zero queries"):
        rank_metrics(torch.tensor([]))
