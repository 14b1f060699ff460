"""Bounded-depth BFS distances and shortest relational paths, many sources at once.

Edges are followed in their direction (every edge has its reverse, so this is
the undirected hop distance). Edges can be excluded two ways:

- ``exclude_fact (S,)``: per source, the edges of that train fact row (both
  directions; ``-1`` = none), e.g. the direct edge of the fact being predicted;
- ``edge_mask (M,) bool``: a global mask, ``False`` = edge unusable.

Example (a square 0-1-2-3-0 with relations 0 and 1)::

    >>> import numpy as np
    >>> from graph_algos.graph import KGraph
    >>> facts = np.array([[0, 0, 1], [0, 1, 2], [1, 2, 3], [1, 3, 0]])
    >>> g = KGraph.from_facts(facts, num_entities=5, num_relations=2)
    >>> bfs_distances(g, np.array([0, 4])).tolist()
    [[0, 1, 2, 1, -1], [-1, -1, -1, -1, 0]]
    >>> bfs_distances(g, np.array([0]), max_depth=1).tolist()
    [[0, 1, -1, 1, -1]]
    >>> length, ents, labs = shortest_paths(g, np.array([0, 0]), np.array([1, 1]), max_depth=3,
    ...                                     exclude_fact=np.array([-1, 0]))
    >>> length.tolist(), ents.tolist(), labs.tolist()
    ([1, 3], [[0, 1, -1, -1], [0, 3, 2, 1]], [[0, -1, -1], [3, 3, 2]])
"""

from __future__ import annotations

import numba
import numpy as np

from kgc.errors import KGCError
from graph_algos.graph import KGraph, _as_int64, check_nodes

__all__ = ["bfs_distances", "shortest_paths"]


@numba.njit(cache=True, nogil=True)
def _bfs(indptr, dst, fact, mask, s, excl, max_depth, target, dist, queue):
    """BFS from ``s`` writing ``dist`` (must be all -1); stops early once ``target`` is reached."""
    dist[s] = 0
    queue[0] = s
    head, tail = 0, 1
    if s == target:
        return tail
    while head < tail:
        v = queue[head]
        head += 1
        d = dist[v]
        if d >= max_depth:
            break
        for e in range(indptr[v], indptr[v + 1]):
            if not mask[e] or fact[e] == excl:
                continue
            u = dst[e]
            if dist[u] < 0:
                dist[u] = d + 1
                queue[tail] = u
                tail += 1
                if u == target:
                    return tail
    return tail


@numba.njit(cache=True, nogil=True, parallel=True)
def _bfs_many(indptr, dst, fact, mask, sources, excl, max_depth, out):
    n = indptr.shape[0] - 1
    for i in numba.prange(sources.shape[0]):
        queue = np.empty(n, np.int64)
        _bfs(indptr, dst, fact, mask, sources[i], excl[i], max_depth, -1, out[i], queue)


@numba.njit(cache=True, nogil=True)
def _paths(indptr, dst, src, label, fact, in_indptr, in_edges, mask, sources, targets, excl, max_depth, u,
           length, ents, labs):
    n = indptr.shape[0] - 1
    dist = np.full(n, -1, np.int32)
    queue = np.empty(n, np.int64)
    for i in range(sources.shape[0]):
        s, t = sources[i], targets[i]
        tail = _bfs(indptr, dst, fact, mask, s, excl[i], max_depth, t, dist, queue)
        d = dist[t]
        length[i] = d
        if d >= 0:
            v = t
            ents[i, d] = t
            for k in range(d, 0, -1):
                # choose a usable in-edge (w -> v) with dist[w] == k - 1
                cnt = 0
                for j in range(in_indptr[v], in_indptr[v + 1]):
                    e = in_edges[j]
                    if mask[e] and fact[e] != excl[i] and dist[src[e]] == k - 1:
                        cnt += 1
                pick = int(u[i, k - 1] * cnt)
                for j in range(in_indptr[v], in_indptr[v + 1]):
                    e = in_edges[j]
                    if mask[e] and fact[e] != excl[i] and dist[src[e]] == k - 1:
                        if pick == 0:
                            labs[i, k - 1] = label[e]
                            v = src[e]
                            ents[i, k - 1] = v
                            break
                        pick -= 1
        for j in range(tail):
            dist[queue[j]] = -1


