"""The config resolver: every run's config is a declared list of named layers, merged in one place.

Each kind of run declares its layer order once (later layers win)::

    FINETUNE_ORDER = defaults -> size defaults -> dataset file -> model -> --config -> --set -> flags
    PRETRAIN_ORDER = defaults -> dataset file -> model -> --config -> --set -> flags -> signals
    RESUME_ORDER   = run config -> --set -> flags

- ``defaults``: ``configs/<kind>/default.yaml`` plus the run's dataset (``--dataset``, as given).
- ``size defaults`` (fine-tuning): :func:`size_defaults` of the dataset (steps, batch, validation).
- ``dataset file``: ``configs/finetune/<dataset>.yaml`` (GPU-sized), or with ``--max-time`` on a machine
  without CUDA the CPU-budget recipe ``configs/finetune/cpu-budget/default.yaml`` then
  ``cpu-budget/<dataset>.yaml`` (:func:`dataset_layers`); ``configs/pretrain/<dataset>.yaml`` for pretraining.
- ``model``: the architecture. A ``--model`` preset, or (fine-tuning) the pretraining checkpoint's model
  config. It replaces the whole ``model`` section; a pretraining preset keeps ``model.max_len`` (the signals'
  sequence length belongs to the data). A checkpoint's architecture is *pinned*: after every later layer
  it is imposed again except :data:`FINETUNE_TUNABLE_MODEL_KEYS` (:func:`pin_architecture`, which names
  what it ignored), so ``--config``/``--set`` can change regularisation and the link-prediction additions
  but never the pretrained shape.
- ``--config``: a YAML file or, from the Python API, a mapping (:func:`kgc.config.read_user_config`).
- ``--set``: ``key.sub=value`` overrides, in the order given.
- ``flags``: the explicit CLI flags (``--max-steps``, ``--max-time``, ``--seed``, ...: :func:`kgc.cli.flag_overrides`).
- ``signals`` (pretraining): ``--signals`` as ``signals.names``.
- ``run config`` (``--resume``): the resolved ``config.yaml`` of the run folder.

:func:`resolve` merges a layer list (checking it follows the declared order) and records which layer
set each key (:attr:`Resolution.origin`, :meth:`Resolution.explain`); :func:`build` turns the result
into a config dataclass (strict: unknown keys and wrong types are errors) and applies the pinned
architecture. The CLIs (``kgc finetune``, ``kgc pretrain``, their ``--resume``), ``kgc hpo`` and
``benchmarks/train_throughput.py`` all resolve through here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from kgc.cli import flag_overrides
from kgc.config import apply_overrides, config_source, from_dict, merge, read_user_config
from kgc.models.config import ModelConfig, load_model_config
from kgc.resources import config_dir
from kgc.training.runs import slug
from kgc.utils.console import say
from kgc.utils.io import read_yaml

T = TypeVar("T")

FINETUNE_ORDER = ("defaults", "size defaults", "dataset file", "model", "--config", "--set", "flags")
PRETRAIN_ORDER = ("defaults", "dataset file", "model", "--config", "--set", "flags", "signals")
RESUME_ORDER = ("run config", "--set", "flags")

FINETUNE_CONFIG_DIR = config_dir("finetune")
PRETRAIN_CONFIG_DIR = config_dir("pretrain")
BUDGET_DIR = FINETUNE_CONFIG_DIR / "cpu-budget"

#: model fields a fine-tuning config may change on a pretrained checkpoint: regularisation, and the
#: link-prediction additions that pretraining does not train (the direct term and the query context;
#: their weights start fresh when the checkpoint lacks them)
FINETUNE_TUNABLE_MODEL_KEYS = ("dropout", "attn_dropout", "direct", "direct_dropout", "context")


@dataclass(frozen=True)
class Layer:
    """One named layer: a mapping merged in (``values``) and/or ``key=value`` strings (``overrides``).

    ``replace``: top-level sections the layer replaces instead of merging into; ``keep``: dotted keys of
    a replaced section that survive from the earlier layers (when they set them). ``pinned``: the layer's
    ``model`` section is a checkpoint's architecture (see :func:`pin_architecture`)."""

    name: str
    values: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()
    source: str | None = None
    replace: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    pinned: bool = False

    @property
    def label(self) -> str:
        return self.name if self.source is None else f"{self.name} ({self.source})"


