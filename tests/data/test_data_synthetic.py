"""The built-in synthetic KG: deterministic, planted rules whose held-out facts follow from train paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgc import KGCError
from kgc.data import load_dataset
from kgc.data.synthetic import compose


def test_deterministic_by_seed() -> None:
    a = load_dataset("synthetic", seed=7, num_entities=400)
    b = load_dataset("synthetic:seed=7,num_entities=400")
    c = load_dataset("synthetic", seed=8, num_entities=400)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    for s in ("train", "valid", "test"):
        assert torch.equal(a.splits[s], b.splits[s])
    assert not torch.equal(a.splits["train"], c.splits["train"])


def test_default_size_and_shape() -> None:
    ds = load_dataset("synthetic")
    assert ds.name == "synthetic" and ds.is_binary
    assert 1000 <= ds.num_entities <= 3000
    assert ds.relation_names == [f"base{i}" for i in range(6)] + [f"rule{k}" for k in range(4)]
    n = {s: len(ds.splits[s]) for s in ds.splits}
    assert n["train"] > 10 * n["test"] > 0 and n["valid"] > 0
    all_rows = ds.all_facts()
    assert len(torch.unique(all_rows, dim=0)) == len(all_rows)  # no duplicates within/across splits
    assert (all_rows[:, 1] != all_rows[:, 2]).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_rule_facts_in_valid_test_are_supported_by_train_paths(seed: int) -> None:
    ds = load_dataset("synthetic", seed=seed, num_entities=800)
    train = ds.splits["train"].tolist()
    out: dict[int, dict[int, set[int]]] = {}
    for r, h, t in train:
        out.setdefault(r, {}).setdefault(h, set()).add(t)
    rel = ds.relation_to_id
    checked = 0
    for head, body1, body2 in ds.metadata["rules"]:
        r3, r1, r2 = rel[head], rel[body1], rel[body2]
        for split in ("valid", "test"):
            for r, x, z in ds.splits[split].tolist():
                if r != r3:
                    continue
                ys = out.get(r1, {}).get(x, set())
                assert any(z in out.get(r2, {}).get(y, set()) for y in ys), (split, head, x, z)
                checked += 1
        # most train facts of the rule relation follow the rule too (noise is a small minority)
        facts = [(x, z) for x, zs in out.get(r3, {}).items() for z in zs]
        full = ds.all_facts().tolist()
        b1 = {}
        b2 = {}
        for r, h, t in full:
            if r == r1:
                b1.setdefault(h, set()).add(t)
            if r == r2:
                b2.setdefault(h, set()).add(t)
        implied = sum(any(z in b2.get(y, ()) for y in b1.get(x, ())) for x, z in facts)
        assert implied / len(facts) > 0.9
    assert checked > 50


def test_compose_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    n = 30
    e1 = rng.integers(0, n, size=(60, 2))
    e2 = rng.integers(0, n, size=(60, 2))
    got = {tuple(p) for p in compose(e1[:, 0], e1[:, 1], e2[:, 0], e2[:, 1], n).tolist()}
    want = {(x, z) for x, y in e1.tolist() for y2, z in e2.tolist() if y == y2 and x != z}
    assert got == want


def test_bad_parameters() -> None:
    with pytest.raises(KGCError, match="unknown synthetic parameter 'sed'"):
        load_dataset("synthetic:sed=1")
    with pytest.raises(KGCError, match="unknown parameter"):
        load_dataset("synthetic", entities=5)
    with pytest.raises(KGCError, match="noise must be in"):
        load_dataset("synthetic", noise=2.0)


@pytest.mark.parametrize("num_base_relations", [6, 12])
def test_string_free_ids_equal_reference_name_sorting(num_base_relations: int) -> None:
    """The generator maps ids without building strings; the reference sorts the raw names (index_rows)."""
    from kgc.data.parse import index_rows

    ds = load_dataset("synthetic", num_entities=300, num_base_relations=num_base_relations, seed=2)
    rows = {s: [[ds.relation_names[r], ds.entity_names[h], ds.entity_names[t]] for r, h, t in a.tolist()]
            for s, a in ds.splits.items()}
    ents, rels, arrays, max_arity = index_rows(rows)
    assert ents == ds.entity_names and rels == ds.relation_names and max_arity == 2
    for s in arrays:
        assert np.array_equal(arrays[s], ds.splits[s].numpy())
    if num_base_relations == 12:
        assert rels.index("base10") == 2  # lexicographic, not numeric, order