@numba.njit(cache=True, nogil=True, parallel=True)
def _msbfs(indptr, nbr, mask, use_mask, sources, max_depth, out):
    """Bit-parallel multi-source BFS (64 sources per batch share one pass over the edges)."""
    n = indptr.shape[0] - 1
    S = sources.shape[0]
    nbatch = (S + 63) // 64
    for bi in numba.prange(nbatch):
        b0 = bi * 64
        nb = min(64, S - b0)
        seen = np.zeros(n, np.uint64)
        front = np.zeros(n, np.uint64)
        nxt = np.zeros(n, np.uint64)
        for i in range(nb):
            s = sources[b0 + i]
            bit = np.uint64(1) << np.uint64(i)
            seen[s] |= bit
            front[s] |= bit
            out[b0 + i, s] = 0
        d = 0
        active = True
        while active and d < max_depth:
            d += 1
            for v in range(n):
                fv = front[v]
                if fv == 0:
                    continue
                for e in range(indptr[v], indptr[v + 1]):
                    if use_mask and not mask[e]:
                        continue
                    nxt[nbr[e]] |= fv
            active = False
            for u in range(n):
                nw = nxt[u] & ~seen[u]
                nxt[u] = 0
                front[u] = nw
                if nw != 0:
                    active = True
                    seen[u] |= nw
                    for i in range(nb):
                        if (nw >> np.uint64(i)) & np.uint64(1):
                            out[b0 + i, u] = d


def _prep(g: KGraph, sources, exclude_fact, edge_mask, max_depth):
    sources = check_nodes(g, sources, "sources")
    if max_depth is None:
        max_depth = max(g.num_nodes, 1)
    if max_depth < 0:
        raise KGCError(f"max_depth: must be >= 0, got {max_depth}")
    if exclude_fact is None:
        excl = np.full(sources.shape[0], -1, np.int64)
    else:
        excl = np.ascontiguousarray(_as_int64(exclude_fact, "exclude_fact"))
        if excl.shape != sources.shape:
            raise KGCError(f"exclude_fact: expected shape {sources.shape}, got {excl.shape}")
    if edge_mask is None:
        mask = np.ones(g.num_edges, np.bool_)
    else:
        mask = np.ascontiguousarray(np.asarray(edge_mask, dtype=np.bool_))
        if mask.shape != (g.num_edges,):
            raise KGCError(f"edge_mask: expected shape ({g.num_edges},), got {mask.shape}")
    return sources, excl, mask, int(max_depth)


def bfs_distances(
    g: KGraph,
    sources,
    max_depth: int | None = None,
    exclude_fact=None,
    edge_mask=None,
) -> np.ndarray:
    """Hop distances ``(S, num_nodes)`` int32 from each of ``sources (S,)``; ``-1`` = farther than
    ``max_depth`` (``None`` = unbounded) or unreachable.

    Without ``exclude_fact`` this is a bit-parallel multi-source BFS (MS-BFS, Then et al.,
    VLDB 2014: one pass over the edges per level serves 64 sources); with it, one BFS per
    source (numba, parallel over sources)."""
    sources, excl, mask, max_depth = _prep(g, sources, exclude_fact, edge_mask, max_depth)
    out = np.full((sources.shape[0], g.num_nodes), -1, np.int32)
    if not sources.size:
        return out
    if exclude_fact is None or (excl < 0).all():
        # no per-source exclusion: 64 sources per pass over the edges; without an edge mask
        # the (smaller) simple view gives the same hop distances
        if edge_mask is None:
            _msbfs(g.simple_indptr, g.simple_indices, mask[:1], False, sources, max_depth, out)
        else:
            _msbfs(g.indptr, g.dst, mask, True, sources, max_depth, out)
    else:
        _bfs_many(g.indptr, g.dst, g.fact, mask, sources, excl, max_depth, out)
    return out


def shortest_paths(
    g: KGraph,
    sources,
    targets,
    max_depth: int,
    exclude_fact=None,
    edge_mask=None,
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shortest relational path per pair ``(sources[i], targets[i])`` of at most ``max_depth`` hops.

    Returns ``length (S,)`` (``-1`` = none within ``max_depth``, ``0`` when source == target),
    ``entities (S, max_depth + 1)`` (``entities[i, 0] = source``, ``entities[i, length] = target``)
    and ``labels (S, max_depth)`` (edge ``entities[i, k] -> entities[i, k+1]`` has label
    ``labels[i, k]``), both ``-1`` padded. The path is found by backtracking from the target
    over in-edges one hop closer to the source: with ``seed=None`` the first such edge in
    ``in_edges`` order (deterministic), otherwise a uniformly random one at each hop.
    """
    sources, excl, mask, max_depth = _prep(g, sources, exclude_fact, edge_mask, max_depth)
    targets = check_nodes(g, targets, "targets")
    if targets.shape != sources.shape:
        raise KGCError(f"targets: expected shape {sources.shape}, got {targets.shape}")
    S = sources.shape[0]
    if seed is None:
        u = np.zeros((S, max(max_depth, 1)))
    else:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        u = rng.random((S, max(max_depth, 1)))
    length = np.full(S, -1, np.int64)
    ents = np.full((S, max_depth + 1), -1, np.int64)
    labs = np.full((S, max_depth), -1, np.int64)
    if S:
        _paths(g.indptr, g.dst, g.src, g.label, g.fact, g.in_indptr, g.in_edges, mask, sources, targets,
               excl, max_depth, u, length, ents, labs)
    return length, ents, labs
