import numpy as np
import pytest
import torch

from kgc import KGCError
from kgc.evaluation import FilterIndex, LinkPredictionQueries
from kgc.models.base import last_positions
from kgc.vocab import Vocabulary

from eval_helpers import brute_filter, brute_key, make_dataset, queried_position, random_dataset


def test_binary_queries_layout():
    facts = torch.tensor([[0, 5, 6], [1, 7, 5]])
    q = LinkPredictionQueries.from_facts(facts, num_relations=2)
    assert len(q) == 4 and q.is_binary
    assert q.label.tolist() == [0, 2, 1, 3]          # r, r + R
    assert q.context[:, 0].tolist() == [5, 6, 7, 5]
    assert q.target.tolist() == [6, 5, 5, 7]
    assert q.direction.tolist() == [0, 1, 0, 1]
    assert q.context_roles[:, 0].tolist() == [0, 0, 0, 0]
    assert q.target_role.tolist() == [1, 1, 1, 1]
    assert q.fact_index.tolist() == [0, 0, 1, 1]
    assert q.relation.tolist() == [0, 0, 1, 1]


def test_nary_queries_every_position():
    facts = torch.tensor([[0, 10, 11, 12, -1], [1, 20, 21, -1, -1], [2, 30, 31, 32, 33]])
    q = LinkPredictionQueries.from_facts(facts, num_relations=3, num_entities=40)
    assert not q.is_binary and len(q) == 3 + 2 + 4
    assert q.fact_index.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert q.direction.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert q.target_role.tolist() == q.direction.tolist()
    assert q.label.tolist() == q.relation.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert q.arity.tolist() == [3, 3, 3, 2, 2, 4, 4, 4, 4]
    i = 1  # fact 0 asking position 1
    assert q.target[i] == 11
    assert q.context[i].tolist() == [10, 12, -1]
    assert q.context_roles[i].tolist() == [0, 2, -1]
    i = 3
    assert q.context[i].tolist() == [21, -1, -1] and q.context_roles[i].tolist() == [1, -1, -1]


def _vocab(num_entities, num_relations, max_arity):
    return Vocabulary(dataset="t", fingerprint="f", entity_names=[f"e{i}" for i in range(num_entities)],
                      label_names=[f"l{i}" for i in range(2 * num_relations)], num_relations=num_relations,
                      max_arity=max_arity)


def test_to_tokens_binary_matches_contract():
    v = _vocab(10, 3, 2)
    q = LinkPredictionQueries.from_facts(torch.tensor([[2, 4, 7]]), num_relations=3)
    tokens, roles = q.to_tokens(v)
    assert tokens.tolist() == [[v.task("lp"), v.rel(2), v.ent(4), v.mask],
                               [v.task("lp"), v.rel(2 + 3), v.ent(7), v.mask]]
    assert roles.tolist() == [[0, 0, 0, 1], [0, 0, 0, 1]]


def test_to_tokens_nary_right_padded():
    v = _vocab(50, 3, 4)
    facts = torch.tensor([[0, 10, 11, 12, -1], [1, 20, 21, -1, -1]])
    q = LinkPredictionQueries.from_facts(facts, num_relations=3)
    tokens, roles = q.to_tokens(v)
    assert tokens.shape == (5, 5)  # longest: 2 context entities + 3
    assert tokens[1].tolist() == [v.task("lp"), v.rel(0), v.ent(10), v.ent(12), v.mask]
    assert roles[1].tolist() == [0, 0, 0, 2, 1]
    assert tokens[3].tolist() == [v.task("lp"), v.rel(1), v.ent(21), v.mask, 0]  # PAD on the right
    assert roles[3].tolist() == [0, 0, 1, 0, 0]
    last = last_positions(tokens)  # the one helper for the queried position
    assert last.tolist() == [4, 4, 4, 3, 3]
    assert (tokens[torch.arange(5), last] == v.mask).all()
    # left padding (allowed by the model contract): still the MASK; ``(tokens != 0).sum(1) - 1`` is not
    left = torch.stack([torch.roll(r, int((r == 0).sum())) for r in tokens])
    assert (left[torch.arange(5), last_positions(left)] == v.mask).all()
    assert (left[torch.arange(5), (left != 0).sum(1) - 1] != v.mask).any()


