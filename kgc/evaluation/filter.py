"""Sparse index of all known true answers for filtered ranking.

A query's *key* is ``(label, target_role, (context entity, context role)...)``.
The filter of a query is the set of targets of every known query (from all
splits, by default train + valid + test) with the same key. For binary data
this is the classic filtered setting: ``(h, r, ?)`` is filtered by every ``t``
with ``(h, r, t)`` known, ``(t, r^-1, ?)`` by every known ``h``. For n-ary data
it is every fact with the same relation and the same entities at the other
positions (HypE protocol).

Keys are compressed column by column to dense ids (``np.unique`` over int64
codes ``prev_id * M + column_code``), which is exact (no hashing, no collisions)
and never overflows because ``prev_id`` is below the number of rows. Looking a
batch of queries up replays the same steps with ``np.searchsorted``. Memory is
O(#queries x max_arity) int64; no (queries x entities) mask is ever built.

The answers of a key include the query's own target whenever that query is part
of the index; the rank operations never filter the target itself.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from kgc.errors import KGCError
from kgc.evaluation.queries import LinkPredictionQueries

DEFAULT_FILTER_SPLITS = ("train", "valid", "test")


class FilterIndex:
    """CSR index ``key -> sorted unique true targets``."""

    def __init__(self, queries: LinkPredictionQueries, num_entities: int) -> None:
        self.num_entities = int(num_entities)
        self.max_arity = queries.max_arity
        self.is_binary = queries.is_binary
        self.num_relations = queries.num_relations
        self._role_base = self.max_arity + 1  # roles in [-1, max_arity)
        self._col_base = (self.num_entities + 1) * self._role_base
        target = queries.target.numpy()
        if len(queries) and (int(target.min()) < 0 or int(target.max()) >= self.num_entities):
            raise KGCError(f"filter index: a target entity id lies outside 0..{self.num_entities - 1}")
        if len(queries) * self._col_base >= 2**62:
            raise KGCError(
                f"filter index: {len(queries)} queries x {self.num_entities} entities is too large for int64 keys"
            )
        self._steps: list[np.ndarray] = []
        key = self._build_keys(queries)
        n_keys = len(self._steps[-1]) if self._steps else 0
        # unique (key, target) pairs, sorted by key then target
        pair = np.unique(key * self.num_entities + target)
        self._indices = pair % self.num_entities
        pair_key = pair // self.num_entities
        self._indptr = np.zeros(n_keys + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_key, minlength=n_keys), out=self._indptr[1:])

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset, splits=DEFAULT_FILTER_SPLITS) -> "FilterIndex":
        """Index over the given splits of ``dataset`` (default: whichever of train/valid/test it has)."""
        if tuple(splits) == DEFAULT_FILTER_SPLITS:
            splits = [s for s in splits if s in dataset.splits] or list(splits)
        parts = [LinkPredictionQueries.from_dataset(dataset, s) for s in splits]
        return cls(LinkPredictionQueries.cat(parts), dataset.num_entities)

    @classmethod
    def for_dataset(cls, dataset, splits=DEFAULT_FILTER_SPLITS) -> "FilterIndex":
        """Like :meth:`from_dataset`, memoised per dataset (fingerprint + split sizes), last 4 kept."""
        sizes = tuple((s, tuple(dataset.splits[s].shape)) for s in splits if s in dataset.splits)
        fp = getattr(dataset, "fingerprint", None)
        key = (fp if fp else id(dataset), tuple(splits), sizes, int(dataset.num_entities))
        hit = _CACHE.get(key)
        if hit is None:
            hit = cls.from_dataset(dataset, splits)
            _CACHE[key] = hit
            while len(_CACHE) > 4:
                _CACHE.popitem(last=False)
        else:
            _CACHE.move_to_end(key)
        return hit

    # ---- keys ----------------------------------------------------------------------
    def _first_code(self, q: LinkPredictionQueries) -> np.ndarray:
        return q.label.numpy() * self.max_arity + q.target_role.numpy()

    def _col_codes(self, q: LinkPredictionQueries, j: int) -> np.ndarray:
        ent = q.context[:, j].numpy()
        role = q.context_roles[:, j].numpy()
        return (ent + 1) * self._role_base + (role + 1)

    def _build_keys(self, q: LinkPredictionQueries) -> np.ndarray:
        code = self._first_code(q)
        uniq, key = np.unique(code, return_inverse=True)
        self._steps.append(uniq)
        for j in range(q.context.shape[1]):
            code = key.astype(np.int64) * self._col_base + self._col_codes(q, j)
            uniq, key = np.unique(code, return_inverse=True)
            self._steps.append(uniq)
        return key.astype(np.int64).reshape(-1)

    def _check_compatible(self, q: LinkPredictionQueries) -> None:
        if q.max_arity != self.max_arity:
            raise KGCError(f"filter index: queries have max_arity {q.max_arity}, the index {self.max_arity}")
        if len(q) == 0:
            return
        for name, t, lo, hi in (
            ("context entity", q.context, -1, self.num_entities),
            ("context role", q.context_roles, -1, self.max_arity),
            ("target role", q.target_role, 0, self.max_arity),
        ):
            if int(t.min()) < lo or int(t.max()) >= hi:
                raise KGCError(f"filter index: a query {name} lies outside {lo}..{hi - 1}")
        if int(q.label.min()) < 0:
            raise KGCError("filter index: a query has a negative relation label")

    def key_ids(self, q: LinkPredictionQueries) -> np.ndarray:
        """(Q,) key id of each query, -1 where the key is unknown to the index."""
        self._check_compatible(q)
        key = self._lookup(self._steps[0], self._first_code(q))
        for j in range(q.context.shape[1]):
            code = np.where(key >= 0, key * self._col_base + self._col_codes(q, j), -1)
            key = self._lookup(self._steps[j + 1], code, known=key >= 0)
        return key

    @staticmethod
    def _lookup(uniq: np.ndarray, code: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
        pos = np.searchsorted(uniq, code)
        pos_c = np.minimum(pos, max(len(uniq) - 1, 0))
        found = (pos < len(uniq)) & (uniq[pos_c] == code) if len(uniq) else np.zeros(code.shape, bool)
        if known is not None:
            found &= known
        return np.where(found, pos_c, -1).astype(np.int64)

    # ---- queries ---------------------------------------------------------------------
    def lookup(self, queries: LinkPredictionQueries) -> tuple[torch.Tensor, torch.Tensor]:
        """CSR ``(indptr (Q + 1,), indices (nnz,))`` int64 of every known true answer per query.

        Row ``i`` lists sorted unique entity ids (the query's own target included when
        the query's fact is in the index). Unknown keys give empty rows.
        """
        key = self.key_ids(queries)
        known = key >= 0
        k = np.where(known, key, 0)
        start = self._indptr[k]
        counts = np.where(known, self._indptr[k + 1] - start, 0)
        indptr = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        nnz = int(indptr[-1])
        offsets = np.repeat(start - indptr[:-1], counts)
        indices = self._indices[offsets + np.arange(nnz, dtype=np.int64)]
        return torch.from_numpy(indptr), torch.from_numpy(indices)

    def answers(self, queries: LinkPredictionQueries) -> list[np.ndarray]:
        """Per query the array of true answers (convenience; use :meth:`lookup` in loops)."""
        indptr, indices = self.lookup(queries)
        ip, ix = indptr.numpy(), indices.numpy()
        return [ix[ip[i] : ip[i + 1]] for i in range(len(queries))]

    def answers_for(self, relation: int, position: int, others) -> torch.Tensor:
        """True entities at 1-based ``position`` of ``relation`` given the other entities in order
        (sorted int64 ``(n,)``): ``answers_for(r, 2, [h])`` are the tails of ``(h, r, ?)``,
        ``answers_for(r, 1, [t])`` the heads of ``(?, r, t)``; n-ary facts alike."""
        others = [int(e) for e in others]
        k = len(others) + 1
        if not 1 <= int(position) <= k or k > self.max_arity:
            raise KGCError(f"position {position} with {len(others)} other entities: need 1 <= position <= "
                           f"{len(others) + 1} <= max_arity {self.max_arity}")
        ents = others[: position - 1] + [0] + others[position - 1 :]  # placeholder at the queried position
        fact = torch.tensor([[int(relation), *ents] + [-1] * (self.max_arity - k)], dtype=torch.int64)
        q = LinkPredictionQueries.from_facts(fact, self.num_relations, is_binary=self.is_binary,
                                             num_entities=self.num_entities)
        qpos = (1 - q.direction) if self.is_binary else q.direction  # 0-based queried position
        i = int((qpos == int(position) - 1).nonzero()[0, 0])
        _, indices = self.lookup(q[i : i + 1])
        return indices

    # ---- sizes -------------------------------------------------------------------------
    @property
    def num_keys(self) -> int:
        return len(self._indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self._indices.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self._indptr.nbytes + self._indices.nbytes + sum(s.nbytes for s in self._steps))

    def __repr__(self) -> str:
        return (f"FilterIndex(keys={self.num_keys}, answers={self.nnz}, entities={self.num_entities}, "
                f"max_arity={self.max_arity}, {self.nbytes / 2**20:.1f} MiB)")


def empty_filter(num_queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR with no entries (unfiltered / "raw" ranking)."""
    return torch.zeros(num_queries + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)


_CACHE: "OrderedDict[tuple, FilterIndex]" = OrderedDict()
