import dataclasses
import json

import pytest
import types

import torch

from kgc.models.base import last_positions
from kgc.models.batch import LPOutput

from kgc import KGCError
from kgc.evaluation import (
    LinkPredictionQueries,
    ModelScorer,
    evaluate,
    shard_bounds,
)
from kgc.vocab import Vocabulary

from eval_helpers import brute_filter, brute_key, brute_ranks, queried_position, random_dataset


def vocab_for(ds):
    return Vocabulary(dataset=ds.name, fingerprint=ds.fingerprint, entity_names=list(ds.entity_names),
                      label_names=[f"l{i}" for i in range(2 * ds.num_relations)],
                      num_relations=ds.num_relations, max_arity=max(2, ds.max_arity))


class TokenScorer:
    """Integer-valued bag-of-tokens scorer: exact float32 arithmetic, many ties."""

    def __init__(self, ds, dim=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.vocab = vocab_for(ds)
        self.emb = torch.randint(-1, 2, (len(self.vocab), dim), generator=g).float()
        self.emb[0] = 0
        self.w = torch.randint(-1, 2, (ds.num_entities, dim), generator=g).float()
        self.b = torch.randint(0, 2, (ds.num_entities,), generator=g).float()
        self.calls = 0

    def query_vectors(self, tokens, roles):
        self.calls += 1
        return self.emb[tokens].sum(1) + roles.sum(1, keepdim=True).float()

    def entity_weight(self):
        return self.w

    def entity_bias(self):
        return self.b


def reference(ds, split, scorer):
    q = LinkPredictionQueries.from_dataset(ds, split)
    tokens, roles = q.to_tokens(scorer.vocab)
    dense = scorer.query_vectors(tokens, roles).double() @ scorer.w.double().T + scorer.b.double()
    truth = brute_filter(ds)
    filters = [truth[brute_key(ds, split, int(q.fact_index[i]), queried_position(q, i))] for i in range(len(q))]
    return q, brute_ranks(dense, q.target, filters)


@pytest.mark.parametrize("binary", [True, False])
def test_evaluate_equals_brute_force_and_chunking_is_invisible(binary):
    ds = random_dataset(11, n_facts=80, num_entities=8 if binary else 4, binary=binary)
    scorer = TokenScorer(ds)
    q, (opt_ref, pes_ref) = reference(ds, "test", scorer)
    assert (pes_ref > opt_ref).any()
    results = []
    for kw in ({}, {"batch_size": 1}, {"batch_size": 5, "entity_chunk": 2}, {"batch_size": 3, "chunk_bytes": 1}):
        res = evaluate(scorer, ds, "test", use_kernel=False, **kw)
        assert torch.equal(res.ranks.optimistic, opt_ref) and torch.equal(res.ranks.pessimistic, pes_ref)
        results.append(res)
    res = results[0]
    assert res.num_queries == len(q) == (2 * len(ds.splits["test"]) if binary
                                         else int((ds.splits["test"][:, 1:] >= 0).sum()))
    assert res.num_facts == len(ds.splits["test"])
    for r in results[1:]:
        assert r.metrics == res.metrics and r.breakdowns == res.breakdowns
    real = (opt_ref + pes_ref).double() / 2
    assert res.tie_policy == "realistic"
    assert res.metrics["mrr"] == float((1 / real).mean())  # float64: bit-equal, no tolerance
    assert res.pessimistic["mr"] == float(pes_ref.double().mean())
    assert res.optimistic["hits@1"] == float((opt_ref == 1).double().mean())
    kinds = ("direction", "relation") if binary else ("arity", "position", "relation")
    assert tuple(res.breakdowns) == kinds
    for kind in kinds:
        assert sum(m["count"] for m in res.breakdowns[kind].values()) == len(q)
    if binary:
        assert set(res.breakdowns["direction"]) == {"head", "tail"}
        tail = real[q.direction == 0]
        assert res.breakdowns["direction"]["tail"]["mrr"] == float((1 / tail).mean())
    else:
        a3 = real[q.arity == 3]
        assert res.breakdowns["arity"]["3"]["mr"] == float(a3.mean())
    d = json.loads(json.dumps(res.to_dict()))
    assert d["tie_policy"] == "realistic" and d["metrics"] == d["realistic"]
    assert set(d) >= {"pessimistic", "optimistic", "breakdowns", "num_queries", "split", "dataset"}


def test_tie_policy_and_raw_ranking():
    ds = random_dataset(12, n_facts=60, num_entities=4)
    scorer = TokenScorer(ds, seed=3)
    pes = evaluate(scorer, ds, "valid", tie_policy="pessimistic", use_kernel=False)
    real = evaluate(scorer, ds, "valid", use_kernel=False)
    assert pes.metrics == real.pessimistic and pes.tie_policy == "pessimistic"
    raw = evaluate(scorer, ds, "valid", filtered=False, use_kernel=False)
    assert not raw.filtered
    assert (raw.ranks.optimistic >= real.ranks.optimistic).all()
    assert (raw.ranks.optimistic > real.ranks.optimistic).any()
    with pytest.raises(KGCError, match="tie policy"):
        evaluate(scorer, ds, "valid", tie_policy="average")
    scorer.w = scorer.w[:-1]
    with pytest.raises(KGCError, match="entities"):
        evaluate(scorer, ds, "valid")


def test_kernel_path_through_evaluate_matches_chunked_path():
    ds = random_dataset(17, n_facts=60, num_entities=4)
    scorer = TokenScorer(ds, seed=2)
    a = evaluate(scorer, ds, "test", use_kernel=False)
    b = evaluate(scorer, ds, "test", use_kernel=True, batch_size=9)
    assert torch.equal(a.ranks.optimistic, b.ranks.optimistic)
    assert torch.equal(a.ranks.pessimistic, b.ranks.pessimistic)


def test_entities_unseen_in_train_are_ranked_like_any_other():
    """Entity 6 occurs only in test and entity 5 only in valid (WN18RR has 209 such test entities):
    as targets and as the known entity of a query they are ranked, equal to brute force, on every path."""
    from eval_helpers import make_dataset

    train = [[0, 0, 1], [1, 1, 2], [0, 2, 3], [1, 3, 4], [0, 4, 0], [1, 0, 2], [0, 1, 3]]
    ds = make_dataset({"train": torch.tensor(train), "valid": torch.tensor([[0, 5, 1]]),
                       "test": torch.tensor([[0, 6, 1], [1, 2, 6], [0, 5, 6], [1, 6, 3], [0, 0, 5]])},
                      num_entities=7, num_relations=2, name="unseen")
    seen = set(ds.splits["train"][:, 1:].flatten().tolist())
    assert {5, 6}.isdisjoint(seen)
    scorer = TokenScorer(ds, seed=3)
    q, (opt_ref, pes_ref) = reference(ds, "test", scorer)
    assert {5, 6} <= set(q.target.tolist()) and {5, 6} <= set(q.context[:, 0].tolist())
    for kw in ({"use_kernel": False}, {"use_kernel": True}, {"use_kernel": False, "batch_size": 1}):
        res = evaluate(scorer, ds, "test", **kw)
        assert torch.equal(res.ranks.optimistic, opt_ref) and torch.equal(res.ranks.pessimistic, pes_ref)
        assert res.num_queries == 2 * len(ds.splits["test"])


def test_callable_scorer_path_equals_vector_path():
    ds = random_dataset(13, n_facts=60, num_entities=4)
    scorer = TokenScorer(ds, seed=5)

    def score(batch):
        tokens, roles = batch.to_tokens(scorer.vocab)
        return scorer.query_vectors(tokens, roles) @ scorer.w.T + scorer.b

    a = evaluate(scorer, ds, "test", use_kernel=False)
    for kw in ({"entity_chunk": 2}, {"chunk_bytes": 1}):  # explicit column chunks, or derived from the bound
        b = evaluate(score, ds, "test", batch_size=7, **kw)
        assert torch.equal(a.ranks.optimistic, b.ranks.optimistic)
        assert torch.equal(a.ranks.pessimistic, b.ranks.pessimistic)
    with pytest.raises(KGCError, match="scores"):
        evaluate(lambda batch: torch.zeros(len(batch), 3), ds, "test")
    with pytest.raises(KGCError, match="cannot evaluate"):
        evaluate(object(), ds, "test")


class FakeModel(torch.nn.Module):
    """encode = causal prefix sums of token embeddings; the last non-pad state sums the whole query."""

    def __init__(self, vocab_size, num_entities, dim=4):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randint(-2, 3, (vocab_size, dim), generator=g).float())
        self.role = torch.nn.Parameter(torch.randint(-2, 3, (8, dim), generator=g).float())
        self.ent = torch.nn.Parameter(torch.randint(-2, 3, (num_entities, dim), generator=g).float())
        self.seen = []

    def encode(self, tokens, prefix_len=None, roles=None):
        self.seen.append((tokens.clone(), self.training))
        return torch.cumsum(self.emb[tokens] + self.role[roles], dim=1)

    def query_vectors(self, h):
        return 2 * h

    # the link-prediction half of the model contract, as KGCModel implements it: read the MASK
    cfg = types.SimpleNamespace(direct="none", context=types.SimpleNamespace(budget=0))

    def lp_forward(self, batch):
        h = self.encode(batch.tokens, None, batch.roles)
        return LPOutput(self.query_vectors(h[torch.arange(h.shape[0]), last_positions(batch.tokens)]))

    def lp_output_scores(self, out):
        return out.query @ self.ent.T

    def entity_weight(self):
        return self.ent

    def entity_bias(self):
        return None


