"""Strict, typed configuration (LibKGE style: an unknown key is an error).

Configs are plain ``@dataclass`` trees. :func:`from_dict` builds one from a
mapping (e.g. parsed YAML) and rejects unknown keys (with a close-match hint)
and values of the wrong type, naming the dotted key and the source file.
:func:`apply_overrides` takes ``a.b.c=value`` strings (values parsed as YAML
scalars). :func:`to_dict` gives the resolved config back for ``config.yaml``
in a run folder.

Example::

    @dataclass
    class Optim:
        lr: float = 1e-3

    cfg = from_dict(Optim, {"lr": 0.01})          # Optim(lr=0.01)
    from_dict(Optim, {"lrr": 0.01})               # KGCError: unknown key 'lrr' (did you mean 'lr'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from kgc.errors import KGCError
from kgc.utils.io import read_yaml

T = TypeVar("T")


class ConfigError(KGCError):
    """A config key is unknown, has the wrong type or an invalid value."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        out = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-3" (no dot) as a string; accept numeric strings for float fields
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (for YAML/JSON dumps)."""
    return dataclasses.asdict(cfg)


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (value parsed as a YAML scalar) to a plain dict."""
    out = _deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        _set_dotted(out, key, value)
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: Mapping[str, Any] | None = None,
) -> T:
    """Load ``cls`` from ``base`` updated by the YAML file at ``path`` and then ``overrides``."""
    data: dict[str, Any] = _deepcopy(dict(base or {}))
    where = "config"
    if path is not None:
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = merge(data, loaded)
        where = str(path)
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, where=where)


def read_user_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A ``--config`` layer: a YAML file (top level must be a mapping) or, from the Python API, a mapping."""
    if isinstance(config, Mapping):
        return _deepcopy(dict(config))
    loaded = read_yaml(config)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{config}: top level must be a mapping")
    return loaded


def config_source(config: str | Path | Mapping[str, Any] | None) -> str | None:
    """How errors name a ``--config`` layer: its path, or ``config mapping`` for one given in Python."""
    if config is None:
        return None
    return "config mapping" if isinstance(config, Mapping) else str(config)


def merge(a: Mapping, b: Mapping) -> dict:
    """``a`` deep-updated by ``b`` (a new dict; neither argument changes): a mapping in ``b`` merges into
    a mapping of ``a`` key by key, anything else (scalars, lists, a mapping over a scalar) replaces."""
    out = _deepcopy(dict(a))
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = _deepcopy(v) if isinstance(v, (dict, list)) else v
    return out
