"""kgc.evaluation.RankAccumulator: collection, de-duplication by query id, gathering across processes
(shards of unequal length, DDP sampler padding), metrics and breakdowns."""

import pytest
import torch

from kgc import KGCError
from kgc.evaluation import RankAccumulator, Ranks, all_policy_metrics, breakdown, shard_bounds


def _fake_world(accs):
    """``all_gather`` callables, one per simulated process, serving the other processes' local parts."""
    parts = [a._local() for a in accs]

    def make(rank):
        def all_gather(out, tensor):
            if tensor.shape == (1,):  # the lengths
                for r, p in enumerate(parts):
                    out[r].copy_(torch.tensor([p.shape[1]]) if r != rank else tensor)
                return
            for r, p in enumerate(parts):
                o = torch.full_like(tensor, -7)
                o[:, : p.shape[1]] = p
                out[r].copy_(o if r != rank else tensor)
        return all_gather
    return make


def test_gather_of_unequal_shards_restores_query_order():
    n, world = 10, 3
    g = torch.Generator().manual_seed(0)
    opt = torch.randint(1, 5, (n,), generator=g)
    full = Ranks(opt, opt + torch.randint(0, 3, (n,), generator=g))
    rel = torch.randint(0, 4, (n,), generator=g)
    accs = []
    for r in range(world):
        lo, hi = shard_bounds(n, world, r)
        acc = RankAccumulator(groups=("relation",))
        for a in range(lo, hi, 2):  # batches of two
            b = min(hi, a + 2)
            acc.add(torch.arange(a, b), full[a:b], {"relation": rel[a:b]})
        accs.append(acc)
    assert [len(a) for a in accs] == [3, 3, 4]  # unequal shards
    make = _fake_world(accs)
    for r in range(world):
        got = accs[r].collect(world=(world, r), all_gather=make(r), num_queries=n)
        assert torch.equal(got.index, torch.arange(n))
        assert torch.equal(got.ranks.optimistic, full.optimistic) and torch.equal(got.ranks.pessimistic, full.pessimistic)
        assert torch.equal(got.groups["relation"], rel)
    with pytest.raises(KGCError, match="distinct queries"):  # without the gather, queries are missing
        accs[0].collect(distributed=False, num_queries=n)


def test_sampler_padding_duplicates_count_once_first_occurrence_wins():
    """A DistributedSampler pads shards by repeating queries: each query counts once, and the copy
    kept is the first in process order (as the LightningModule always did)."""
    acc0, acc1 = RankAccumulator(), RankAccumulator()
    acc0.add(torch.tensor([0, 2, 4]), Ranks(torch.tensor([1, 3, 5]), torch.tensor([1, 3, 5])))
    acc1.add(torch.tensor([1, 3, 0]), Ranks(torch.tensor([2, 4, 9]), torch.tensor([2, 4, 9])))  # 0 repeated
    make = _fake_world([acc0, acc1])
    for r, acc in enumerate((acc0, acc1)):
        got = acc.collect(world=(2, r), all_gather=make(r))
        assert got.index.tolist() == [0, 1, 2, 3, 4]
        assert got.ranks.optimistic.tolist() == [1, 2, 3, 4, 5]
    # locally too (one process, a query ranked twice)
    acc0.add(torch.tensor([2]), Ranks(torch.tensor([8]), torch.tensor([8])))
    assert acc0.collect(distributed=False).ranks.optimistic.tolist() == [1, 3, 5]


def test_metrics_and_breakdowns_are_those_of_the_ranks():
    g = torch.Generator().manual_seed(1)
    n = 50
    opt = torch.randint(1, 20, (n,), generator=g)
    ranks = Ranks(opt, opt + torch.randint(0, 4, (n,), generator=g))
    direction = torch.randint(0, 2, (n,), generator=g)
    perm = torch.randperm(n, generator=g)  # added out of order, in batches
    acc = RankAccumulator(groups=("direction",))
    for a in range(0, n, 7):
        ix = perm[a : a + 7]
        acc.add(ix, ranks[ix], {"direction": direction[ix]})
    got = acc.collect(distributed=False, num_queries=n)
    assert got.metrics() == all_policy_metrics(ranks)  # bit-equal: same ranks in query order
    for policy in ("realistic", "pessimistic"):
        assert got.breakdown("direction", str, policy) == breakdown(ranks.get(policy), direction, str)
    with pytest.raises(KGCError, match="no group"):
        got.breakdown("relation")
    acc.reset()
    assert len(acc) == 0 and len(acc.collect(distributed=False)) == 0


def test_add_validates_its_columns():
    acc = RankAccumulator(groups=("relation",))
    r = Ranks(torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(KGCError, match="groups"):
        acc.add(torch.tensor([0, 1]), r)
    with pytest.raises(KGCError, match="lengths"):
        acc.add(torch.tensor([0, 1, 2]), r, {"relation": torch.tensor([0, 0, 0])})


def _gloo_worker(rank, world, init_file, out_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = RankAccumulator(groups=("g",))
        ids = torch.arange(rank, 11, world)  # 6 and 5 queries: unequal lengths
        acc.add(ids, Ranks(ids + 1, 2 * ids + 1), {"g": ids % 3})
        got = acc.collect()
        torch.save({"index": got.index, "opt": got.ranks.optimistic, "pes": got.ranks.pessimistic, "g": got.groups["g"]},
                   f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_gloo_gather_of_unequal_parts(tmp_path):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_gloo_worker, args=(r, 2, tmp_path / "init", tmp_path / "out")) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(100)
        assert p.exitcode == 0
    ids = torch.arange(11)
    for r in range(2):
        got = torch.load(tmp_path / f"out.{r}")
        assert torch.equal(got["index"], ids) and torch.equal(got["opt"], ids + 1)
        assert torch.equal(got["pes"], 2 * ids + 1) and torch.equal(got["g"], ids % 3)
