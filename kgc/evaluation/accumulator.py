"""Per-query rank collection for every ranking loop: validation, ``kgc.evaluate`` (and any caller
that ranks batch by batch).

A :class:`RankAccumulator` collects, per batch, each query's id, its optimistic and pessimistic
rank and the integer group keys the breakdowns need (direction, relation, arity...). At the end
:meth:`RankAccumulator.collect` all-gathers the parts of every process (``torch.distributed``;
shards may differ in length), keeps the first occurrence of each query id (a DDP
``DistributedSampler`` pads its shards by repeating queries) and returns the
:class:`CollectedRanks` sorted by query id, from which the metrics come. Ties stay explicit:
optimistic and pessimistic ranks are both kept and realistic is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch

from kgc.errors import KGCError
from kgc.evaluation.metrics import DEFAULT_KS, all_policy_metrics, breakdown
from kgc.evaluation.ranks import Ranks, check_tie_policy


@dataclass
class CollectedRanks:
    """Ranks of distinct queries, ascending by query id ``index`` (int64 CPU tensors)."""

    index: torch.Tensor
    ranks: Ranks
    groups: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def metrics(self, ks: Iterable[int] = DEFAULT_KS) -> dict[str, dict[str, float]]:
        """``{policy: {"mrr", "mr", "hits@k"..., "count"}}`` for every tie policy."""
        return all_policy_metrics(self.ranks, ks)

    def breakdown(self, key: str, name: Callable[[int], str] = str, tie_policy: str = "realistic",
                  ks: Iterable[int] = DEFAULT_KS) -> dict[str, dict[str, float]]:
        """Metrics per value of group ``key`` (ranks of ``tie_policy``)."""
        if key not in self.groups:
            raise KGCError(f"no group {key!r} was collected (have: {', '.join(self.groups) or 'none'})")
        return breakdown(self.ranks.get(check_tie_policy(tie_policy)), self.groups[key], name, ks)


def _unique_first(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique values of ``index`` and the position of the first occurrence of each."""
    order = torch.argsort(index, stable=True)
    sorted_idx = index[order]
    first_mask = torch.ones_like(sorted_idx, dtype=torch.bool)
    first_mask[1:] = sorted_idx[1:] != sorted_idx[:-1]
    return sorted_idx[first_mask], order[first_mask]


def _dist_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return 1, 0
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class RankAccumulator:
    """Collects ``(query id, optimistic, pessimistic, group keys...)`` batch by batch.

    Args:
        groups: names of the integer group keys every :meth:`add` passes (e.g. ``("direction", "relation")``).
    """

    def __init__(self, groups: Iterable[str] = ()):
        self.group_names = tuple(groups)
        self._parts: list[torch.Tensor] = []  # (2 + G + 1, n) int64: index, opt, pes, groups...

    def __len__(self) -> int:
        return sum(int(p.shape[1]) for p in self._parts)

    def reset(self) -> None:
        self._parts = []

    def add(self, query_index: torch.Tensor, ranks: Ranks, groups: Mapping[str, torch.Tensor] | None = None) -> None:
        """Add one batch: ``query_index`` (n,) ids, their ``ranks`` and the group keys (each (n,))."""
        groups = dict(groups or {})
        if set(groups) != set(self.group_names):
            raise KGCError(f"RankAccumulator.add: groups {sorted(groups)} != declared {sorted(self.group_names)}")
        idx = torch.as_tensor(query_index).reshape(-1).to("cpu", torch.int64)
        cols = [idx, ranks.optimistic, ranks.pessimistic] + [torch.as_tensor(groups[g]) for g in self.group_names]
        cols = [c.reshape(-1).to("cpu", torch.int64) for c in cols]
        if any(c.shape[0] != idx.shape[0] for c in cols):
            raise KGCError(f"RankAccumulator.add: {idx.shape[0]} query ids but columns of lengths "
                           f"{[c.shape[0] for c in cols]}")
        self._parts.append(torch.stack(cols))

    def _local(self) -> torch.Tensor:
        width = 3 + len(self.group_names)
        return torch.cat(self._parts, 1) if self._parts else torch.zeros(width, 0, dtype=torch.int64)

    def collect(self, *, distributed: bool | str = "auto", num_queries: int | None = None,
                all_gather: Callable | None = None, world: tuple[int, int] | None = None) -> CollectedRanks:
        """Every process's ranks, one per distinct query id, sorted by id.

        ``distributed="auto"`` gathers over an initialised ``torch.distributed`` group (a collective:
        every process must call it); ``False`` keeps this process's ranks. ``num_queries``: require
        the ids to be exactly ``0..num_queries-1``. ``all_gather(list_out, tensor)`` and
        ``world=(size, rank)`` replace ``torch.distributed`` (tests).
        """
        local = self._local()
        size, rank = world if world is not None else (_dist_world() if distributed in ("auto", True) else (1, 0))
        if size > 1:
            local = _gather(local, size, all_gather)
        index, first = _unique_first(local[0])
        rows = local[:, first]
        if num_queries is not None and (index.shape[0] != num_queries
                                        or not torch.equal(index, torch.arange(num_queries))):
            raise KGCError(f"ranked {index.shape[0]} distinct queries with ids in "
                           f"{[int(index.min()), int(index.max())] if index.numel() else []}, expected 0..{num_queries - 1}")
        groups = {g: rows[3 + i].contiguous() for i, g in enumerate(self.group_names)}
        return CollectedRanks(index.contiguous(), Ranks(rows[1].contiguous(), rows[2].contiguous()), groups)


def _gather(local: torch.Tensor, size: int, all_gather: Callable | None) -> torch.Tensor:
    """All-gather ``(K, n_r)`` int64 parts of different lengths: lengths first, then padded parts;
    concatenated in process order."""
    if all_gather is None:
        import torch.distributed as dist

        all_gather = dist.all_gather
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    else:
        device = local.device
    n = torch.tensor([local.shape[1]], dtype=torch.int64, device=device)
    lengths = [torch.empty_like(n) for _ in range(size)]
    all_gather(lengths, n)
    lengths = [int(x.item()) for x in lengths]
    buf = torch.zeros(local.shape[0], max(lengths), dtype=torch.int64, device=device)
    buf[:, : local.shape[1]] = local.to(device)
    out = [torch.empty_like(buf) for _ in range(size)]
    all_gather(out, buf)
    return torch.cat([o[:, :m].cpu() for o, m in zip(out, lengths)], 1)
