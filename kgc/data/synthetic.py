"""A small synthetic knowledge graph with planted compositional rules (offline default dataset).

Generator (deterministic given its parameters; ``numpy.random.default_rng(seed)``):

1. **Entities** ``e0000 .. e{N-1}`` (``num_entities``, default 2000).
2. **Base relations** ``base0 .. base{B-1}`` (default 6).  Each entity gets one
   out-edge under a random base relation (so every entity occurs), plus
   ``Poisson(out_degree)`` further out-edges per base relation.  Targets are
   drawn with heavy-tailed (Pareto) popularity, so degrees vary as in real KGs.
   Self-loops and duplicates are dropped.
3. **Rule relations** ``rule0 .. rule{K-1}``, one per planted rule
   ``rule_k(x, z) <= base_a(x, y) AND base_b(y, z)`` (default rules below).
   The rule's closure is computed over *all* base facts; each derived fact is
   kept with probability ``rule_confidence`` (incompleteness), and
   ``noise * |derived|`` random ``rule_k`` facts that the rule does not imply
   are added (noise, train only).
4. **Splits.**  Base facts: ``heldout_base`` of them each to valid and test
   (not inferable by design).  Derived facts that are supported by a path
   whose two edges are both *train* base facts are eligible for evaluation;
   ``heldout_derived`` of the eligible ones go to valid/test (half each), the
   rest - and every unsupported derived fact - stay in train.  So every
   rule-relation fact in valid/test is inferable from a train path
   ``x -base_a-> y -base_b-> z``.

With the defaults: ~2000 entities, 10 relations, ~36k facts.  Rows follow
the data contract: ``[relation, head, tail]``.
``KGDataset.metadata["rules"]`` lists ``[head, body_1, body_2]`` relation names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kgc.errors import KGCError
from kgc.data.dataset import KGDataset, fingerprint_of

GENERATOR_VERSION = 1
DEFAULT_RULES: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (1, 4), (5, 0))

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "num_entities": 2000,
    "num_base_relations": 6,
    "out_degree": 1.5,
    "rule_confidence": 0.9,
    "noise": 0.05,
    "heldout_base": 0.05,
    "heldout_derived": 0.2,
}


def compose(src1: np.ndarray, dst1: np.ndarray, src2: np.ndarray, dst2: np.ndarray, n: int) -> np.ndarray:
    """All pairs ``(x, z)`` with ``x -1-> y -2-> z``, unique, no self-loops: int64 ``(M, 2)``.

    Vectorised join on ``y`` (CSR of relation 2 by source; no Python loop per edge).
    """
    order = np.argsort(src2, kind="stable")
    s2, d2 = src2[order], dst2[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(s2, minlength=n), out=indptr[1:])
    counts = indptr[dst1 + 1] - indptr[dst1]
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, 2), dtype=np.int64)
    x = np.repeat(src1, counts)
    starts = np.repeat(indptr[dst1], counts)
    offs = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    z = d2[starts + offs]
    keys = np.unique(x * n + z)
    pairs = np.stack([keys // n, keys % n], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def _pairs_in(pairs: np.ndarray, ref: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask: which rows of ``pairs`` (M, 2) occur in ``ref`` (K, 2)."""
    return np.isin(pairs[:, 0] * n + pairs[:, 1], ref[:, 0] * n + ref[:, 1])


