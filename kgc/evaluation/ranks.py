"""Filtered ranks with explicit tie handling: :class:`Ranks` and the evaluation-side entry points.

For a query with target ``t`` and score ``s_e`` per entity, and the filter ``F``
(known true answers; the target itself is never filtered)::

    optimistic  = 1 + #{e not in F, e != t : s_e >  s_t}
    pessimistic = 1 + #{e not in F, e != t : s_e >= s_t}
    realistic   = (optimistic + pessimistic) / 2

(the "Kernels" contract of docs/architecture.md; PyKEEN's optimistic /
pessimistic / realistic ranks). Ties are never hidden: a model giving every
entity the same score gets optimistic rank 1 but pessimistic rank E - |F \\ {t}|.

The counting itself is one op, ``kernels.filtered_rank`` (query vectors) /
``kernels.filtered_rank_from_scores`` (a score matrix): one validator, one
implementation switch (``impl`` / ``KGC_KERNEL_IMPL``: Triton, chunked with a
numba block counter, or the dense reference) and one NaN rule - a NaN target or
unfiltered candidate score raises ``kernels.NaNScoreError`` naming the query (a
NaN in a filtered-out column is ignored). The functions here wrap it into
:class:`Ranks`; ``use_kernel`` is the evaluator's spelling of ``impl``
(``True``: "triton", ``False``: "chunked", ``"auto"``: the switch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgc.errors import KGCError

TIE_POLICIES = ("realistic", "optimistic", "pessimistic")
DEFAULT_CHUNK_BYTES = 256 * 2**20


def check_tie_policy(policy: str) -> str:
    if policy not in TIE_POLICIES:
        raise KGCError(f"unknown tie policy {policy!r}; valid: {', '.join(TIE_POLICIES)}")
    return policy


@dataclass
class Ranks:
    """1-based filtered ranks of ``Q`` queries (int64 CPU or device tensors)."""

    optimistic: torch.Tensor
    pessimistic: torch.Tensor

    @property
    def realistic(self) -> torch.Tensor:
        """Mean of optimistic and pessimistic (float64; may be a half-integer)."""
        return (self.optimistic.to(torch.float64) + self.pessimistic.to(torch.float64)) / 2

    def get(self, policy: str) -> torch.Tensor:
        """Ranks under ``policy`` as float64."""
        check_tie_policy(policy)
        if policy == "realistic":
            return self.realistic
        return getattr(self, policy).to(torch.float64)

    def __len__(self) -> int:
        return int(self.optimistic.shape[0])

    def __getitem__(self, idx) -> "Ranks":
        return Ranks(self.optimistic[idx], self.pessimistic[idx])

    def cpu(self) -> "Ranks":
        return Ranks(self.optimistic.cpu(), self.pessimistic.cpu())

    @staticmethod
    def cat(parts: list["Ranks"]) -> "Ranks":
        if not parts:
            return Ranks(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
        return Ranks(torch.cat([p.optimistic for p in parts]), torch.cat([p.pessimistic for p in parts]))


def impl_for(use_kernel: bool | str) -> str | None:
    """``use_kernel`` as a ``kernels`` implementation: True -> "triton", False -> "chunked", "auto" -> None
    (the process-wide switch: ``kernels.use_impl`` / ``set_impl``, then ``KGC_KERNEL_IMPL``)."""
    if use_kernel is True:
        return "triton"
    if use_kernel is False:
        return "chunked"
    if use_kernel == "auto":
        return None
    raise KGCError(f"use_kernel must be True, False or 'auto', got {use_kernel!r}")


def filtered_ranks_from_scores(
    scores: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    *,
    entity_chunk: int | None = None,
    chunk_bytes: int | None = None,
    impl: str | None = None,
) -> Ranks:
    """Ranks from a score matrix ``(B, E)`` (``kernels.filtered_rank_from_scores``; compared as given).

    ``entity_chunk`` bounds the comparison temporaries to ``B x entity_chunk``; without it,
    ``chunk_bytes`` does (``entity_chunk = chunk_bytes / (12 B)``; default the kernels' bound).
    """
    from kernels.filtered_rank import filtered_rank_from_scores  # noqa: PLC0415 (lazy: Triton import is slow)

    opt, pes = filtered_rank_from_scores(scores, target, filter_indptr, filter_indices, impl=impl,
                                         chunk_bytes=chunk_bytes, entity_chunk=entity_chunk)
    return Ranks(opt, pes)


def filtered_ranks_from_vectors(
    queries: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    filter_indptr: torch.Tensor,
    filter_indices: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    chunk_bytes: int | None = None,
    query_chunk: int | None = None,
    entity_chunk: int | None = None,
    use_kernel: bool | str = "auto",
) -> Ranks:
    """Ranks for scores ``queries @ weight.T + bias`` without materialising more than one block
    (``kernels.filtered_rank``; ``use_kernel`` as in :func:`impl_for`). The chunked path computes in
    float32 (float64 if the inputs are float64); when one query row of scores exceeds the block
    budget (or ``entity_chunk`` is set) the entity columns are chunked in two passes, the target
    score read from the very block that scores every other entity, so ties are exact.
    """
    from kernels.filtered_rank import filtered_rank  # noqa: PLC0415

    opt, pes = filtered_rank(queries, weight, target, filter_indptr, filter_indices, bias,
                             impl=impl_for(use_kernel), chunk_bytes=chunk_bytes, query_chunk=query_chunk,
                             entity_chunk=entity_chunk)
    return Ranks(opt, pes)


def rank_output(model, out, target: torch.Tensor, filter_indptr: torch.Tensor, filter_indices: torch.Tensor,
                *, chunk_bytes: int | None = None, use_kernel: bool | str = "auto") -> Ranks:
    """Filtered ranks of a model's link-prediction output (``KGCModel.lp_forward``): from the query
    vectors without materialising the scores when there is no context pointer, else from the
    model's (B, E) scores (``lp_output_scores``). The counting (and its tie and NaN rules) is one."""
    device = out.query.device
    filter_indptr, filter_indices = filter_indptr.to(device), filter_indices.to(device)
    if out.item_entity is None:
        bias = model.entity_bias()
        return filtered_ranks_from_vectors(
            out.query.float(), model.entity_weight().float(), target, filter_indptr, filter_indices,
            bias=None if bias is None else bias.float(), chunk_bytes=chunk_bytes, use_kernel=use_kernel,
        )
    scores = model.lp_output_scores(out).float()
    return filtered_ranks_from_scores(scores, target.to(device), filter_indptr, filter_indices, chunk_bytes=chunk_bytes,
                                      impl=impl_for(use_kernel))