@pytest.mark.parametrize("bad, msg", [
    (torch.tensor([[0, 1, -1, 2]]), "after a -1 pad"),
    (torch.tensor([[0, 1, -1, -1]]), "arity 1"),
    (torch.tensor([[5, 1, 2, -1]]), "relation id 5"),
    (torch.tensor([[0, 1, 99, -1]]), "num_entities"),
    (torch.tensor([[0.0, 1.0, 2.0, 3.0]]), "integer"),
])
def test_bad_facts_raise(bad, msg):
    with pytest.raises(KGCError, match=msg):
        LinkPredictionQueries.from_facts(bad, num_relations=2, num_entities=10)


def test_missing_split_is_clear_error():
    ds = random_dataset(0)
    with pytest.raises(KGCError, match="no split 'dev'"):
        LinkPredictionQueries.from_dataset(ds, "dev")


@pytest.mark.parametrize("seed, binary", [(0, False), (1, False), (2, True), (3, True)])
def test_filter_index_equals_dict_of_sets(seed, binary):
    ds = random_dataset(seed, n_facts=80, num_entities=8 if binary else 4, binary=binary)
    truth = brute_filter(ds)
    index = FilterIndex.from_dataset(ds)
    assert index.nnz == sum(len(v) for v in truth.values())
    for split in ("train", "valid", "test"):
        q = LinkPredictionQueries.from_dataset(ds, split)
        indptr, indices = index.lookup(q)
        assert indptr.shape == (len(q) + 1,)
        for i in range(len(q)):
            got = indices[indptr[i]:indptr[i + 1]].tolist()
            want = sorted(truth[brute_key(ds, split, int(q.fact_index[i]), queried_position(q, i))])
            assert got == want
            assert int(q.target[i]) in got  # the target itself is in the index


@pytest.mark.parametrize("seed, binary", [(0, False), (2, True)])
def test_answers_for_equals_dict_of_sets(seed, binary):
    ds = random_dataset(seed, n_facts=80, num_entities=8 if binary else 4, binary=binary)
    truth = brute_filter(ds)
    index = FilterIndex.from_dataset(ds)
    for (r, p, others), want in truth.items():
        got = index.answers_for(r, p + 1, [e for _, e in others])
        assert got.tolist() == sorted(want)
    with pytest.raises(KGCError, match="position"):
        index.answers_for(0, 3, [0])


def test_filter_uses_every_split_and_unknown_keys_are_empty():
    train = torch.tensor([[0, 0, 1]])
    valid = torch.tensor([[0, 0, 2]])
    test = torch.tensor([[0, 0, 3], [1, 4, 0]])
    ds = make_dataset({"train": train, "valid": valid, "test": test}, 6, 2)
    q = LinkPredictionQueries.from_dataset(ds, "test")
    full = FilterIndex.from_dataset(ds).answers(q)
    assert full[0].tolist() == [1, 2, 3]          # (0, r0, ?) filtered by train and valid answers
    assert full[1].tolist() == [0]                # (3, r0^-1, ?) -> head 0
    train_only = FilterIndex.from_dataset(ds, splits=("train",)).answers(q)
    assert train_only[0].tolist() == [1]
    assert train_only[2].tolist() == [] and train_only[3].tolist() == []  # relation 1 unseen in train


def test_filter_rejects_mismatched_queries():
    ds = random_dataset(4)
    index = FilterIndex.from_dataset(ds)
    binary = LinkPredictionQueries.from_facts(torch.tensor([[0, 1, 2]]), num_relations=2)
    with pytest.raises(KGCError, match="max_arity"):
        index.lookup(binary)


def test_filter_memory_is_sparse():
    rng = np.random.default_rng(0)
    n, e = 20000, 100000
    facts = torch.from_numpy(np.stack([rng.integers(50, size=n), rng.integers(e, size=n),
                                       rng.integers(e, size=n)], 1))
    q = LinkPredictionQueries.from_facts(facts, num_relations=50)
    index = FilterIndex(q, e)
    assert index.nbytes < 64 * len(q)  # O(#queries), nowhere near queries x entities
    indptr, indices = index.lookup(q[:1000])
    assert indptr[-1] == indices.numel() and indices.numel() >= 1000
