"""The signal registry: ``--signals`` names -> signal classes, and the vocabulary's task list.

:data:`SIGNALS` is the one list of signals. Its order is the order of the task tokens:
:data:`TASKS` is ``lp`` then the signals, and every vocabulary built here stores it
(``vocab.json``, checkpoints' ``kgc.vocab``). Add a new signal at the **end**: the ids of the
existing task tokens stay, the new vocabularies get one more task token, and a checkpoint
made with the old list is refused by name (``kgc.vocab.VocabularyMismatch``: tasks differ)
instead of failing on a tensor shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from kgc.errors import KGCError
from kgc.resources import config_dir
from kgc.vocab import LP_TASK, Vocabulary

from .base import Signal
from .ig_path import IGPathSignal
from .khop import KHopSignal
from .lcc import LCCSignal
from .random_walk import RandomWalkSignal
from .shortest_path import ShortestPathSignal

SIGNALS: dict[str, type[Signal]] = {
    "random_walk": RandomWalkSignal,
    "shortest_path": ShortestPathSignal,
    "khop": KHopSignal,
    "ig_path": IGPathSignal,
    "lcc": LCCSignal,
}
#: The signal names in registry order.
SIGNAL_NAMES: tuple[str, ...] = tuple(SIGNALS)
#: The task list of a new vocabulary: link prediction, then every registered signal.
TASKS: tuple[str, ...] = (LP_TASK,) + SIGNAL_NAMES

#: Folder of the per-signal YAML defaults (``configs/signals/<name>.yaml``).
CONFIG_DIR = config_dir("signals")


def _valid() -> str:
    return ", ".join(SIGNALS)


def get_signal(name: str, config: Any = None) -> Signal:
    """An instance of signal ``name`` with ``config`` (dataclass, mapping, or None = defaults)."""
    if name not in SIGNALS:
        raise KGCError(f"unknown signal {name!r}; valid signals: {_valid()} (or 'all')")
    return SIGNALS[name](config)


def parse_signals(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"`` or ``"a,b"`` (or a list) -> ordered, de-duplicated signal names; unknown names are errors."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
    else:
        parts = [str(p).strip() for p in spec]
    parts = [p for p in parts if p]
    if not parts:
        raise KGCError(f"no signals given; valid signals: {_valid()} (or 'all')")
    if "all" in parts:
        if len(parts) > 1:
            raise KGCError("'all' cannot be combined with other signal names")
        return list(SIGNALS)
    out: list[str] = []
    for p in parts:
        if p not in SIGNALS:
            raise KGCError(f"unknown signal {p!r}; valid signals: {_valid()} (or 'all')")
        if p not in out:
            out.append(p)
    return out


def default_config_path(name: str) -> Path | None:
    path = CONFIG_DIR / f"{name}.yaml"
    return path if path.exists() else None


def load_signal(name: str, overrides: Mapping[str, Any] | list[str] | None = None) -> Signal:
    """Signal ``name`` configured by ``configs/signals/<name>.yaml`` then ``overrides``.

    ``overrides`` is a mapping of keys or a list of ``key=value`` strings.
    """
    if name not in SIGNALS:
        get_signal(name)  # raises the listing error
    cls = SIGNALS[name]
    from kgc.config import apply_overrides, from_dict
    from kgc.utils.io import read_yaml

    data: dict = {}
    path = default_config_path(name)
    if path is not None:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise KGCError(f"{path}: top level must be a mapping")
        data.update(loaded)
    if isinstance(overrides, Mapping):
        data.update(overrides)
    elif overrides:
        data = apply_overrides(data, list(overrides))
    return cls(from_dict(cls.Config, data, where=str(path) if path else f"signals.{name}"))


def build_vocab(dataset, graph=None, max_hops: int = 4, num_buckets: int = 10) -> Vocabulary:
    """The :class:`kgc.vocab.Vocabulary` of ``dataset`` with the registry's task list (:data:`TASKS`).

    Built from the dataset alone (sorted entity and relation names, maximum arity); ids depend only
    on those, the task list and (``max_hops``, ``num_buckets``). ``graph``, when given (the train
    ``KGraph`` the signals will walk), is checked to have the vocabulary's entities and labels.
    """
    vocab = Vocabulary.build(dataset, tasks=TASKS, max_hops=max_hops, num_buckets=num_buckets)
    if graph is not None:
        names = getattr(graph, "label_names", None)
        if graph.num_labels != vocab.num_labels or graph.num_nodes != vocab.num_entities or (
                names and list(names) != vocab.label_names):
            raise KGCError(f"graph ({graph.num_nodes} nodes, {graph.num_labels} labels) does not match the "
                           f"vocabulary of {dataset.name} ({vocab.num_entities} entities, {vocab.num_labels} labels)")
    return vocab
