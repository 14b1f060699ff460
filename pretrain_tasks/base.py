"""Common machinery of the five signals: the base class, the vocabulary helper, seeds."""

from __future__ import annotations

import zlib
from dataclasses import asdict
from typing import Any, ClassVar, Mapping

import numpy as np

from kgc.errors import KGCError
from kgc.config import from_dict, load_config
from kgc.vocab import TASKS, Vocabulary

from .mixture import SignalExamples


def signal_rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    """A numpy generator determined by (seed, signal name, extra ints) only."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), *[int(e) for e in extra]])


def graph_label_names(dataset, graph) -> list[str]:
    """The graph's edge-label names (``r``, ``r^-1``, n-ary role pairs), per the Graph contract."""
    names = getattr(graph, "label_names", None)
    if names:
        return list(names)
    fn = getattr(graph, "label_names_for", None)
    if callable(fn):
        return list(fn(list(dataset.relation_names)))
    if getattr(graph, "num_labels", None) == 2 * dataset.num_relations:
        return list(dataset.relation_names) + [f"{r}^-1" for r in dataset.relation_names]
    raise KGCError("graph has no label names; build it with graph_algos.KGraph.from_facts")


def build_vocab(dataset, graph, max_hops: int = 4, num_buckets: int = 10) -> Vocabulary:
    """The :class:`kgc.vocab.Vocabulary` of ``dataset`` with the train graph's label names.

    Stable for a dataset: ids depend only on the dataset's sorted names, the label
    layout of ``graph_algos`` and (``max_hops``, ``num_buckets``).
    """
    labels = graph_label_names(dataset, graph)
    if len(labels) != graph.num_labels:
        raise KGCError(f"graph has {graph.num_labels} labels but {len(labels)} label names")
    return Vocabulary.build(dataset, label_names=labels, max_hops=max_hops, num_buckets=num_buckets)


def active_entities(graph) -> np.ndarray:
    """Entities with at least one train edge (out-degree incl. inverses > 0), ascending."""
    return np.flatnonzero(np.diff(np.asarray(graph.indptr)) > 0).astype(np.int64)


class Signal:
    """Base class: ``Signal(config)`` then ``generate(dataset, graph, vocab, num_examples, seed)``.

    Subclasses set ``name`` (a :data:`kgc.vocab.SIGNALS` entry) and ``Config`` (a strict
    dataclass; unknown keys are errors) and implement :meth:`_generate`.
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None):
        if config is None:
            config = self.Config()
        elif isinstance(config, Mapping):
            config = from_dict(self.Config, config, where=f"signals.{self.name}")
        elif not isinstance(config, self.Config):
            raise KGCError(f"{self.name}: config must be a {self.Config.__name__} or a mapping")
        self.config = config

    @classmethod
    def from_yaml(cls, path=None, overrides: list[str] | None = None) -> "Signal":
        return cls(load_config(cls.Config, path, overrides))

    @property
    def task_id(self) -> int:
        return TASKS.index(self.name)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def generate(self, dataset, graph, vocab: Vocabulary, num_examples: int | None = None,
                 seed: int = 0) -> SignalExamples:
        """Generate examples. ``num_examples=None`` uses ``config.num_examples`` (None there = all)."""
        if graph.num_labels != vocab.num_labels or graph.num_nodes != vocab.num_entities:
            raise KGCError(
                f"{self.name}: vocabulary ({vocab.num_entities} entities, {vocab.num_labels} labels) does not "
                f"match the graph ({graph.num_nodes} nodes, {graph.num_labels} labels)"
            )
        n = num_examples if num_examples is not None else getattr(self.config, "num_examples", None)
        if n is not None and n < 0:
            raise KGCError(f"{self.name}: num_examples must be >= 0, got {n}")
        if n == 0 or graph.num_edges == 0:
            return SignalExamples.empty(self.name)
        return self._generate(dataset, graph, vocab, n, int(seed))

    def _generate(self, dataset, graph, vocab, num_examples, seed) -> SignalExamples:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