def test_model_scorer_reads_last_non_pad_position():
    ds = random_dataset(14, n_facts=40, num_entities=4)
    vocab = vocab_for(ds)
    model = FakeModel(len(vocab), ds.num_entities)
    scorer = ModelScorer(model, vocab)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    tokens, roles = q.to_tokens(vocab)
    assert (tokens == 0).any()  # mixed arities -> right padding present
    qv = scorer.query_vectors(tokens, roles)
    nonpad = (tokens != 0).unsqueeze(-1)
    want = 2 * ((model.emb[tokens] + model.role[roles]) * nonpad).sum(1)
    assert torch.equal(qv, want)
    model.train()
    res = evaluate(model, ds, "test", vocab=vocab, use_kernel=False)  # raw model + vocab -> ModelScorer
    assert model.training and not any(training for _, training in model.seen[1:])
    dense = want.double() @ model.ent.double().T
    truth = brute_filter(ds)
    filters = [truth[brute_key(ds, "test", int(q.fact_index[i]), queried_position(q, i))] for i in range(len(q))]
    opt, pes = brute_ranks(dense, q.target, filters)
    assert torch.equal(res.ranks.optimistic, opt) and torch.equal(res.ranks.pessimistic, pes)
    with pytest.raises(KGCError, match="vocab"):
        evaluate(model, ds, "test")


