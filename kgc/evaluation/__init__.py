"""Filtered link-prediction evaluation: queries, sparse filter index, ranks with explicit ties, metrics.

Ranks come from the one filtered-rank op (``kernels.filtered_rank`` / ``filtered_rank_from_scores``);
every ranking loop (in-training validation, :func:`evaluate`) collects them in a
:class:`RankAccumulator` (query ids, optimistic/pessimistic ranks, breakdown keys; de-duplicated
and gathered across processes).

See docs/architecture.md ("Evaluation") and DESIGN.md section 4. Headline ranks
are realistic (mean of optimistic and pessimistic); all three are kept.
"""

from kgc.evaluation.accumulator import CollectedRanks, RankAccumulator
from kgc.evaluation.evaluator import (
    EvaluationResult,
    LinkPredictionScorer,
    ModelScorer,
    evaluate,
    rank_queries,
    shard_bounds,
)
from kgc.evaluation.filter import DEFAULT_FILTER_SPLITS, FilterIndex, empty_filter
from kgc.evaluation.metrics import DEFAULT_KS, all_policy_metrics, breakdown, policy_metrics, rank_metrics
from kgc.evaluation.queries import LinkPredictionQueries
from kgc.evaluation.ranks import (
    DEFAULT_CHUNK_BYTES,
    TIE_POLICIES,
    Ranks,
    filtered_ranks_from_scores,
    filtered_ranks_from_vectors,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES", "DEFAULT_FILTER_SPLITS", "DEFAULT_KS", "TIE_POLICIES",
    "CollectedRanks", "EvaluationResult", "FilterIndex", "LinkPredictionQueries", "LinkPredictionScorer", "ModelScorer", "RankAccumulator", "Ranks",
    "all_policy_metrics", "breakdown", "empty_filter", "evaluate", "filtered_ranks_from_scores",
    "filtered_ranks_from_vectors", "policy_metrics", "rank_metrics", "rank_queries",
    "shard_bounds",
]
