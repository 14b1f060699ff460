"""Fused ops for 1-N knowledge-graph completion (see docs/kernels.md).

* :func:`linear_cross_entropy` - linear + label-smoothed cross-entropy over all entities,
  forward and backward without storing the (B, E) logits.
* :func:`filtered_rank` - filtered optimistic/pessimistic ranks without (Q, E) scores, and
  :func:`filtered_rank_from_scores` for a (B, E) score matrix; one validator, one NaN rule
  (a NaN target or unfiltered candidate score raises :class:`NaNScoreError` naming the query).

Each op runs fused Triton kernels on CUDA, a chunked PyTorch path with bounded temporary
memory elsewhere, or its dense ``*_ref`` on request. Choose with the ``impl=`` argument,
:func:`use_impl` (context manager), :func:`set_impl` or ``KGC_KERNEL_IMPL``; bound the
chunked path's memory with ``chunk_bytes=``, :func:`set_chunk_bytes` or
``KGC_KERNEL_CHUNK_BYTES`` (default 256 MiB).
"""

from kernels._config import IMPLS, get_chunk_bytes, set_chunk_bytes, set_impl, use_impl
from kernels.filtered_rank import (
    NaNScoreError,
    filtered_rank,
    filtered_rank_from_scores,
    filtered_rank_from_scores_ref,
    filtered_rank_ref,
)
from kernels.linear_cross_entropy import cross_entropy_from_logits, linear_cross_entropy, linear_cross_entropy_ref

__all__ = [
    "IMPLS",
    "NaNScoreError",
    "cross_entropy_from_logits",
    "filtered_rank",
    "filtered_rank_from_scores",
    "filtered_rank_from_scores_ref",
    "filtered_rank_ref",
    "get_chunk_bytes",
    "linear_cross_entropy",
    "linear_cross_entropy_ref",
    "set_chunk_bytes",
    "set_impl",
    "use_impl",
]
