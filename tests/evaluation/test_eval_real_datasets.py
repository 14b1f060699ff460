"""Integration on real small datasets (skipped until kgc.data and the mirror are available)."""

import numpy as np
import pytest
import torch

from kgc import KGCError
from kgc.evaluation import FilterIndex, LinkPredictionQueries, evaluate

from eval_helpers import brute_filter, brute_key, queried_position


def _load(name):
    try:
        from kgc.data import load_dataset
    except ImportError:
        pytest.skip("kgc.data not available")
    try:
        return load_dataset(name)
    except KGCError as exc:
        pytest.skip(f"{name} not available: {exc}")


def test_umls_queries_filter_and_evaluate():
    ds = _load("umls")
    q = LinkPredictionQueries.from_dataset(ds, "test")
    assert len(q) == 2 * len(ds.splits["test"])
    index = FilterIndex.from_dataset(ds)
    n_all = sum(len(ds.splits[s]) for s in ("train", "valid", "test"))
    assert index.nnz <= 2 * n_all
    indptr, indices = index.lookup(q)
    rows = torch.repeat_interleave(torch.arange(len(q)), indptr[1:] - indptr[:-1])
    hits = torch.bincount(rows[indices == q.target[rows]], minlength=len(q))
    assert bool((hits == 1).all())  # every query's own target is in its filter row, exactly once

    g = torch.Generator().manual_seed(0)
    w = torch.randn(ds.num_entities, 16, generator=g)

    def score(batch):
        h = torch.nn.functional.one_hot(batch.context[:, 0], ds.num_entities).float() @ w
        return h @ w.T

    res = evaluate(score, ds, "test", batch_size=256)
    assert res.num_queries == 2 * len(ds.splits["test"])
    assert set(res.breakdowns["direction"]) == {"head", "tail"}
    assert len(res.breakdowns["relation"]) == len(set(ds.splits["test"][:, 0].tolist()))
    m = res.metrics
    assert 0 < m["mrr"] <= 1 and m["hits@1"] <= m["hits@3"] <= m["hits@10"]
    assert res.optimistic["mrr"] >= m["mrr"] >= res.pessimistic["mrr"]


def test_jf17k_nary_queries_and_filter_sizes():
    ds = _load("jf17k")
    assert not ds.is_binary
    q = LinkPredictionQueries.from_dataset(ds, "test")
    assert len(q) == int(ds.arity("test").sum())
    assert set(q.arity.unique().tolist()) <= set(range(2, ds.max_arity + 1))
    index = FilterIndex.from_dataset(ds)
    n_all_queries = sum(int(ds.arity(s).sum()) for s in ("train", "valid", "test"))
    assert index.nnz <= n_all_queries
    assert index.nbytes < 64 * n_all_queries * ds.max_arity  # O(facts x arity), no entity dimension
    # spot check against a dict-of-sets built from all splits
    truth = brute_filter(ds)
    sample = np.random.default_rng(0).choice(len(q), size=300, replace=False)
    sub = q[torch.from_numpy(sample)]
    answers = index.answers(sub)
    for j, i in enumerate(sample.tolist()):
        key = brute_key(ds, "test", int(q.fact_index[i]), queried_position(q, i))
        assert answers[j].tolist() == sorted(truth[key])
