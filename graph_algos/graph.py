"""KGraph: the CSR relational graph every algorithm in ``graph_algos`` runs on.

A :class:`KGraph` is built from **train** facts only (``facts`` rows are
``[relation, e_1, ..., e_k, -1, ...]``, the ``kgc.data`` layout) and stores the
out-adjacency in CSR form, sorted by ``(src, label, dst, fact)``:

- ``indptr (num_nodes + 1,)``: out-edges of node ``v`` are ``indptr[v]:indptr[v+1]``
- ``src, dst, label, fact (M,)``: endpoints, label and the row index of the
  train fact that produced the edge (used to exclude a fact's own edges).

Edge labels (clique expansion of each fact; ``R = num_relations``, ``A =
max_arity``): a fact ``r(e_1..e_k)`` yields one edge ``e_i -> e_j`` for every
ordered pair of roles ``i != j`` (0-based roles, ``i, j < k``) with label

- ``(i, j) == (0, 1)``: ``r``                      (the relation itself)
- ``(i, j) == (1, 0)``: ``r + R``                  (its inverse, ``r^-1``)
- otherwise:          ``2R + p * R + r`` where ``p`` enumerates the remaining
  ordered pairs of ``range(A)`` in lexicographic order, i.e. for ``A = 3``:
  ``p = 0: (0, 2), 1: (1, 2), 2: (2, 0), 3: (2, 1)``.

So ``num_labels = R * A * (A - 1)`` (``2R`` for binary KGs) and
``label_table[l] = [relation, from_role, to_role]``. Every edge has its reverse
edge (same fact, swapped roles), so the graph is symmetric as an unlabelled
graph. Self-loops (``e_i == e_j``) and parallel edges are kept.

The *simple view* (``simple_indptr``, ``simple_indices``) is the undirected
simple graph on the same nodes: one edge ``{u, v}`` per adjacent pair ``u != v``
(self-loops dropped), neighbours sorted. It backs clustering/degree.

Example::

    >>> import numpy as np
    >>> facts = np.array([[0, 0, 1], [1, 1, 2], [0, 2, 2]])   # r0(0,1), r1(1,2), r0(2,2)
    >>> g = KGraph.from_facts(facts, num_entities=4, num_relations=2)
    >>> g.num_nodes, g.num_edges, g.num_labels
    (4, 6, 4)
    >>> g.indptr.tolist()
    [0, 1, 3, 6, 6]
    >>> g.dst.tolist(), g.label.tolist(), g.fact.tolist()
    ([1, 2, 0, 2, 2, 1], [0, 1, 2, 0, 2, 3], [0, 1, 0, 2, 2, 1])
    >>> g.label_names_for(["a", "b"])
    ['a', 'b', 'a^-1', 'b^-1']
    >>> g.simple_indptr.tolist(), g.simple_indices.tolist()
    ([0, 1, 3, 4, 4], [1, 0, 2, 1])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from kgc.errors import KGCError

__all__ = ["KGraph", "role_pairs"]


def role_pairs(max_arity: int) -> list[tuple[int, int]]:
    """Ordered role pairs in label order: ``(0,1), (1,0)``, then the rest lexicographically.

    ``label = k * R + r`` for the ``k``-th pair of this list.

    >>> role_pairs(3)
    [(0, 1), (1, 0), (0, 2), (1, 2), (2, 0), (2, 1)]
    """
    rest = [(i, j) for i in range(max_arity) for j in range(max_arity) if i != j and {i, j} != {0, 1}]
    return [(0, 1), (1, 0)] + rest


def _as_int64(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise KGCError(f"{name}: expected an integer array, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


@dataclass(eq=False)
class KGraph:
    """CSR out-adjacency of a relational (possibly n-ary) graph; see the module docstring."""

    num_nodes: int
    num_relations: int
    max_arity: int
    indptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    label: np.ndarray
    fact: np.ndarray
    label_names: list[str] | None = field(default=None)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_facts(
        cls,
        facts,
        num_entities: int,
        num_relations: int,
        relation_names: list[str] | None = None,
    ) -> "KGraph":
        """Build the graph from ``facts (N, 1 + A)`` rows ``[r, e_1..e_k, -1 pad]`` (numpy or torch).

        Raises :class:`kgc.KGCError` on a wrong shape, ids out of range, fewer than
        two entities in a row, or a ``-1`` followed by an entity.
        """
        f = _as_int64(facts, "facts")
        if f.ndim != 2 or f.shape[1] < 3:
            raise KGCError(f"facts: expected shape (N, 1 + max_arity >= 3), got {tuple(f.shape)}")
        if num_entities < 0 or num_relations < 0:
            raise KGCError("num_entities/num_relations must be non-negative")
        n, width = f.shape
        A = width - 1
        rel, ents = f[:, 0], f[:, 1:]
        if n:
            bad = np.flatnonzero((rel < 0) | (rel >= num_relations))
            if bad.size:
                raise KGCError(f"facts row {bad[0]}: relation {rel[bad[0]]} not in [0, {num_relations})")
            bad = np.flatnonzero(((ents < -1) | (ents >= num_entities)).any(1))
            if bad.size:
                raise KGCError(f"facts row {bad[0]}: entity id out of range [0, {num_entities}) (pad is -1)")
            pad = ents < 0
            if pad[:, :2].any():
                row = np.flatnonzero(pad[:, :2].any(1))[0]
                raise KGCError(f"facts row {row}: needs at least two entities")
            if (pad[:, :-1] & ~pad[:, 1:]).any():
                row = np.flatnonzero((pad[:, :-1] & ~pad[:, 1:]).any(1))[0]
                raise KGCError(f"facts row {row}: entity after -1 padding")
        arity = (ents >= 0).sum(1)
        srcs, dsts, labs, fids = [], [], [], []
        rows = np.arange(n, dtype=np.int64)
        for k, (i, j) in enumerate(role_pairs(A)):
            m = arity > max(i, j)
            srcs.append(ents[m, i])
            dsts.append(ents[m, j])
            labs.append(rel[m] + k * num_relations)
            fids.append(rows[m])
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int64)
        lab = np.concatenate(labs) if labs else np.zeros(0, np.int64)
        fid = np.concatenate(fids) if fids else np.zeros(0, np.int64)
        order = np.lexsort((fid, dst, lab, src))
        src, dst, lab, fid = src[order], dst[order], lab[order], fid[order]
        indptr = np.zeros(num_entities + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=num_entities), out=indptr[1:])
        g = cls(int(num_entities), int(num_relations), int(A), indptr, src, dst, lab, fid)
        if relation_names is not None:
            g.label_names = g.label_names_for(relation_names)
        return g

    @classmethod
    def from_dataset(cls, ds, split: str = "train") -> "KGraph":
        """Graph of one split of a ``kgc.data`` dataset (train for every pretraining signal)."""
        return cls.from_facts(ds.splits[split], ds.num_entities, ds.num_relations, list(ds.relation_names))

    # ------------------------------------------------------------- properties
    @property
    def num_edges(self) -> int:
        return int(self.dst.shape[0])

    @property
    def num_labels(self) -> int:
        return self.num_relations * self.max_arity * (self.max_arity - 1)

    @cached_property
    def label_table(self) -> np.ndarray:
        """``(num_labels, 3)`` int64 rows ``[relation, from_role, to_role]``."""
        R = self.num_relations
        pairs = np.array(role_pairs(self.max_arity), dtype=np.int64)
        lab = np.arange(self.num_labels, dtype=np.int64)
        k = lab // R if R else lab
        return np.stack([lab % R if R else lab, pairs[k, 0], pairs[k, 1]], axis=1)

    def label_names_for(self, relation_names) -> list[str]:
        """Names of all labels: ``r``, ``r^-1`` and ``r[i->j]`` for the other role pairs."""
        names = list(relation_names)
        if len(names) != self.num_relations:
            raise KGCError(f"relation_names: expected {self.num_relations} names, got {len(names)}")
        out = []
        for k, (i, j) in enumerate(role_pairs(self.max_arity)):
            suffix = "" if k == 0 else "^-1" if k == 1 else f"[{i}->{j}]"
            out.extend(n + suffix for n in names)
        return out

    @cached_property
    def out_degree(self) -> np.ndarray:
        """``(num_nodes,)`` number of out-edges (multi-graph, inverses included)."""
        return np.diff(self.indptr)

    @cached_property
    def _in(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.dst, kind="stable")
        indptr = np.zeros(self.num_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.dst, minlength=self.num_nodes), out=indptr[1:])
        return indptr, order.astype(np.int64)

    @property
    def in_indptr(self) -> np.ndarray:
        """``(num_nodes + 1,)``: in-edges of ``v`` are ``in_edges[in_indptr[v]:in_indptr[v+1]]``."""
        return self._in[0]

    @property
    def in_edges(self) -> np.ndarray:
        """``(M,)`` edge ids sorted by ``dst`` (stable, so by ``(dst, src, label, fact)``)."""
        return self._in[1]

    @cached_property
    def _simple(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.num_nodes
        keep = self.src != self.dst
        a, b = self.src[keep], self.dst[keep]
        key = np.unique(np.concatenate([a * n + b, b * n + a]))
        s, d = key // max(n, 1), key % max(n, 1)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(s, minlength=n), out=indptr[1:])
        return indptr, d

    @property
    def simple_indptr(self) -> np.ndarray:
        return self._simple[0]

    @property
    def simple_indices(self) -> np.ndarray:
        return self._simple[1]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the graph arrays (cache key for derived results)."""
        h = hashlib.sha256()
        h.update(np.array([self.num_nodes, self.num_relations, self.max_arity], np.int64).tobytes())
        for a in (self.indptr, self.dst, self.label, self.fact):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()

    def fact_edges(self, fact: int) -> np.ndarray:
        """Edge ids produced by train fact row ``fact`` (both directions)."""
        return np.flatnonzero(self.fact == fact)

    def __repr__(self) -> str:
        return (
            f"KGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"num_relations={self.num_relations}, max_arity={self.max_arity})"
        )


def check_nodes(g: KGraph, nodes, name: str) -> np.ndarray:
    """Validate a 1-D array of node ids (numpy or torch) -> int64 numpy."""
    a = _as_int64(nodes, name)
    if a.ndim != 1:
        raise KGCError(f"{name}: expected a 1-D array, got shape {tuple(a.shape)}")
    if a.size and (a.min() < 0 or a.max() >= g.num_nodes):
        bad = a[(a < 0) | (a >= g.num_nodes)][0]
        raise KGCError(f"{name}: node id {bad} not in [0, {g.num_nodes})")
    return np.ascontiguousarray(a)
