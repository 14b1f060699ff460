"""Rank-based metrics and breakdowns.

``MRR = mean(1 / rank)``, ``MR = mean(rank)``, ``Hits@k = mean(rank <= k)``,
computed in float64 from the ranks of one tie policy (realistic ranks may be
half-integers; Hits@k then counts ``rank <= k`` on that value, as PyKEEN does).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from kgc.errors import KGCError
from kgc.evaluation.ranks import TIE_POLICIES, Ranks, check_tie_policy

DEFAULT_KS = (1, 3, 10)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise KGCError(f"Hits@k needs k >= 1, got {ks}")
    return ks


def rank_metrics(ranks: torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"mrr", "mr", "hits@k"..., "count"}`` of a 1-D tensor of 1-based ranks."""
    ks = _check_ks(ks)
    r = torch.as_tensor(ranks).to(torch.float64).reshape(-1).cpu()
    if r.numel() == 0:
        raise KGCError("cannot compute metrics of zero queries")
    if bool((r < 1).any()):
        raise KGCError("ranks must be >= 1")
    out: dict[str, float] = {"mrr": float((1.0 / r).mean()), "mr": float(r.mean())}
    for k in ks:
        out[f"hits@{k}"] = float((r <= k).to(torch.float64).mean())
    out["count"] = int(r.numel())
    return out


def policy_metrics(ranks: Ranks, policy: str = "realistic", ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    return rank_metrics(ranks.get(check_tie_policy(policy)), ks)


def all_policy_metrics(ranks: Ranks, ks: Iterable[int] = DEFAULT_KS) -> dict[str, dict[str, float]]:
    return {p: policy_metrics(ranks, p, ks) for p in TIE_POLICIES}


def breakdown(
    ranks: torch.Tensor,
    groups: torch.Tensor,
    name: Callable[[int], str] = str,
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Metrics per group id (only groups that occur), keyed by ``name(group_id)``, in id order."""
    r = torch.as_tensor(ranks).reshape(-1).cpu()
    g = torch.as_tensor(groups).reshape(-1).cpu()
    if r.shape != g.shape:
        raise KGCError(f"breakdown: {r.numel()} ranks but {g.numel()} group ids")
    out: dict[str, dict[str, float]] = {}
    if g.numel() == 0:
        return out
    order = torch.argsort(g, stable=True)
    gs, rs = g[order], r[order]
    uniq, counts = torch.unique_consecutive(gs, return_counts=True)
    start = 0
    for u, c in zip(uniq.tolist(), counts.tolist()):
        out[name(int(u))] = rank_metrics(rs[start : start + c], ks)
        start += c
    return out
