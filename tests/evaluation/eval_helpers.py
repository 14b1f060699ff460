"""Stand-ins and brute-force references shared by the evaluation tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch


def make_dataset(splits: dict[str, torch.Tensor], num_entities: int, num_relations: int, name="tiny"):
    max_arity = next(iter(splits.values())).shape[1] - 1
    return SimpleNamespace(
        name=name,
        splits={k: torch.as_tensor(v, dtype=torch.int64) for k, v in splits.items()},
        num_entities=num_entities,
        num_relations=num_relations,
        max_arity=max_arity,
        is_binary=max_arity == 2,
        relation_names=[f"r{i}" for i in range(num_relations)],
        entity_names=[f"e{i}" for i in range(num_entities)],
        fingerprint=f"test-{name}-{np.random.randint(1 << 30)}",
    )


def random_facts(rng: np.random.Generator, n: int, num_entities: int, arities: list[int], max_arity: int):
    """Unique random facts; relation r has arity arities[r]."""
    rows = set()
    capacity = sum(num_entities ** k for k in arities)
    assert n <= capacity // 2, "too many facts for this entity count"
    while len(rows) < n:
        r = int(rng.integers(len(arities)))
        k = arities[r]
        ents = [int(x) for x in rng.integers(num_entities, size=k)]
        rows.add((r, *ents, *([-1] * (max_arity - k))))
    out = np.array(sorted(rows), dtype=np.int64)
    rng.shuffle(out)
    return torch.from_numpy(out)


def random_dataset(seed: int, n_facts=60, num_entities=7, arities=(2, 3, 4, 3), binary=False):
    rng = np.random.default_rng(seed)
    arities = [2, 2, 2] if binary else list(arities)
    max_arity = max(arities)
    facts = random_facts(rng, n_facts, num_entities, arities, max_arity)
    a, b = int(n_facts * 0.6), int(n_facts * 0.8)
    return make_dataset({"train": facts[:a], "valid": facts[a:b], "test": facts[b:]},
                        num_entities, len(arities), name=f"rand{seed}")


def brute_filter(dataset, splits=("train", "valid", "test")):
    """dict-of-sets: key (relation, queried position, other (position, entity) pairs) -> true answers."""
    truth: dict[tuple, set[int]] = {}
    for s in splits:
        for row in dataset.splits[s].tolist():
            r, ents = row[0], [e for e in row[1:] if e >= 0]
            for p, e in enumerate(ents):
                key = (r, p, tuple((i, x) for i, x in enumerate(ents) if i != p))
                truth.setdefault(key, set()).add(e)
    return truth


def brute_key(dataset, split, fact_index, queried_position):
    row = dataset.splits[split][fact_index].tolist()
    ents = [e for e in row[1:] if e >= 0]
    return (row[0], queried_position, tuple((i, x) for i, x in enumerate(ents) if i != queried_position))


def queried_position(queries, i):
    """Position in the fact of query i (binary: tail query asks position 1, head query position 0)."""
    if queries.is_binary:
        return 1 - int(queries.direction[i])
    return int(queries.direction[i])


def brute_ranks(scores: torch.Tensor, target, filters: list[set[int]]):
    """Loop over queries; dense float64 filtered scores; returns (optimistic, pessimistic) int64."""
    scores = scores.to(torch.float64)
    opt, pes = [], []
    for i in range(scores.shape[0]):
        t = int(target[i])
        keep = torch.ones(scores.shape[1], dtype=torch.bool)
        for e in filters[i]:
            keep[e] = False
        keep[t] = False
        s = scores[i][keep]
        opt.append(1 + int((s > scores[i, t]).sum()))
        pes.append(1 + int((s >= scores[i, t]).sum()))
    return torch.tensor(opt), torch.tensor(pes)
