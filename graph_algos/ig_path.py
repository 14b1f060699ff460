"""Information-gain-guided path finder (DESIGN.md section 2, signal ``ig_path``).

For a train fact ``(h, r, t)`` (for an n-ary fact: ``h = e_1``, ``t = e_2``) with
**all of that fact's edges removed**, the answer set of a label path
``p = l_1 .. l_k`` is ``A(h, p)``, the entities reached from ``h`` by following
``l_1`` then ... then ``l_k``. Its information gain is
``IG(p) = log E - log |A(h, p)|`` (``E = g.num_nodes``).

The finder runs a beam search over paths of length ``<= K`` from ``h``:

- a partial path of length ``i`` is kept only while some entity of its answer
  set is within ``K - i`` hops of ``t`` (BFS from ``t``, computed once per tail
  entity; it ignores the exclusion, so it is a lower bound and never prunes a
  path that could still reach ``t``);
- each depth keeps the ``beam`` partial paths with the smallest answer sets
  (ties: parent's rank, then label id);
- every path whose answer set contains ``t`` is a candidate; the best candidate
  has the highest IG, then the shorter length, then the lowest *chain cost*
  (the minimum, over entity chains ``h -> x_1 -> ... -> t`` realising the path,
  of the summed out-degrees of the intermediates ``x_1..x_{k-1}``), then the
  lexicographically smallest label sequence.

With ``beam`` at least the number of candidates at every depth the search is
exhaustive and returns exactly the best path of a brute-force enumeration.
The returned entity chain is one minimum-cost chain realising the best path.

Answer sets are sparse frontiers (int64 node arrays deduplicated with a stamp
array); one expansion is a counting sort of the frontier's out-edges by label.
Facts are grouped by tail (the depth-``K-1`` BFS from ``t`` is the work facts
share; the head-side first step costs about 0.01 ms per fact on FB15K-237, so
grouping by head would not pay) and the groups run in parallel (numba prange).
The last step starts from ``t``'s in-edges (only labels entering ``t`` can
complete a path) when that is cheaper than scanning the frontier's out-edges.

Example (0 -r0-> 1 and 0 -r1-> 2 -r2-> 1; the fact r0(0, 1) is explained by r1, r2)::

    >>> import numpy as np
    >>> from graph_algos.graph import KGraph
    >>> facts = np.array([[0, 0, 1], [1, 0, 2], [2, 2, 1], [1, 0, 3]])
    >>> g = KGraph.from_facts(facts, num_entities=4, num_relations=3)
    >>> res = ig_paths(g, facts, K=3, beam=4)
    >>> res.length.tolist(), res.labels[0].tolist(), res.entities[0].tolist()
    ([2, 2, 2, -1], [1, 2, -1], [0, 2, 1, -1])
    >>> round(float(res.ig[0]), 4)      # log 4 - log |{1}|
    1.3863
    >>> bool(np.isnan(res.ig[3]))       # entity 3 is only linked by the fact r1(0, 3) itself
    True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from kgc.errors import KGCError
from graph_algos.graph import KGraph, _as_int64

__all__ = ["IGPathResult", "ig_paths", "cached_ig_paths"]


@dataclass
class IGPathResult:
    """Per fact: ``ig (F,)`` float64 (NaN = no path), ``length (F,)`` (-1 = none),
    ``labels (F, K)`` and ``entities (F, K + 1)`` int64, ``-1`` padded
    (``entities[i, 0] = h``, ``entities[i, length[i]] = t``), ``answer_size (F,)`` (-1 = none)."""

    ig: np.ndarray
    length: np.ndarray
    labels: np.ndarray
    entities: np.ndarray
    answer_size: np.ndarray


@numba.njit(cache=True, nogil=True, inline="always")
def _less(s1, n1, c1, lab1, s2, n2, c2, lab2):
    if s1 != s2:
        return s1 < s2
    if n1 != n2:
        return n1 < n2
    if c1 != c2:
        return c1 < c2
    for i in range(n1):
        if lab1[i] != lab2[i]:
            return lab1[i] < lab2[i]
    return False


@numba.njit(cache=True, nogil=True)
def _search(h, t, f, K, B, indptr, dst, label, fact, deg, in_indptr, in_edges, src, dmark, dval, gid, cnt,
            mstamp, mpos, stamp, best_lab, chain):
    """Beam search for one fact. Returns (best size or -1, best length); fills best_lab, chain."""
    # current beam (depth 0: the path of length 0 with answer set {h})
    nb = 1
    cur_lab = np.full((1, K), -1, np.int64)
    cur_ptr = np.zeros(2, np.int64)
    cur_ptr[1] = 1
    cur_nodes = np.full(1, h, np.int64)
    cur_cost = np.zeros(1, np.int64)
    best = np.array([-1, 0, 0], np.int64)  # size, length, chain cost
    touched = np.empty(cnt.shape[0], np.int64)
    for depth in range(K):
        rem = K - depth - 1  # hops left after this step
        c_b = np.empty(16, np.int64)
        c_l = np.empty(16, np.int64)
        c_s = np.empty(16, np.int64)
        nc = 0
        for b in range(nb):
            n0, n1 = cur_ptr[b], cur_ptr[b + 1]
            sumdeg = 0
            for j in range(n0, n1):
                sumdeg += deg[cur_nodes[j]]
            if rem == 0 and n1 - n0 > 1 and deg[t] < sumdeg:
                # last step: only labels with an edge x -> t (x in the set) can complete a path, so
                # start from t's in-edges and size just those labels' answer sets
                _finish(b, depth, h, t, f, K, cur_lab, cur_ptr, cur_nodes, cur_cost, indptr, dst, label, fact,
                        deg, in_indptr, in_edges, src, cnt, touched, mstamp, mpos, stamp, best, best_lab)
                continue
            if n1 - n0 == 1:
                # one entity: its edges are already grouped by label with sorted dst
                x = cur_nodes[n0]
                cx = cur_cost[n0] + (deg[x] if depth >= 1 else 0)
                e = indptr[x]
                e_end = indptr[x + 1]
                while e < e_end:
                    lb = label[e]
                    size = 0
                    feasible = False
                    tcost = -1
                    prev = -1
                    while e < e_end and label[e] == lb:
                        if fact[e] != f:
                            y = dst[e]
                            if y != prev:
                                prev = y
                                size += 1
                                if not feasible and dmark[y] == gid and dval[y] <= rem:
                                    feasible = True
                                if y == t:
                                    tcost = cx
                        e += 1
                    if size == 0:
                        continue
                    if tcost >= 0:
                        _offer(b, depth, lb, size, tcost, K, cur_lab, best, best_lab)
                    if feasible and rem > 0:
                        c_b, c_l, c_s, nc = _push(c_b, c_l, c_s, nc, b, lb, size)
                continue
            # --- counting sort of the set's usable out-edges by label
            ntouch = 0
            total = 0
            for j in range(n0, n1):
                x = cur_nodes[j]
                for e in range(indptr[x], indptr[x + 1]):
                    if fact[e] == f:
                        continue
                    lb = label[e]
                    if cnt[lb] == 0:
                        touched[ntouch] = lb
                        ntouch += 1
                    cnt[lb] += 1
                    total += 1
            if total == 0:
                continue
            tl = np.sort(touched[:ntouch])
            start = np.empty(ntouch + 1, np.int64)
            start[0] = 0
            for a in range(ntouch):
                start[a + 1] = start[a] + cnt[tl[a]]
                cnt[tl[a]] = start[a]  # reuse as write cursor
            bd = np.empty(total, np.int64)
            bc = np.empty(total, np.int64)
            for j in range(n0, n1):
                x = cur_nodes[j]
                cx = cur_cost[j] + (deg[x] if depth >= 1 else 0)
                for e in range(indptr[x], indptr[x + 1]):
                    if fact[e] == f:
                        continue
                    lb = label[e]
                    k = cnt[lb]
                    bd[k] = dst[e]
                    bc[k] = cx
                    cnt[lb] = k + 1
            for a in range(ntouch):
                cnt[tl[a]] = 0
            # --- one candidate per label
            for a in range(ntouch):
                lb = tl[a]
                stamp[0] += 1
                st = stamp[0]
                size = 0
                feasible = False
                tcost = -1
                for k in range(start[a], start[a + 1]):
                    y = bd[k]
                    if mstamp[y] != st:
                        mstamp[y] = st
                        size += 1
                        if not feasible and dmark[y] == gid and dval[y] <= rem:
                            feasible = True
                    if y == t and (tcost < 0 or bc[k] < tcost):
                        tcost = bc[k]
                if tcost >= 0:
                    _offer(b, depth, lb, size, tcost, K, cur_lab, best, best_lab)
                if feasible and rem > 0:
                    c_b, c_l, c_s, nc = _push(c_b, c_l, c_s, nc, b, lb, size)
        if nc == 0 or rem == 0:
            break
        # --- keep the B smallest answer sets (stable: parent rank, then label)
        order = np.argsort(c_s[:nc], kind="mergesort")
        nsel = min(B, nc)
        tot = 0
        for a in range(nsel):
            tot += c_s[order[a]]
        n_lab = np.full((nsel, K), -1, np.int64)
        n_ptr = np.zeros(nsel + 1, np.int64)
        n_nodes = np.empty(tot, np.int64)
        n_cost = np.empty(tot, np.int64)
        w = 0
        for a in range(nsel):
            b = c_b[order[a]]
            lb = c_l[order[a]]
            for i in range(depth):
                n_lab[a, i] = cur_lab[b, i]
            n_lab[a, depth] = lb
            stamp[0] += 1
            st = stamp[0]
            for j in range(cur_ptr[b], cur_ptr[b + 1]):
                x = cur_nodes[j]
                cx = cur_cost[j] + (deg[x] if depth >= 1 else 0)
                lo, hi = _label_range(label, indptr[x], indptr[x + 1], lb)
                for e in range(lo, hi):
                    if fact[e] != f:
                        y = dst[e]
                        if mstamp[y] != st:
                            mstamp[y] = st
                            mpos[y] = w
                            n_nodes[w] = y
                            n_cost[w] = cx
                            w += 1
                        elif cx < n_cost[mpos[y]]:
                            n_cost[mpos[y]] = cx
            n_ptr[a + 1] = w
        nb = nsel
        cur_lab, cur_ptr, cur_nodes, cur_cost = n_lab, n_ptr, n_nodes, n_cost
    if best[0] < 0:
        return -1, 0
    _chain(h, t, f, best_lab, best[1], indptr, dst, label, fact, deg, mstamp, mpos, stamp, chain)
    return best[0], best[1]


@numba.njit(cache=True, nogil=True)
def _push(c_b, c_l, c_s, nc, b, lb, size):
    """Append candidate (parent b, label lb, answer-set size), growing the arrays."""
    if nc == c_b.shape[0]:
        cap = 2 * nc
        n_b = np.empty(cap, np.int64)
        n_l = np.empty(cap, np.int64)
        n_s = np.empty(cap, np.int64)
        n_b[:nc] = c_b[:nc]
        n_l[:nc] = c_l[:nc]
        n_s[:nc] = c_s[:nc]
        c_b, c_l, c_s = n_b, n_l, n_s
    c_b[nc] = b
    c_l[nc] = lb
    c_s[nc] = size
    return c_b, c_l, c_s, nc + 1


@numba.njit(cache=True, nogil=True)
def _offer(b, depth, lb, size, tcost, K, cur_lab, best, best_lab):
    """Candidate = beam path b + label lb (answer set size, chain cost to t): keep it if better."""
    cur_lab[b, depth] = lb
    if best[0] < 0 or _less(size, depth + 1, tcost, cur_lab[b], best[0], best[1], best[2], best_lab):
        best[0] = size
        best[1] = depth + 1
        best[2] = tcost
        for i in range(K):
            best_lab[i] = cur_lab[b, i] if i <= depth else -1
    cur_lab[b, depth] = -1


@numba.njit(cache=True, nogil=True)
def _label_range(label, lo, hi, lb):
    """Edges lo:hi of one node are sorted by label: the sub-range with label lb."""
    a, z = lo, hi
    while a < z:
        mid = (a + z) // 2
        if label[mid] < lb:
            a = mid + 1
        else:
            z = mid
    e = a
    while e < hi and label[e] == lb:
        e += 1
    return a, e


@numba.njit(cache=True, nogil=True)
def _finish(b, depth, h, t, f, K, cur_lab, cur_ptr, cur_nodes, cur_cost, indptr, dst, label, fact, deg,
            in_indptr, in_edges, src, cnt, touched, mstamp, mpos, stamp, best, best_lab):
    stamp[0] += 1
    st = stamp[0]
    for j in range(cur_ptr[b], cur_ptr[b + 1]):
        mstamp[cur_nodes[j]] = st
        mpos[cur_nodes[j]] = j
    # labels of usable edges x -> t with x in the set; cnt[l] = 1 + min chain cost to t
    ntouch = 0
    for k in range(in_indptr[t], in_indptr[t + 1]):
        e = in_edges[k]
        x = src[e]
        if fact[e] == f or mstamp[x] != st:
            continue
        c = cur_cost[mpos[x]] + (deg[x] if depth >= 1 else 0) + 1
        lb = label[e]
        if cnt[lb] == 0:
            touched[ntouch] = lb
            ntouch += 1
            cnt[lb] = c
        elif c < cnt[lb]:
            cnt[lb] = c
    if ntouch == 0:
        return
    tl = np.sort(touched[:ntouch])
    for a in range(ntouch):
        lb = tl[a]
        tcost = cnt[lb] - 1
        cnt[lb] = 0
        stamp[0] += 1
        st = stamp[0]
        size = 0
        for j in range(cur_ptr[b], cur_ptr[b + 1]):
            x = cur_nodes[j]
            lo, hi = _label_range(label, indptr[x], indptr[x + 1], lb)
            for e in range(lo, hi):
                if fact[e] != f:
                    y = dst[e]
                    if mstamp[y] != st:
                        mstamp[y] = st
                        size += 1
        _offer(b, depth, lb, size, tcost, K, cur_lab, best, best_lab)


@numba.njit(cache=True, nogil=True)
def _chain(h, t, f, labs, L, indptr, dst, label, fact, deg, mstamp, mpos, stamp, chain):
    """Min-cost entity chain h -> ... -> t realising labels[:L] (forward DP, then backtrack)."""
    # layers stored flat: nodes, cost, parent index (into the flat arrays)
    cap = 64
    nodes = np.empty(cap, np.int64)
    cost = np.empty(cap, np.int64)
    par = np.empty(cap, np.int64)
    nodes[0] = h
    cost[0] = 0
    par[0] = -1
    lstart, lend = 0, 1
    for i in range(L):
        lb = labs[i]
        stamp[0] += 1
        st = stamp[0]
        w = lend
        for j in range(lstart, lend):
            x = nodes[j]
            cx = cost[j] + (deg[x] if i >= 1 else 0)
            for e in range(indptr[x], indptr[x + 1]):
                if label[e] != lb or fact[e] == f:
                    continue
                y = dst[e]
                if mstamp[y] != st:
                    if w == cap:
                        cap *= 2
                        n2 = np.empty(cap, np.int64)
                        c2 = np.empty(cap, np.int64)
                        p2 = np.empty(cap, np.int64)
                        n2[:w] = nodes[:w]
                        c2[:w] = cost[:w]
                        p2[:w] = par[:w]
                        nodes, cost, par = n2, c2, p2
                    mstamp[y] = st
                    mpos[y] = w
                    nodes[w] = y
                    cost[w] = cx
                    par[w] = j
                    w += 1
                elif cx < cost[mpos[y]]:
                    cost[mpos[y]] = cx
                    par[mpos[y]] = j
        lstart, lend = lend, w
    j = -1
    for k in range(lstart, lend):
        if nodes[k] == t:
            j = k
    for i in range(L, -1, -1):
        chain[i] = nodes[j]
        j = par[j]


@numba.njit(cache=True, nogil=True)
def _dist_from(t, depth, indptr, dst, dmark, dval, gid, queue):
    dmark[t] = gid
    dval[t] = 0
    queue[0] = t
    head, tail = 0, 1
    while head < tail:
        v = queue[head]
        head += 1
        d = dval[v]
        if d >= depth:
            break
        for e in range(indptr[v], indptr[v + 1]):
            u = dst[e]
            if dmark[u] != gid:
                dmark[u] = gid
                dval[u] = d + 1
                queue[tail] = u
                tail += 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _run(heads, tails, fids, gptr, nchunks, K, B, num_labels, indptr, dst, label, fact, deg, in_indptr, in_edges,
         src, out_size, out_len, out_lab, out_ent):
    n = indptr.shape[0] - 1
    ngroups = gptr.shape[0] - 1
    for c in numba.prange(nchunks):
        dmark = np.full(n, -1, np.int64)
        dval = np.zeros(n, np.int64)
        queue = np.empty(n, np.int64)
        mstamp = np.zeros(n, np.int64)
        mpos = np.zeros(n, np.int64)
        stamp = np.zeros(1, np.int64)
        cnt = np.zeros(num_labels, np.int64)
        best_lab = np.empty(K, np.int64)
        chain = np.empty(K + 1, np.int64)
        g0 = (ngroups * c) // nchunks
        g1 = (ngroups * (c + 1)) // nchunks
        for gi in range(g0, g1):
            t = tails[gptr[gi]]
            _dist_from(t, K - 1, indptr, dst, dmark, dval, gi, queue)
            for i in range(gptr[gi], gptr[gi + 1]):
                size, L = _search(heads[i], t, fids[i], K, B, indptr, dst, label, fact, deg, in_indptr, in_edges,
                                  src, dmark, dval, gi, cnt, mstamp, mpos, stamp, best_lab, chain)
                out_size[i] = size
                out_len[i] = L if size >= 0 else -1
                if size >= 0:
                    for k in range(L):
                        out_lab[i, k] = best_lab[k]
                    for k in range(L + 1):
                        out_ent[i, k] = chain[k]


def ig_paths(
    g: KGraph,
    facts,
    fact_ids=None,
    K: int = 3,
    beam: int = 4,
    num_chunks: int | None = None,
) -> IGPathResult:
    """Best IG path for train facts.

    ``facts (N, 1 + A)``: the train fact array ``g`` was built from (row ids are
    ``g.fact`` ids). ``fact_ids (F,)``: which rows to solve (default: all), in the
    output order. ``K``: maximal path length; ``beam``: paths kept per depth.
    """
    f = _as_int64(facts, "facts")
    if f.ndim != 2 or f.shape[1] < 3:
        raise KGCError(f"facts: expected shape (N, 1 + max_arity >= 3), got {tuple(f.shape)}")
    if K < 1:
        raise KGCError(f"K: must be >= 1, got {K}")
    if beam < 1:
        raise KGCError(f"beam: must be >= 1, got {beam}")
    if g.num_edges and int(g.fact.max()) >= f.shape[0]:
        raise KGCError(f"facts: has {f.shape[0]} rows but the graph was built from more")
    ids = np.arange(f.shape[0], dtype=np.int64) if fact_ids is None else _as_int64(fact_ids, "fact_ids")
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= f.shape[0])):
        raise KGCError(f"fact_ids: expected a 1-D array of rows in [0, {f.shape[0]})")
    heads, tails = f[ids, 1], f[ids, 2]
    if ids.size and (heads.min() < 0 or tails.min() < 0 or max(heads.max(), tails.max()) >= g.num_nodes):
        raise KGCError("facts: head/tail entity ids out of the graph's range")
    F = ids.shape[0]
    order = np.argsort(tails, kind="stable")
    h_s, t_s, f_s = heads[order], tails[order], ids[order]
    bounds = np.flatnonzero(np.diff(t_s)) + 1
    gptr = np.concatenate([[0], bounds, [F]]).astype(np.int64) if F else np.zeros(1, np.int64)
    if num_chunks is None:
        num_chunks = max(1, min(len(gptr) - 1, numba.get_num_threads() * 16))
    size = np.full(F, -1, np.int64)
    length = np.full(F, -1, np.int64)
    labs = np.full((F, K), -1, np.int64)
    ents = np.full((F, K + 1), -1, np.int64)
    if F:
        _run(np.ascontiguousarray(h_s), np.ascontiguousarray(t_s), np.ascontiguousarray(f_s), gptr, int(num_chunks),
             int(K), int(beam), max(g.num_labels, 1), g.indptr, g.dst, g.label, g.fact, g.out_degree,
             g.in_indptr, g.in_edges, g.src, size, length, labs, ents)
    inv = np.empty(F, np.int64)
    inv[order] = np.arange(F)
    size, length, labs, ents = size[inv], length[inv], labs[inv], ents[inv]
    ig = np.full(F, np.nan)
    ok = size > 0
    ig[ok] = np.log(g.num_nodes) - np.log(size[ok])
    return IGPathResult(ig, length, labs, ents, size)


def cached_ig_paths(
    g: KGraph,
    facts,
    K: int = 3,
    beam: int = 4,
    cache_dir: str | Path | None = None,
) -> IGPathResult:
    """:func:`ig_paths` for all facts, cached as ``.npz`` keyed by graph fingerprint + params.

    Default ``cache_dir``: ``$KGC_HOME/cache/ig_path``. Writes are atomic.
    """
    from kgc.utils.io import atomic_write, kgc_home

    f = _as_int64(facts, "facts")
    key_src = json.dumps({"graph": g.fingerprint, "facts": hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest(),
                          "K": int(K), "beam": int(beam), "version": 1}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
    folder = Path(cache_dir) if cache_dir is not None else kgc_home() / "cache" / "ig_path"
    path = folder / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return IGPathResult(z["ig"], z["length"], z["labels"], z["entities"], z["answer_size"])
    res = ig_paths(g, f, K=K, beam=beam)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, ig=res.ig, length=res.length, labels=res.labels, entities=res.entities,
                 answer_size=res.answer_size)
    return res
