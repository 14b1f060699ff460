"""Integration on the real UMLS and JF17K distributions (the mirror is part of the test setup: a
loading error fails these tests, it never skips them)."""

import numpy as np
import torch

from kgc.data import load_dataset
from kgc.evaluation import FilterIndex, LinkPredictionQueries, evaluate

from eval_helpers import brute_filter, brute_key, queried_position


def _load(name):
    return load_dataset(name)


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


def brute_force_ranks(scores, q, facts, num_relations):
    """Filtered optimistic / pessimistic ranks of every query, one Python loop per query: the known
    answers of (label, known entity) come straight from the raw facts (rows relation, head, tail)."""
    known = {}
    for r, h, t in facts.tolist():
        known.setdefault((r, h), set()).add(t)  # tail query (h, r, ?)
        known.setdefault((r + num_relations, t), set()).add(h)  # head query (?, r, t) = (t, r^-1, ?)
    opt, pes = [], []
    for i in range(len(q)):
        t = int(q.target[i])
        filt = known[(int(q.label[i]), int(q.context[i, 0]))] - {t}
        row, st = scores[i].tolist(), float(scores[i, t])
        opt.append(1 + sum(1 for e, s in enumerate(row) if e != t and e not in filt and s > st))
        pes.append(1 + sum(1 for e, s in enumerate(row) if e != t and e not in filt and s >= st))
    return torch.tensor(opt, dtype=torch.float64), torch.tensor(pes, dtype=torch.float64)


def test_umls_ranks_equal_brute_force_on_every_test_query():
    """Every test query of UMLS, tie-heavy float64 scores (rounded to one decimal): the evaluator's
    ranks equal a brute-force count exactly, and so do its metrics under each tie policy."""
    ds = _load("umls")
    q = LinkPredictionQueries.from_dataset(ds, "test")
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2 * ds.num_relations, ds.num_entities, ds.num_entities, generator=g, dtype=torch.float64)

    def score(batch):  # depends on the relation label and the known entity: (B, E)
        return torch.round(w[batch.label, batch.context[:, 0]], decimals=1)

    res = evaluate(score, ds, "test", batch_size=97)  # several batches, a ragged last one
    opt, pes = brute_force_ranks(score(q), q, ds.all_facts(), ds.num_relations)
    assert torch.equal(res.ranks.get("optimistic"), opt)
    assert torch.equal(res.ranks.get("pessimistic"), pes)
    assert torch.equal(res.ranks.get("realistic"), (opt + pes) / 2)
    assert (pes > opt).sum() > 100  # the scores really tie
    for policy, r in (("optimistic", opt), ("pessimistic", pes), ("realistic", (opt + pes) / 2)):
        m = res.metrics_by_policy[policy]
        assert m["mrr"] == float((1.0 / r).mean()) and m["mr"] == float(r.mean())
        for k in (1, 3, 10):
            assert m[f"hits@{k}"] == float((r <= k).to(torch.float64).mean())


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
