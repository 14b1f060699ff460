"""Dataset statistics and audit (``python -m kgc.data stats``).

Counts follow the offline mirror's ``MANIFEST.json``: entities and relations
are distinct ids over all splits, facts are rows per split.  The audit checks
what careful corpus builders check:

- duplicate facts within a split and across splits;
- self-loops (binary ``h == t``) and facts with a repeated entity (any arity);
- valid/test facts whose reverse ``(t, r, h)`` is in train (binary only;
  WN18RR test: 1,086; FB15k-237: 0), and those whose entity pair is linked
  in train by any relation, either direction;
- entities/relations of valid/test that never occur in train, and the facts
  that contain one (WN18RR test: 209 entities).  They are kept: they are
  ranking candidates, without train edges.

All counts are vectorised numpy over the int64 split arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kgc.data.dataset import KGDataset
from kgc.data.registry import SPLITS


def _row_ids(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Integer id per distinct row across all ``arrays`` (same row -> same id).

    Columns are folded one at a time into a dense int64 key (sort-based unique on
    1-D keys; no row-wise structured sort), so it stays fast for any arity.
    """
    allr = np.concatenate(arrays, axis=0).astype(np.int64)
    if len(allr) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in arrays]
    key = np.zeros(len(allr), dtype=np.int64)
    for j in range(allr.shape[1]):
        col = allr[:, j] + 1  # -1 pad -> 0
        key = key * (int(col.max()) + 1) + col
        key = np.searchsorted(_uniq(key), key).astype(np.int64)
    out, start = [], 0
    for a in arrays:
        out.append(key[start : start + len(a)])
        start += len(a)
    return out


def _uniq(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-D array (sort-based; numpy's hash path is slow on large keys)."""
    a = np.sort(np.asarray(a).reshape(-1))
    if len(a) == 0:
        return a
    return a[np.concatenate(([True], a[1:] != a[:-1]))]


def _isin(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Boolean mask of ``a``'s entries that occur in ``ref`` (binary search in the sorted distinct ``ref``)."""
    ref = _uniq(ref)
    a = np.asarray(a)
    if len(ref) == 0:
        return np.zeros(a.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(ref, a), len(ref) - 1)
    return ref[idx] == a


def _pair_keys(h: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    return h.astype(np.int64) * n + t.astype(np.int64)


def compute_stats(ds: KGDataset) -> dict[str, Any]:
    """Counts and audit of ``ds`` as a JSON-ready dict (integers; see module docstring)."""
    arr = {s: ds.splits[s].numpy() for s in SPLITS}
    n_e = max(ds.num_entities, 1)
    n_r = max(ds.num_relations, 1)
    out: dict[str, Any] = {
        "name": ds.name,
        "fingerprint": ds.fingerprint,
        "entities": ds.num_entities,
        "relations": ds.num_relations,
        "max_arity": ds.max_arity,
        "facts": {s: int(len(arr[s])) for s in SPLITS},
    }
    out["arity_histogram"] = {
        s: {str(k): int(v) for k, v in enumerate(np.bincount((arr[s][:, 1:] >= 0).sum(1))) if v}
        for s in SPLITS
    }
    train = arr["train"]
    train_ents = _uniq(train[:, 1:][train[:, 1:] >= 0])
    train_rels = _uniq(train[:, 0])
    out["entities_in_train"] = int(len(train_ents))
    unseen: dict[str, Any] = {}
    for s in ("valid", "test"):
        a = arr[s]
        ents = a[:, 1:]
        mask_new = (ents >= 0) & ~_isin(ents, train_ents)
        unseen[s] = {
            "entities_not_in_train": int(len(_uniq(ents[mask_new]))),
            "facts_with_an_entity_not_in_train": int(mask_new.any(1).sum()),
            "relations_not_in_train": int((~_isin(_uniq(a[:, 0]), train_rels)).sum()),
        }
    out["unseen_in_train"] = unseen

    # duplicates
    ids = _row_ids([arr[s] for s in SPLITS])
    within = {s: int(len(i) - len(_uniq(i))) for s, i in zip(SPLITS, ids)}
    across = {}
    for a_i, b_i in ((0, 1), (0, 2), (1, 2)):
        across[f"{SPLITS[a_i]}_{SPLITS[b_i]}"] = int(_isin(_uniq(ids[b_i]), ids[a_i]).sum())
    out["duplicates"] = {"within": within, "across": across, "total": int(sum(within.values()) + sum(across.values()))}

    # repeated entities / self-loops
    def repeated(a: np.ndarray) -> int:
        if len(a) == 0:
            return 0
        e = np.sort(np.where(a[:, 1:] >= 0, a[:, 1:], -np.arange(1, a.shape[1])[None, :] - 1), axis=1)
        return int((e[:, 1:] == e[:, :-1]).any(1).sum())

    out["facts_with_a_repeated_entity"] = {s: repeated(arr[s]) for s in SPLITS}
    if ds.is_binary:
        out["self_loops"] = {s: int((arr[s][:, 1] == arr[s][:, 2]).sum()) for s in SPLITS}
        train_keys = (train[:, 1].astype(np.int64) * n_r + train[:, 0]) * n_e + train[:, 2]
        pair_fwd = _pair_keys(train[:, 1], train[:, 2], n_e)
        pairs = np.concatenate([pair_fwd, _pair_keys(train[:, 2], train[:, 1], n_e)])
        rev, linked = {}, {}
        for s in ("valid", "test"):
            a = arr[s]
            rev_keys = (a[:, 2].astype(np.int64) * n_r + a[:, 0]) * n_e + a[:, 1]
            rev[s] = int(_isin(rev_keys, train_keys).sum())
            linked[s] = int(_isin(_pair_keys(a[:, 1], a[:, 2], n_e), pairs).sum())
        out["reverse_in_train"] = rev
        out["entity_pair_linked_in_train"] = linked
    else:
        out["self_loops"] = None
        out["reverse_in_train"] = None
        out["entity_pair_linked_in_train"] = None
    return out


def format_stats(st: dict[str, Any]) -> str:
    """Human-readable multi-line report of :func:`compute_stats` output."""
    f = st["facts"]
    lines = [
        f"dataset      {st['name']}  (fingerprint {st['fingerprint'][:12]})",
        f"entities     {st['entities']:,}  (in train: {st['entities_in_train']:,})",
        f"relations    {st['relations']:,}",
        f"max arity    {st['max_arity']}",
        f"facts        train {f['train']:,} / valid {f['valid']:,} / test {f['test']:,}",
    ]
    if st["max_arity"] > 2:
        for s in SPLITS:
            hist = ", ".join(f"{k}: {v:,}" for k, v in st["arity_histogram"][s].items())
            lines.append(f"arity {s:<6} {hist}")
    lines.append("audit")
    for s in ("valid", "test"):
        u = st["unseen_in_train"][s]
        lines.append(f"  {s:<5} entities unseen in train {u['entities_not_in_train']:,} "
                     f"(in {u['facts_with_an_entity_not_in_train']:,} facts), "
                     f"relations unseen in train {u['relations_not_in_train']:,}")
    d = st["duplicates"]
    lines.append(f"  duplicate facts: within {d['within']}, across {d['across']}")
    if st["self_loops"] is not None:
        lines.append(f"  self-loops: {st['self_loops']}")
        lines.append(f"  valid/test facts whose reverse (t, r, h) is in train: {st['reverse_in_train']}")
        lines.append(f"  valid/test facts whose entity pair is linked in train: {st['entity_pair_linked_in_train']}")
    lines.append(f"  facts with a repeated entity: {st['facts_with_a_repeated_entity']}")
    return "\n".join(lines)
