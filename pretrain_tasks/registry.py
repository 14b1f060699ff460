"""``--signals`` names -> signal classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from kgc.errors import KGCError
from kgc.resources import config_dir
from kgc.vocab import SIGNALS as SIGNAL_NAMES

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
assert tuple(SIGNALS) == SIGNAL_NAMES

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
