"""Filtered link-prediction evaluation of a scorer on a dataset split (DESIGN.md section 4).

Two kinds of scorer are accepted:

* a :class:`LinkPredictionScorer` — ``query_vectors(tokens, roles) -> (B, D)``,
  ``entity_weight() -> (E, D)``, ``entity_bias() -> (E,) | None`` and a ``vocab``
  attribute (or pass ``vocab=``). Scores are ``q @ W.T + b``; ranks come from
  the one filtered-rank op, ``kernels.filtered_rank`` (Triton on CUDA, the chunked
  numba-counted path on CPU; ``use_kernel`` picks as in
  :func:`~kgc.evaluation.ranks.impl_for`). A kgc model is
  wrapped with :class:`ModelScorer` (done automatically when ``vocab`` is given);
* any callable ``score(queries: LinkPredictionQueries) -> (B, E)`` for generic models.

Headline metrics average over all queries of the split: for binary data both
directions (equal counts, so the mean of the head and tail means); for n-ary
data every position of every fact. Breakdowns use the headline tie policy.

Under ``torch.distributed`` each process ranks a contiguous shard of the queries
(no padding duplicates) and a :class:`~kgc.evaluation.accumulator.RankAccumulator`
all-gathers them with their query ids, so every query counts exactly once and
every process returns the same result. A NaN score raises
``kernels.NaNScoreError`` naming the query's position in the split.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import torch

from kgc.errors import KGCError
from kgc.evaluation.accumulator import RankAccumulator, _dist_world
from kgc.evaluation.filter import FilterIndex, empty_filter
from kgc.evaluation.metrics import DEFAULT_KS, _check_ks
from kgc.evaluation.queries import LinkPredictionQueries
from kgc.evaluation.ranks import (
    TIE_POLICIES,
    Ranks,
    check_tie_policy,
    filtered_ranks_from_scores,
    impl_for,
    filtered_ranks_from_vectors,
    rank_output,
)


@runtime_checkable
class LinkPredictionScorer(Protocol):
    def query_vectors(self, tokens: torch.Tensor, roles: torch.Tensor) -> torch.Tensor: ...

    def entity_weight(self) -> torch.Tensor: ...

    def entity_bias(self) -> torch.Tensor | None: ...


class ModelScorer:
    """Adapter from a kgc model (``lp_forward`` / ``lp_output_scores``) to evaluation.

    ``context`` is the :class:`kgc.evaluation.context.QueryContext` the model reads; when the
    model was configured with one (``model.cfg.context.budget > 0``) and none is given,
    :func:`evaluate` builds it from the evaluated dataset's train graph.
    """

    def __init__(self, model, vocab, context=None) -> None:
        for attr in ("encode", "lp_forward", "lp_output_scores", "entity_weight", "entity_bias"):
            if not callable(getattr(model, attr, None)):
                raise KGCError(f"ModelScorer: the model has no {attr}() method")
        self.model = model
        self.vocab = vocab
        self.context = context

    @property
    def needs_context(self) -> bool:
        cfg = getattr(self.model, "cfg", None)
        return cfg is not None and cfg.context.budget > 0 and self.context is None

    def with_context_for(self, dataset) -> "ModelScorer":
        """This scorer, with the model's configured context built on ``dataset`` if it has none."""
        if not self.needs_context:
            return self
        from kgc.evaluation.context import QueryContext

        return ModelScorer(self.model, self.vocab, QueryContext.for_dataset(dataset, self.model.cfg.context))

    def batch(self, queries: LinkPredictionQueries):
        """The model's :class:`~kgc.models.batch.LPBatch` of ``queries`` (on the model's device)."""
        from kgc.evaluation.context import query_batch
        from kgc.evaluation.queries import compact_batch

        if self.needs_context:
            raise KGCError("the model reads a query context (model.context.budget > 0) but the scorer has none; "
                           "use ModelScorer(..., context=QueryContext.for_dataset(ds, model.cfg.context))")
        return compact_batch(query_batch(queries, self.vocab, self.context)).to(self.model.entity_weight().device)

    def scores(self, queries: LinkPredictionQueries) -> torch.Tensor:
        """(Q, E) scores of ``queries``."""
        return self.model.lp_scores(self.batch(queries))

    def query_vectors(self, tokens: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
        """Query vectors from tokens alone (models without a direct term or context only)."""
        from kgc.models.base import last_positions

        cfg = self.model.cfg
        if cfg.direct != "none" or cfg.context.budget > 0:
            raise KGCError("query_vectors(tokens, roles) cannot feed the direct term or the context; use batch()")
        h = self.model.encode(tokens, prefix_len=None, roles=roles)  # (B, L, D)
        h_last = h[torch.arange(tokens.shape[0], device=h.device), last_positions(tokens).to(h.device)]
        return self.model.query_vectors(h_last)

    def entity_weight(self) -> torch.Tensor:
        return self.model.entity_weight()

    def entity_bias(self) -> torch.Tensor | None:
        return self.model.entity_bias()


@dataclass
class EvaluationResult:
    dataset: str
    split: str
    tie_policy: str
    filtered: bool
    num_queries: int
    num_facts: int
    ks: tuple[int, ...]
    metrics: dict[str, float]                       # headline (tie_policy)
    metrics_by_policy: dict[str, dict[str, float]]  # realistic / optimistic / pessimistic
    breakdowns: dict[str, dict[str, dict[str, float]]]  # kind -> group -> metrics (tie_policy)
    wall_time_s: float = 0.0
    ranks: Ranks | None = field(default=None, repr=False)
    queries: LinkPredictionQueries | None = field(default=None, repr=False)

    @property
    def mrr(self) -> float:
        return self.metrics["mrr"]

    @property
    def pessimistic(self) -> dict[str, float]:
        return self.metrics_by_policy["pessimistic"]

    @property
    def optimistic(self) -> dict[str, float]:
        return self.metrics_by_policy["optimistic"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (ranks and queries left out) for ``metrics.json``."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "tie_policy": self.tie_policy,
            "filtered": self.filtered,
            "num_queries": self.num_queries,
            "num_facts": self.num_facts,
            "ks": list(self.ks),
            "metrics": dict(self.metrics),
            **{p: dict(self.metrics_by_policy[p]) for p in TIE_POLICIES},
            "breakdowns": {k: {g: dict(m) for g, m in v.items()} for k, v in self.breakdowns.items()},
            "wall_time_s": self.wall_time_s,
        }

    def summary(self) -> str:
        m = self.metrics
        hits = " ".join(f"H@{k}={m[f'hits@{k}']:.4f}" for k in self.ks)
        return (f"{self.dataset}/{self.split} ({self.tie_policy}, {'filtered' if self.filtered else 'raw'}, "
                f"{self.num_queries} queries): MRR={m['mrr']:.4f} MR={m['mr']:.1f} {hits} "
                f"[pessimistic MRR={self.pessimistic['mrr']:.4f}]")


# ---- distributed helpers -------------------------------------------------------------------
def shard_bounds(num_queries: int, world_size: int, rank: int) -> tuple[int, int]:
    """Contiguous shard ``[lo, hi)`` of ``rank``; shards partition ``range(num_queries)`` exactly."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise KGCError(f"invalid distributed rank {rank} of world size {world_size}")
    return num_queries * rank // world_size, num_queries * (rank + 1) // world_size


# ---- evaluation ------------------------------------------------------------------------------
def _resolve_scorer(scorer, vocab):
    if isinstance(scorer, ModelScorer):
        return "model", scorer, vocab if vocab is not None else scorer.vocab
    if callable(getattr(scorer, "lp_forward", None)):  # a raw kgc model
        if vocab is None:
            raise KGCError("evaluating a model needs its vocabulary: pass vocab= or wrap it in ModelScorer")
        return "model", ModelScorer(scorer, vocab), vocab
    if all(callable(getattr(scorer, a, None)) for a in ("query_vectors", "entity_weight", "entity_bias")):
        vocab = vocab if vocab is not None else getattr(scorer, "vocab", None)
        if vocab is None:
            raise KGCError("the scorer needs a vocabulary to build query tokens: pass vocab= or set scorer.vocab")
        return "vectors", scorer, vocab
    if callable(scorer):
        return "scores", scorer, vocab
    raise KGCError(
        f"cannot evaluate a {type(scorer).__name__}: expected a LinkPredictionScorer "
        "(query_vectors/entity_weight/entity_bias) or a callable score(queries) -> (B, E)"
    )


@contextlib.contextmanager
def _eval_mode(obj):
    module = getattr(obj, "model", obj)
    if isinstance(module, torch.nn.Module) and module.training:
        module.eval()
        try:
            yield
        finally:
            module.train()
    else:
        yield


def rank_queries(
    scorer,
    queries: LinkPredictionQueries,
    num_entities: int,
    filter_index: FilterIndex | None,
    *,
    batch_size: int = 512,
    chunk_bytes: int | None = None,
    entity_chunk: int | None = None,
    vocab=None,
    use_kernel: bool | str = "auto",
    query_offset: int = 0,
) -> Ranks:
    """Filtered (``filter_index`` given) or raw ranks of ``queries`` in this process (no sharding).

    A NaN score raises ``kernels.NaNScoreError`` naming the query as ``query_offset`` + its
    position in ``queries``."""
    from kernels.filtered_rank import NaNScoreError

    if batch_size < 1:
        raise KGCError(f"batch_size must be >= 1, got {batch_size}")
    kind, scorer, vocab = _resolve_scorer(scorer, vocab)
    impl = impl_for(use_kernel)
    parts: list[Ranks] = []
    with torch.no_grad(), _eval_mode(scorer):
        if kind in ("vectors", "model"):
            weight = scorer.entity_weight()
            bias = scorer.entity_bias()
            if weight.shape[0] != num_entities:
                raise KGCError(f"the scorer has {weight.shape[0]} entities, the dataset {num_entities}")
            device = weight.device
        for a in range(0, len(queries), batch_size):
            batch = queries[a : a + batch_size]
            if filter_index is not None:
                indptr, indices = filter_index.lookup(batch)
            else:
                indptr, indices = empty_filter(len(batch))
            try:
                if kind == "model":
                    out = scorer.model.lp_forward(scorer.batch(batch))
                    r = rank_output(scorer.model, out, batch.target, indptr, indices, chunk_bytes=chunk_bytes,
                                    use_kernel=use_kernel)
                elif kind == "vectors":
                    tokens, roles = batch.to_tokens(vocab)
                    qv = scorer.query_vectors(tokens.to(device), roles.to(device))
                    r = filtered_ranks_from_vectors(
                        qv, weight, batch.target, indptr, indices, bias,
                        chunk_bytes=chunk_bytes, entity_chunk=entity_chunk, use_kernel=use_kernel,
                    )
                else:
                    scores = scorer(batch)
                    if not isinstance(scores, torch.Tensor) or scores.shape != (len(batch), num_entities):
                        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                        raise KGCError(f"score(queries) must return ({len(batch)}, {num_entities}) scores, got {got}")
                    r = filtered_ranks_from_scores(
                        scores, batch.target.to(scores.device), indptr.to(scores.device), indices.to(scores.device),
                        entity_chunk=entity_chunk, chunk_bytes=chunk_bytes, impl=impl,
                    )
            except NaNScoreError as err:
                raise err.relabel(torch.arange(len(batch)) + (query_offset + a)) from None
            parts.append(r.cpu())
    return Ranks.cat(parts)


def evaluate(
    scorer,
    dataset,
    split: str = "test",
    *,
    batch_size: int = 512,
    tie_policy: str = "realistic",
    filtered: bool = True,
    chunk_bytes: int | None = None,
    entity_chunk: int | None = None,
    ks: Iterable[int] = DEFAULT_KS,
    vocab=None,
    filter_index: FilterIndex | None = None,
    queries: LinkPredictionQueries | None = None,
    use_kernel: bool | str = "auto",
    distributed: bool | str = "auto",
    keep_ranks: bool = True,
) -> EvaluationResult:
    """Filtered link-prediction metrics of ``scorer`` on ``dataset.splits[split]``.

    ``filter_index`` defaults to the (memoised) train+valid+test index of ``dataset``;
    pass one to reuse it across validation rounds. ``queries`` overrides the split's
    queries (e.g. a subsample). ``distributed="auto"`` shards over an initialised
    ``torch.distributed`` group; ``False`` evaluates everything in this process.
    """
    t0 = time.perf_counter()
    check_tie_policy(tie_policy)
    ks = _check_ks(ks)
    if queries is None:
        queries = LinkPredictionQueries.from_dataset(dataset, split)
    if len(queries) == 0:
        raise KGCError(f"split {split!r} of {getattr(dataset, 'name', '?')!r} has no facts to evaluate")
    num_entities = int(dataset.num_entities)
    if filtered and filter_index is None:
        filter_index = FilterIndex.for_dataset(dataset)
    if not filtered:
        filter_index = None

    if not isinstance(scorer, ModelScorer) and callable(getattr(scorer, "lp_forward", None)) and vocab is not None:
        scorer = ModelScorer(scorer, vocab)
    if isinstance(scorer, ModelScorer):
        scorer = scorer.with_context_for(dataset)
    world, rank = _dist_world() if distributed in ("auto", True) else (1, 0)
    lo, hi = shard_bounds(len(queries), world, rank)
    local = rank_queries(
        scorer, queries[lo:hi], num_entities, filter_index,
        batch_size=batch_size, chunk_bytes=chunk_bytes, entity_chunk=entity_chunk, vocab=vocab,
        use_kernel=use_kernel, query_offset=lo,
    )
    keys = {"direction": queries.direction, "relation": queries.relation}
    if not queries.is_binary:
        keys["arity"] = queries.arity
    acc = RankAccumulator(groups=tuple(keys))
    acc.add(torch.arange(lo, hi), local, {k: v[lo:hi] for k, v in keys.items()})
    collected = acc.collect(world=(world, rank), num_queries=len(queries))
    ranks = collected.ranks

    by_policy = collected.metrics(ks)
    rel_names = list(getattr(dataset, "relation_names", []) or [])

    def rel_name(r: int) -> str:
        return rel_names[r] if r < len(rel_names) else str(r)

    breakdowns: dict[str, dict[str, dict[str, float]]] = {}
    if queries.is_binary:
        breakdowns["direction"] = collected.breakdown("direction", lambda d: ("tail", "head")[d], tie_policy, ks)
    else:
        breakdowns["arity"] = collected.breakdown("arity", str, tie_policy, ks)
        breakdowns["position"] = collected.breakdown("direction", str, tie_policy, ks)
    breakdowns["relation"] = collected.breakdown("relation", rel_name, tie_policy, ks)

    return EvaluationResult(
        dataset=str(getattr(dataset, "name", "?")),
        split=split,
        tie_policy=tie_policy,
        filtered=bool(filtered),
        num_queries=len(queries),
        num_facts=int(torch.unique(queries.fact_index).numel()),
        ks=ks,
        metrics=by_policy[tie_policy],
        metrics_by_policy=by_policy,
        breakdowns=breakdowns,
        wall_time_s=time.perf_counter() - t0,
        ranks=ranks if keep_ranks else None,
        queries=queries if keep_ranks else None,
    )


ScoreFn = Callable[[LinkPredictionQueries], torch.Tensor]