def test_sharding_partitions_queries():
    for n in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[i][1] == bounds[i + 1][0] for i in range(world - 1))
    # the gather of the shards (tests/evaluation/test_eval_accumulator.py) restores query order


def test_nan_score_names_the_query_in_the_split():
    """A NaN score raises naming the query's position in the split (not in its batch); a NaN in
    a filtered-out column is ignored."""
    from kgc.evaluation import FilterIndex
    from kernels import NaNScoreError

    ds = random_dataset(16, n_facts=80, num_entities=8, binary=True)
    q_all = LinkPredictionQueries.from_dataset(ds, "test")
    answers = FilterIndex.for_dataset(ds).answers(q_all)
    # a query past the first batch with a known answer besides its target
    bad_query = next(i for i in range(5, len(q_all)) if set(answers[i].tolist()) - {int(q_all.target[i])})
    target = int(q_all.target[bad_query])
    filtered_col = next(e for e in answers[bad_query].tolist() if e != target)
    free_col = next(e for e in range(ds.num_entities) if e != target and e not in set(answers[bad_query].tolist()))

    def make_score(col):
        seen = [0]

        def score(batch):
            s = torch.arange(ds.num_entities, dtype=torch.float32).repeat(len(batch), 1)
            row = bad_query - seen[0]
            if 0 <= row < len(batch):
                s[row, col] = float("nan")
            seen[0] += len(batch)
            return s
        return score

    clean = evaluate(lambda b: torch.arange(ds.num_entities, dtype=torch.float32).repeat(len(b), 1), ds, "test",
                     batch_size=4)
    res = evaluate(make_score(filtered_col), ds, "test", batch_size=4)
    assert torch.equal(res.ranks.optimistic, clean.ranks.optimistic)
    with pytest.raises(NaNScoreError, match=f"NaN score for query {bad_query}\\b"):
        evaluate(make_score(free_col), ds, "test", batch_size=4)
    with pytest.raises(NaNScoreError, match=f"NaN score for query {bad_query}\\b"):
        evaluate(make_score(target), ds, "test", batch_size=4)  # the target's own score