def generate(seed: int = 0, num_entities: int = 2000, num_base_relations: int = 6, out_degree: float = 1.5,
             rule_confidence: float = 0.9, noise: float = 0.05, heldout_base: float = 0.05,
             heldout_derived: float = 0.2, rules: tuple[tuple[int, int], ...] = DEFAULT_RULES,
             ) -> tuple[dict[str, np.ndarray], list[tuple[int, int, int]]]:
    """Integer facts per split ``{"train"|"valid"|"test": (N, 3) [relation, head, tail]}`` and the rules.

    Relation ids: ``0..B-1`` base, ``B + k`` for rule k.  Rules are returned as
    ``(head_relation, body_1, body_2)`` integer triples.
    """
    n, b = int(num_entities), int(num_base_relations)
    if n < 10 or b < 2:
        raise KGCError(f"synthetic: need num_entities >= 10 and num_base_relations >= 2, got {n}, {b}")
    for a, c in rules:
        if not (0 <= a < b and 0 <= c < b):
            raise KGCError(f"synthetic: rule body ({a}, {c}) refers to a base relation outside 0..{b - 1}")
    for key, val in (("rule_confidence", rule_confidence), ("noise", noise), ("heldout_base", heldout_base),
                     ("heldout_derived", heldout_derived)):
        if not 0.0 <= val <= 1.0:
            raise KGCError(f"synthetic: {key} must be in [0, 1], got {val}")
    rng = np.random.default_rng(seed)
    popularity = rng.pareto(1.5, size=n) + 1.0
    popularity /= popularity.sum()

    # base facts
    src = [np.arange(n)]
    rel = [rng.integers(0, b, size=n)]
    for r in range(b):
        deg = rng.poisson(out_degree, size=n)
        src.append(np.repeat(np.arange(n), deg))
        rel.append(np.full(int(deg.sum()), r))
    src_a, rel_a = np.concatenate(src), np.concatenate(rel)
    dst_a = rng.choice(n, size=len(src_a), p=popularity)
    base = np.unique(np.stack([rel_a, src_a, dst_a], axis=1), axis=0)
    base = base[base[:, 1] != base[:, 2]]
    u = rng.random(len(base))
    split_of = np.where(u < heldout_base, 1, np.where(u < 2 * heldout_base, 2, 0))  # 0 train, 1 valid, 2 test
    train_base = base[split_of == 0]

    parts = {0: [base[split_of == 0]], 1: [base[split_of == 1]], 2: [base[split_of == 2]]}
    out_rules = []
    for k, (ra, rb) in enumerate(rules):
        head = b + k
        out_rules.append((head, ra, rb))
        A, B_ = base[base[:, 0] == ra], base[base[:, 0] == rb]
        derived = compose(A[:, 1], A[:, 2], B_[:, 1], B_[:, 2], n)
        derived = derived[rng.random(len(derived)) < rule_confidence]
        tA, tB = train_base[train_base[:, 0] == ra], train_base[train_base[:, 0] == rb]
        supported = compose(tA[:, 1], tA[:, 2], tB[:, 1], tB[:, 2], n)
        eligible = _pairs_in(derived, supported, n)
        u = rng.random(len(derived))
        where = np.zeros(len(derived), dtype=np.int64)
        where[eligible & (u < heldout_derived / 2)] = 1
        where[eligible & (u >= heldout_derived / 2) & (u < heldout_derived)] = 2
        for s in (0, 1, 2):
            d = derived[where == s]
            parts[s].append(np.column_stack([np.full(len(d), head), d]))
        # noise: random rule_k facts the rule does not imply (train only)
        n_noise = int(round(noise * len(derived)))
        if n_noise:
            cand = rng.integers(0, n, size=(n_noise * 2, 2))
            cand = cand[cand[:, 0] != cand[:, 1]]
            cand = cand[~_pairs_in(cand, derived, n)]
            keys = np.unique(cand[:, 0] * n + cand[:, 1])[:n_noise]
            parts[0].append(np.column_stack([np.full(len(keys), head), keys // n, keys % n]))
    splits = {name: np.concatenate(parts[i]).astype(np.int64) for i, name in enumerate(("train", "valid", "test"))}
    splits["train"] = np.unique(splits["train"], axis=0)
    return splits, out_rules


def _parse_spec(spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ":" not in spec:
        return out
    for item in spec.split(":", 1)[1].split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise KGCError(f"{spec!r}: expected key=value after 'synthetic:', got {item!r}")
        k, v = (x.strip() for x in item.split("=", 1))
        if k not in DEFAULTS:
            raise KGCError(f"{spec!r}: unknown synthetic parameter {k!r} (known: {', '.join(DEFAULTS)})")
        try:
            out[k] = type(DEFAULTS[k])(float(v)) if isinstance(DEFAULTS[k], int) else float(v)
        except ValueError:
            raise KGCError(f"{spec!r}: parameter {k!r} must be a number, got {v!r}") from None
    return out


def load_synthetic(spec: str = "synthetic", **kwargs: Any) -> KGDataset:
    """The synthetic KG as a :class:`KGDataset` (parameters from ``spec`` ``synthetic:k=v,...`` and kwargs)."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise KGCError(f"synthetic: unknown parameter(s) {unknown} (known: {', '.join(DEFAULTS)})")
    params = {**DEFAULTS, **_parse_spec(spec), **kwargs}
    splits, rules = generate(**params)
    n, b = int(params["num_entities"]), int(params["num_base_relations"])
    width = len(str(n - 1))
    ent = [f"e{i:0{width}d}" for i in range(n)]
    rel = [f"base{i}" for i in range(b)] + [f"rule{k}" for k in range(len(rules))]
    # ids = positions of the raw names sorted over all splits (the data contract), computed without strings:
    # zero-padded entity names sort numerically; relation names are sorted explicitly.
    allf = np.concatenate(list(splits.values()))
    ent_present = np.unique(allf[:, 1:])
    rel_present = sorted(np.unique(allf[:, 0]).tolist(), key=lambda r: rel[r])
    ent_map = np.full(n, -1, dtype=np.int64)
    ent_map[ent_present] = np.arange(len(ent_present))
    rel_map = np.full(len(rel), -1, dtype=np.int64)
    rel_map[rel_present] = np.arange(len(rel_present))
    arrays = {s: np.column_stack([rel_map[a[:, 0]], ent_map[a[:, 1]], ent_map[a[:, 2]]]) for s, a in splits.items()}
    ents = [ent[i] for i in ent_present.tolist()]
    rels = [rel[r] for r in rel_present]
    fp = fingerprint_of({"kind": "synthetic", "generator_version": GENERATOR_VERSION, "params": params})
    meta = {
        "source": "synthetic",
        "params": params,
        "rules": [[rel[h], rel[a], rel[c]] for h, a, c in rules],
        "generator_version": GENERATOR_VERSION,
    }
    return KGDataset("synthetic", ents, rels, arrays, fp, meta)