@dataclass
class Resolution:
    """The merged plain-dict config and, per dotted leaf key, the label of the layer that set it last."""

    data: dict[str, Any]
    origin: dict[str, str]
    layers: list[Layer]

    def explain(self) -> list[str]:
        """``key: value  <- layer`` lines, sorted by key (a debugging view of the resolution)."""
        lines = []
        for key in sorted(self.origin):
            cur: Any = self.data
            for part in key.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            lines.append(f"{key}: {cur!r}  <- {self.origin[key]}")
        return lines


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out += _leaves(v, key + ".")  # an empty mapping merges nothing
        else:
            out.append(key)
    return out


def _set_origin(origin: dict[str, str], key: str, label: str) -> dict[str, str]:
    """``origin`` with ``key`` set by ``label``: entries below ``key`` and above it (a scalar it replaces) go."""
    out = {k: v for k, v in origin.items() if not (_under(k, key) or _under(key, k))}
    out[key] = label
    return out


def _under(key: str, section: str) -> bool:
    return key == section or key.startswith(section + ".")


def _get(data: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _check_order(layers: Sequence[Layer], order: Sequence[str]) -> None:
    pos = -1
    for layer in layers:
        if layer.name not in order:
            raise ValueError(f"layer {layer.name!r} is not in the declared order {' -> '.join(order)}")
        i = order.index(layer.name)
        if i < pos:
            raise ValueError(f"layer {layer.name!r} comes after {order[pos]!r}; the declared order is "
                             f"{' -> '.join(order)}")
        pos = i


def resolve(layers: Sequence[Layer], order: Sequence[str]) -> Resolution:
    """Merge ``layers`` (which must follow ``order``; a layer name may repeat, e.g. two dataset files)."""
    _check_order(layers, order)
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in layers:
        values = dict(layer.values or {})
        if layer.replace:
            kept = {key: _get(data, key)[1] for key in layer.keep if _get(data, key)[0]}
            kept_origin = {k: v for k, v in origin.items() if any(_under(k, key) for key in kept)}
            for section in layer.replace:
                if section in values:
                    data.pop(section, None)
                    origin = {k: v for k, v in origin.items() if not _under(k, section)}
            data = merge(data, values)
            for key in _leaves(values):
                origin = _set_origin(origin, key, layer.label)
            for key, value in kept.items():
                data = merge(data, _nested(key, value))
                origin = {k: v for k, v in origin.items() if not _under(k, key)}
            origin.update(kept_origin)
        elif values:
            data = merge(data, values)
            for key in _leaves(values):
                origin = _set_origin(origin, key, layer.label)
        for item in layer.overrides:
            data = apply_overrides(data, [item])
            key = item.split("=", 1)[0].strip()
            origin = _set_origin(origin, key, layer.label)
            found, value = _get(data, key)
            if found and isinstance(value, Mapping):  # --set model.context={budget: 3}: the leaves below
                origin.pop(key)
                for k in _leaves(value, key + "."):
                    origin[k] = layer.label
    return Resolution(data=data, origin=origin, layers=list(layers))


def pin_architecture(requested: ModelConfig, pretrained: Mapping[str, Any],
                     log: Callable[[str], None] = say) -> ModelConfig:
    """The checkpoint's architecture wins over any model section or override; only
    :data:`FINETUNE_TUNABLE_MODEL_KEYS` are taken from ``requested``. Prints what was overridden."""
    merged = dataclasses.asdict(requested)
    ignored = [k for k, v in pretrained.items() if k not in FINETUNE_TUNABLE_MODEL_KEYS and merged.get(k) != v]
    merged.update({k: v for k, v in pretrained.items() if k not in FINETUNE_TUNABLE_MODEL_KEYS})
    if ignored:
        log(f"keeping the pretrained architecture: ignored model.{', model.'.join(ignored)} "
            f"(only {', '.join(FINETUNE_TUNABLE_MODEL_KEYS)} can change when fine-tuning a checkpoint)")
    return from_dict(ModelConfig, merged, where="pretrained model config")


def build(cls: type[T], layers: Sequence[Layer], order: Sequence[str], where: str,
          log: Callable[[str], None] = say) -> tuple[T, Resolution]:
    """:func:`resolve` ``layers``, build ``cls`` from the result (strict) and pin a checkpoint's architecture."""
    res = resolve(layers, order)
    cfg = from_dict(cls, res.data, where=where)
    for layer in layers:
        if layer.pinned:
            pretrained = dict(layer.values["model"])
            cfg.model = pin_architecture(cfg.model, pretrained, log=log)
            for k in pretrained:
                if k not in FINETUNE_TUNABLE_MODEL_KEYS:
                    res.origin = _set_origin(res.origin, f"model.{k}", layer.label)
            res.data["model"] = dataclasses.asdict(cfg.model)
    return cfg, res


# ---- the layers of each run kind ---------------------------------------------------------------------
def size_defaults(ds) -> dict[str, Any]:
    """Defaults that follow the dataset's size, so a custom KG trains sensibly without a config.

    About 40 epochs of training queries capped at 20k steps, batch 128-1024 growing with the
    number of queries, validation about 10 times per run. Per-dataset YAML files override these.
    """
    n_queries = int(ds.arity("train").sum())  # binary: 2 per fact (both directions); n-ary: one per position
    batch = int(min(1024, max(128, 2 ** round(math.log2(max(1, n_queries / 200))))))
    steps_per_epoch = max(1, n_queries // batch)
    max_steps = int(min(20000, max(500, 40 * steps_per_epoch)))
    every = max(50, max_steps // 10)
    return {"trainer": {"batch_size": batch, "max_steps": max_steps, "val_every": every, "ckpt_every": every},
            "optim": {"warmup_steps": min(500, max_steps // 20)}}


def uses_budget_recipe(args) -> bool:
    """A wall-clock budget (``--max-time``) on a machine without CUDA (or ``--accelerator cpu``) trains
    the CPU-budget recipe instead of the GPU-sized per-dataset config."""
    if not getattr(args, "max_time", None):
        return False
    if getattr(args, "accelerator", None) == "cpu":
        return True
    import torch

    return not torch.cuda.is_available()


def dataset_layers(name: str, budget_recipe: bool) -> list[Path]:
    """The fine-tuning config files of dataset ``name`` in merge order (after the size defaults).

    GPU-sized runs: ``configs/finetune/<name>.yaml`` if it exists. CPU-budget runs:
    ``configs/finetune/cpu-budget/default.yaml`` (any dataset or custom folder), then
    ``cpu-budget/<name>.yaml`` if it exists."""
    if budget_recipe:
        return [p for p in (BUDGET_DIR / "default.yaml", BUDGET_DIR / f"{slug(name)}.yaml") if p.is_file()]
    own = FINETUNE_CONFIG_DIR / f"{slug(name)}.yaml"
    return [own] if own.is_file() else []


def default_dataset(kind: str) -> str:
    """The dataset of ``configs/<kind>/default.yaml`` (the built-in synthetic KG)."""
    return (read_yaml(config_dir(kind) / "default.yaml") or {}).get("dataset", "synthetic")


def _file_layer(name: str, path: Path) -> Layer:
    return Layer(name, read_yaml(path) or {}, source=str(path))


def finetune_base_layers(ds, dataset: str, args) -> list[Layer]:
    """defaults -> size defaults -> dataset file(s). ``dataset``: the name or folder as given (stored as
    ``dataset``); ``args`` needs ``max_time`` and ``accelerator`` (they choose the CPU-budget recipe)."""
    defaults = read_yaml(FINETUNE_CONFIG_DIR / "default.yaml") or {}
    defaults["dataset"] = dataset
    layers = [Layer("defaults", defaults, source=str(FINETUNE_CONFIG_DIR / "default.yaml")),
              Layer("size defaults", size_defaults(ds), source=f"size of {ds.name}")]
    layers += [_file_layer("dataset file", p) for p in dataset_layers(ds.name, budget_recipe=uses_budget_recipe(args))]
    return layers


def checkpoint_layer(model: Mapping[str, Any], checkpoint: str | Path) -> Layer:
    """A pretraining checkpoint's architecture: replaces ``model`` and is pinned (see :func:`pin_architecture`)."""
    return Layer("model", {"model": dict(model)}, source=f"checkpoint {checkpoint}", replace=("model",), pinned=True)


def preset_layer(preset: str, keep: tuple[str, ...] = ()) -> Layer:
    """A ``--model`` preset (a name or a YAML path): replaces the ``model`` section (but ``keep``)."""
    return Layer("model", {"model": dataclasses.asdict(load_model_config(preset))}, source=f"--model {preset}",
                 replace=("model",), keep=keep)


def user_layers(args) -> list[Layer]:
    """``--config`` (a file, or a mapping from the Python API) -> ``--set`` -> the flags."""
    layers = []
    if getattr(args, "config", None):
        layers.append(Layer("--config", read_user_config(args.config), source=config_source(args.config)))
    layers.append(Layer("--set", overrides=tuple(getattr(args, "overrides", None) or ())))
    layers.append(Layer("flags", overrides=tuple(flag_overrides(args))))
    return layers


def finetune_layers(ds, dataset: str, args, model: Layer | None = None,
                    base: Sequence[Layer] | None = None) -> list[Layer]:
    """Every layer of a new fine-tuning run (``model``: :func:`checkpoint_layer` or :func:`preset_layer`)."""
    base = list(finetune_base_layers(ds, dataset, args) if base is None else base)
    return base + ([model] if model is not None else []) + user_layers(args)


def pretrain_layers(args) -> list[Layer]:
    """Every layer of a new pretraining run."""
    defaults = read_yaml(PRETRAIN_CONFIG_DIR / "default.yaml") or {}
    dataset = args.dataset or defaults.get("dataset", "synthetic")
    defaults["dataset"] = dataset
    layers = [Layer("defaults", defaults, source=str(PRETRAIN_CONFIG_DIR / "default.yaml"))]
    ds_file = PRETRAIN_CONFIG_DIR / f"{Path(str(dataset)).name}.yaml"
    if ds_file.is_file():
        layers.append(_file_layer("dataset file", ds_file))
    if args.model:
        layers.append(preset_layer(args.model, keep=("model.max_len",)))
    layers += user_layers(args)
    if getattr(args, "signals", None):
        names = ",".join(s.strip() for s in args.signals.split(","))
        layers.append(Layer("signals", overrides=(f"signals.names=[{names}]",), source="--signals"))
    return layers


def resume_layers(run_config: Mapping[str, Any], args, source: str | None = None) -> list[Layer]:
    """A resumed run: its resolved ``config.yaml`` -> ``--set`` -> the flags (no --config, no model layer)."""
    return [Layer("run config", dict(run_config), source=source),
            Layer("--set", overrides=tuple(getattr(args, "overrides", None) or ())),
            Layer("flags", overrides=tuple(flag_overrides(args)))]


def namespace(**kwargs) -> argparse.Namespace:
    """An args-like namespace for callers that are not a CLI (``kgc hpo``): unset flags are ``None``."""
    base = {"config": None, "overrides": [], "max_steps": None, "max_time": None, "batch_size": None, "seed": None,
            "devices": None, "accelerator": None, "strategy": None, "num_nodes": None, "no_progress": False,
            "loggers": None, "model": None, "dataset": None}
    base.update(kwargs)
    return argparse.Namespace(**base)