def test_left_padded_batch_reads_the_mask_like_right_padded():
    """The queried position is the last non-pad token (``last_positions``), right, left or middle
    padding alike (the model contract allows any); ``(tokens != PAD).sum(1) - 1`` would read a
    left-padded row in the middle."""
    from kgc.models import build_model
    from kgc.models.config import ModelConfig

    ds = random_dataset(18, n_facts=40, num_entities=5)  # mixed arities: rows of different lengths
    vocab = vocab_for(ds)
    torch.manual_seed(0)
    model = build_model(ModelConfig(dim=16, layers=1, heads=2, dropout=0.0, attn_dropout=0.0),
                        len(vocab), ds.num_entities, vocab.entity_offset).eval()
    q = LinkPredictionQueries.from_dataset(ds, "test")
    right = q.to_batch(vocab)
    lengths = (right.tokens != 0).sum(1)
    assert (lengths < right.tokens.shape[1]).any()  # some rows are padded
    L = right.tokens.shape[1]
    shift = (L - lengths).tolist()
    left = dataclasses.replace(right, tokens=torch.stack([torch.roll(r, k) for r, k in zip(right.tokens, shift)]),
                               roles=torch.stack([torch.roll(r, k) for r, k in zip(right.roles, shift)]))
    padded = lengths < L
    assert (left.tokens[padded, 0] == 0).all() and (left.tokens[:, -1] == vocab.mask).all()
    assert torch.equal(last_positions(left.tokens), torch.full((len(q),), L - 1))
    assert not torch.equal((left.tokens != 0).sum(1) - 1, last_positions(left.tokens))  # the old formula fails
    with torch.no_grad():
        a, b = model.lp_forward(right).query, model.lp_forward(left).query
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        scorer = ModelScorer(model, vocab)
        torch.testing.assert_close(scorer.query_vectors(left.tokens, left.roles),
                                   scorer.query_vectors(right.tokens, right.roles), rtol=1e-5, atol=1e-5)


def _ddp_worker(rank, world, init_file, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ds = random_dataset(15, n_facts=40, num_entities=4)
        scorer = TokenScorer(ds, seed=1)
        res = evaluate(scorer, ds, "test", batch_size=4, use_kernel=False)
        torch.save({"opt": res.ranks.optimistic, "pes": res.ranks.pessimistic, "n": res.num_queries,
                    "calls": scorer.calls}, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_gloo_counts_every_query_once(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, tmp_path / "init", tmp_path / "out")) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    ds = random_dataset(15, n_facts=40, num_entities=4)
    single = evaluate(TokenScorer(ds, seed=1), ds, "test", use_kernel=False, distributed=False)
    for r in range(2):
        got = torch.load(tmp_path / f"out.{r}")
        assert got["n"] == single.num_queries
        assert torch.equal(got["opt"], single.ranks.optimistic) and torch.equal(got["pes"], single.ranks.pessimistic)
    # each process scored only its own shard (no duplicates): ceil(shard / batch_size) batches
    calls = [torch.load(tmp_path / f"out.{r}")["calls"] for r in range(2)]
    shards = [hi - lo for lo, hi in (shard_bounds(single.num_queries, 2, r) for r in range(2))]
    assert sum(shards) == single.num_queries
    assert calls == [-(-s // 4) for s in shards]


def test_real_model_through_model_scorer_matches_dense_scores():
    from kgc.models import build_model
    from kgc.models.config import ModelConfig

    ds = random_dataset(16, n_facts=40, num_entities=5)
    vocab = vocab_for(ds)
    torch.manual_seed(0)
    model = build_model(ModelConfig(dim=16, layers=1, heads=2, dropout=0.0, attn_dropout=0.0),
                        len(vocab), ds.num_entities, vocab.entity_offset)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    res = evaluate(model, ds, "test", vocab=vocab, batch_size=7, use_kernel=False)
    with torch.no_grad():
        tokens, roles = q.to_tokens(vocab)
        h = model.encode(tokens, None, roles)[torch.arange(len(q)), last_positions(tokens)]
        dense = model.entity_scores(h).double()
    truth = brute_filter(ds)
    filters = [truth[brute_key(ds, "test", int(q.fact_index[i]), queried_position(q, i))] for i in range(len(q))]
    opt, pes = brute_ranks(dense, q.target, filters)
    # float32 matmul vs float64: ranks agree unless two scores are within rounding of each other
    assert (res.ranks.optimistic - opt).abs().max() <= 1
    assert (res.ranks.optimistic == opt).float().mean() > 0.9
