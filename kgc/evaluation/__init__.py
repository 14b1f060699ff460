"""Filtered link-prediction evaluation: queries, sparse filter index, ranks with explicit ties, metrics.

See docs/architecture.md ("Evaluation") and DESIGN.md section 4. Headline ranks
are realistic (mean of optimistic and pessimistic); all three are kept.
"""

from kgc.evaluation.evaluator import (
    EvaluationResult,
    LinkPredictionScorer,
    ModelScorer,
    evaluate,
    gather_ranks,
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
    "EvaluationResult", "FilterIndex", "LinkPredictionQueries", "LinkPredictionScorer", "ModelScorer", "Ranks",
    "all_policy_metrics", "breakdown", "empty_filter", "evaluate", "filtered_ranks_from_scores",
    "filtered_ranks_from_vectors", "gather_ranks", "policy_metrics", "rank_metrics", "rank_queries",
    "shard_bounds",
]
