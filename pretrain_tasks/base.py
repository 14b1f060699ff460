"""Common machinery of the signals: the base class, seeds, active entities."""

from __future__ import annotations

import zlib
from dataclasses import asdict
from typing import Any, ClassVar, Mapping

import numpy as np

from kgc.errors import KGCError
from kgc.config import from_dict
from kgc.vocab import Vocabulary

from .examples import SignalExamples


def signal_rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    """A numpy generator determined by (seed, signal name, extra ints) only."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), *[int(e) for e in extra]])


def active_entities(graph) -> np.ndarray:
    """Entities with at least one train edge (out-degree incl. inverses > 0), ascending."""
    return np.flatnonzero(np.diff(np.asarray(graph.indptr)) > 0).astype(np.int64)


class Signal:
    """Base class: ``Signal(config)`` then ``generate(dataset, graph, vocab, num_examples, seed)``.

    Subclasses set ``name`` (their key in :data:`pretrain_tasks.registry.SIGNALS`) and ``Config`` (a strict
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
