"""Benchmark graph_algos against straightforward networkx / pure-Python implementations, same process.

    python benchmarks/graph_algos.py            # FB15K-237, 200 seeds, ig_path over all 272,115 train facts
    python benchmarks/graph_algos.py --quick    # CI smoke run: 20 seeds, ig_path on 2,000 facts
    python benchmarks/graph_algos.py --dataset wn18rr --seeds 100

Every row times our function and the baseline on the same seeds and prints the ratio
baseline / ours. Baselines (networkx graph built from the same train facts, excluded from timings):

- bfs            nx.single_source_shortest_path_length(G, s) per seed (unbounded)
- shortest_path  nx.shortest_path(G, s, t) per pair, our shortest_paths(max_depth=K) (same pairs)
- khop           nx.single_source_shortest_path_length(G, c, cutoff=k) per centre, unlimited budget;
                 also nx.ego_graph(G, c, radius=k) (the test reference)
- clustering     nx.clustering(G) on all entities (--quick: on the seeds only, scaled to all entities)
- random_walk    Python loop, random.choice over each node's out-edge list, per step
- ig_path        per-fact Python sketch of DESIGN.md (dict-of-sets frontiers, beam 4, K=3,
                 BFS-distance pruning from t via networkx) on a sample of facts; ratio per fact

Numba functions are compiled/loaded once before timing. The machine load (1-min load average)
is printed with the results: on the shared 2-core box timings scale with it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import networkx as nx  # noqa: E402

import graph_algos as ga  # noqa: E402


def _time(fn, repeat=1):
    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _naive_walks(adj, starts, length, rng):
    out = []
    for s in starts:
        walk, v = [s], s
        for _ in range(length):
            nbrs = adj[v]
            if not nbrs:
                break
            lab, v = rng.choice(nbrs)
            walk.extend((lab, v))
        out.append(walk)
    return out


def _naive_ig(G, ladj, E, h, r, t, R, K=3, beam=4):
    """DESIGN.md's naive sketch: Python sets per step, smallest answer sets kept, pruning by distance to t."""
    dist = nx.single_source_shortest_path_length(G, t, cutoff=K - 1)
    banned = {(h, r, t), (t, r + R, h)}

    def step(A, lab):
        out = set()
        for x in A:
            for y in ladj[x].get(lab, ()):
                if (x, lab, y) not in banned:
                    out.add(y)
        return out

    beams = [((), {h})]
    best = None
    for depth in range(K):
        rem = K - depth - 1
        cands = []
        for path, A in beams:
            labs = {lab for x in A for lab in ladj[x]}
            for lab in sorted(labs):
                B = step(A, lab)
                if not B:
                    continue
                p = path + (lab,)
                if t in B and (best is None or (len(B), len(p)) < best[:2]):
                    best = (len(B), len(p), p)
                if rem and any(dist.get(y, K) <= rem for y in B):
                    cands.append((len(B), p, B))
        cands.sort(key=lambda c: c[0])
        beams = [(p, B) for _, p, B in cands[:beam]]
        if not beams:
            break
    return None if best is None else (math.log(E) - math.log(best[0]), best[2])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fb15k237")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="CI smoke run (small sizes)")
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--ig-facts", type=int, default=None, help="facts for our ig_path wall time (default: all)")
    ap.add_argument("--ig-naive", type=int, default=None, help="facts for the naive ig_path baseline")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds = min(args.seeds, 20)
    ig_facts = args.ig_facts if args.ig_facts is not None else (2000 if args.quick else None)
    ig_naive = args.ig_naive if args.ig_naive is not None else (20 if args.quick else 200)

    if "KGC_DATA_MIRROR" not in os.environ:
        mirror = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "datasets")
        if os.path.isdir(mirror):
            os.environ["KGC_DATA_MIRROR"] = os.path.abspath(mirror)
    from kgc.data import load_dataset

    ds = load_dataset(args.dataset)
    facts = ds.splits["train"].numpy()
    t_graph, g = _time(lambda: ga.KGraph.from_dataset(ds))
    n = g.num_nodes
    rng = np.random.default_rng(0)
    seeds = rng.choice(np.flatnonzero(g.out_degree > 0), args.seeds, replace=False)
    targets = rng.choice(np.flatnonzero(g.out_degree > 0), args.seeds)
    seed_list = seeds.tolist()

    # reference graphs (construction not timed)
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from(zip(g.src.tolist(), g.dst.tolist()))
    G.remove_edges_from(nx.selfloop_edges(G))
    adj = [[] for _ in range(n)]
    ladj = [dict() for _ in range(n)]
    for s, lab, d in zip(g.src.tolist(), g.label.tolist(), g.dst.tolist()):
        adj[s].append((lab, d))
        ladj[s].setdefault(lab, []).append(d)

    # warm up numba (load the on-disk cache / compile) outside the timings
    ga.bfs_distances(g, seeds[:2]); ga.shortest_paths(g, seeds[:2], targets[:2], 3)
    ga.khop(g, seeds[:2], 2); ga.local_clustering(g); ga.ig_paths(g, facts, fact_ids=np.arange(2))

    rows = []

    def row(name, ours, base, note=""):
        rows.append((name, ours, base, base / ours if ours > 0 else float("inf"), note))

    t_o, _ = _time(lambda: ga.bfs_distances(g, seeds), 3)
    t_b, _ = _time(lambda: [nx.single_source_shortest_path_length(G, s) for s in seed_list])
    row("bfs (unbounded)", t_o, t_b, f"{len(seeds)} sources")

    t_o, (length, _, _) = _time(lambda: ga.shortest_paths(g, seeds, targets, max_depth=args.K), 3)

    def nx_sp():
        out = []
        for s, t in zip(seed_list, targets.tolist()):
            try:
                out.append(len(nx.shortest_path(G, s, t)) - 1)
            except nx.NetworkXNoPath:
                out.append(-1)
        return out

    t_b, _ = _time(nx_sp)
    row("shortest_path", t_o, t_b, f"{len(seeds)} pairs, ours bounded K={args.K}, nx bidirectional")

    for k in (1, 2):
        t_o, _ = _time(lambda: ga.khop(g, seeds, k=k), 3)
        t_b, _ = _time(lambda: [nx.single_source_shortest_path_length(G, c, cutoff=k) for c in seed_list])
        row(f"khop k={k}", t_o, t_b, f"{len(seeds)} centres, unlimited budget")
        few = seeds[:10]
        t_o10, _ = _time(lambda: ga.khop(g, few, k=k), 3)
        t_e, _ = _time(lambda: [nx.ego_graph(G, c, radius=k) for c in few.tolist()])
        row(f"khop k={k} vs ego_graph", t_o10, t_e, "10 centres, nx.ego_graph (builds the subgraph)")
    t_o, _ = _time(lambda: ga.khop(g, seeds, k=2, budget=128, sampling="degree", seed=0), 3)
    row("khop k=2 budget=128", t_o, t_b, "vs the unlimited nx cutoff-BFS baseline")

    t_o, _ = _time(lambda: ga.local_clustering(g), 3)
    if args.quick:
        t_b, _ = _time(lambda: nx.clustering(G, nodes=seed_list))
        t_b *= n / len(seeds)
        row("clustering", t_o, t_b, f"all {n} entities; nx on seeds scaled to all")
    else:
        t_b, _ = _time(lambda: nx.clustering(G))
        row("clustering", t_o, t_b, f"all {n} entities")

    walk_starts = np.repeat(seeds, 10)
    t_o, _ = _time(lambda: ga.random_walk(g, walk_starts, length=20, seed=0), 3)
    t_b, _ = _time(lambda: _naive_walks(adj, walk_starts.tolist(), 20, random.Random(0)))
    row("random_walk L=20", t_o, t_b, f"{len(walk_starts)} walks")
    t_o, _ = _time(lambda: ga.random_walk(g, walk_starts, length=20, p=0.5, q=2.0, seed=0), 3)
    row("random_walk node2vec", t_o, t_b, "p=0.5 q=2 vs the uniform Python baseline")

    # ig_path: per fact, same sampled facts for both
    sample = rng.choice(len(facts), ig_naive, replace=False)
    t_o, res_s = _time(lambda: ga.ig_paths(g, facts, fact_ids=sample, K=args.K, beam=args.beam), 3)
    R = ds.num_relations

    def naive_all():
        return [_naive_ig(G, ladj, n, int(facts[i, 1]), int(facts[i, 0]), int(facts[i, 2]), R, args.K, args.beam)
                for i in sample]

    t_b, naive = _time(naive_all)
    row("ig_path (sample)", t_o, t_b, f"{len(sample)} facts, K={args.K}, beam={args.beam}")
    naive_found = np.mean([x is not None for x in naive])

    ids = np.arange(len(facts)) if ig_facts is None else rng.choice(len(facts), min(ig_facts, len(facts)), replace=False)
    load0 = os.getloadavg()[0]
    t_all, res = _time(lambda: ga.ig_paths(g, facts, fact_ids=ids, K=args.K, beam=args.beam))
    load1 = os.getloadavg()[0]

    print(f"# graph_algos benchmark: {ds.name}  entities={n} edges={g.num_edges} labels={g.num_labels} "
          f"(KGraph build {t_graph:.2f}s)")
    print(f"# cores={os.cpu_count()} load average before/after ig_path: {load0:.1f}/{load1:.1f}")
    print()
    print("| algorithm | ours | networkx/Python | ratio | notes |")
    print("|---|---:|---:|---:|---|")
    for name, o, b, ratio, note in rows:
        print(f"| {name} | {o * 1e3:.1f} ms | {b * 1e3:.1f} ms | {ratio:.0f}x | {note} |")
    found = res.length > 0
    print()
    print(f"ig_path over {len(ids):,} train facts (K={args.K}, beam={args.beam}): {t_all:.1f} s wall "
          f"({t_all / len(ids) * 1e3:.3f} ms/fact); path found for {found.mean():.1%}; "
          f"median IG {np.nanmedian(res.ig):.2f} of log E = {math.log(n):.2f}; "
          f"median answer set {np.median(res.answer_size[found]):.0f}; "
          f"lengths 1/2/3: {[(res.length == k).mean().round(3) for k in range(1, args.K + 1)]}")
    print(f"naive sketch on the {len(sample)} sampled facts: found {naive_found:.1%}; ours on them: "
          f"{(res_s.length > 0).mean():.1%}")


if __name__ == "__main__":
    main()
