"""``kgc hpo`` / ``python -m kgc.hpo``: search fine-tuning hyperparameters with Optuna (TPE, pruning on validation MRR).

Examples::

    python -m kgc.hpo --dataset nations --space nations --trials 20 --max-steps 300
    python -m kgc.hpo --dataset wn18rr --space my_space.yaml --trials 30 --budget 5m --config base.yaml
    python -m kgc.finetune --dataset nations --from-scratch --config runs/hpo/nations/best.yaml

``--space`` is a YAML file (or the name of one in ``configs/hpo/``) mapping dotted fine-tuning
config keys to a range or a list of choices; ``configs/hpo/nations.yaml`` documents the format.
Each trial is one fine-tuning run (the same code path as ``kgc finetune``, from scratch unless
``--init``), selected on VALIDATION MRR only. The study folder (default
``<runs-root>/hpo/<study-name>/``) holds the Optuna SQLite storage ``study.db``, every trial's
run folder under ``trials/``, ``trials.md``/``trials.csv`` and ``best.yaml``, the best trial's
resolved config, which ``kgc finetune --config best.yaml`` accepts. Running the same command again
resumes the study: ``--trials N`` is the total of finished (complete, pruned or failed) trials, so
only the remainder runs; a trial left running by a killed process is marked failed. A trial that
raises (a bad sampled config, a NaN/inf loss, out of memory) is recorded as failed, with its
reason, and the study goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import difflib
import functools
import gc
import io
import itertools
import math
import os
import shutil
import time
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kgc.cli import run_cli
from kgc.errors import KGCError
from kgc.utils.console import say

#: search-space types and the fields each takes
SPEC_FIELDS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
               "categorical": ("type", "choices")}
#: config keys a search space cannot set (and what sets them instead)
NOT_SEARCHABLE = {"dataset": "the dataset is --dataset", "published": "published is free-form reference numbers"}
#: how many combinations of the space's bounds/choices the up-front check tries
MAX_COMBINATIONS = 4096
#: version of the study description stored in the study's user attrs
STUDY_FORMAT = 1
ATTR = "kgc_hpo"


class SpaceError(KGCError):
    """A search-space file is malformed, names a key that is not a fine-tuning config key, or has an invalid range."""


class StudyError(KGCError):
    """The study cannot be run as asked (in use by another process, created with other settings, ...)."""


class NonFiniteError(RuntimeError):
    """A trial's training loss or validation MRR is NaN or infinite (the trial fails)."""


# ---------------------------------------------------------------------------------------------------------------
# the search space
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched config key: a ``float``/``int`` range (``log``, ``step``) or ``categorical`` choices."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices or ())}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def suggest(self, trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices or ()))

    def representatives(self) -> list[tuple[str, Any]]:
        """``(label, value)`` pairs the up-front check tries: the bounds, or every choice."""
        if self.type == "categorical":
            return [("choice", c) for c in self.choices or ()]
        return [("low", self.low), ("high", self.high)]

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices or ())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        return self.low <= value <= self.high


def config_leaves(cls: type | None = None, prefix: str = "") -> dict[str, Any]:
    """Every dotted leaf key of :class:`kgc.finetune.FinetuneConfig` (or ``cls``) -> its type annotation."""
    if cls is None:
        from kgc.finetune import FinetuneConfig

        cls = FinetuneConfig
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(config_leaves(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = tp
    return out


def _sections(leaves: Mapping[str, Any]) -> set[str]:
    return {".".join(k.split(".")[:i]) for k in leaves for i in range(1, k.count(".") + 1)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(where: str, name: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, str) and not integer:  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpaceError(f"{where}: {name} must be an integer, got {value!r}")
        return value
    if not _is_number(value) or not math.isfinite(value):
        raise SpaceError(f"{where}: {name} must be a finite number, got {value!r}")
    return float(value)


def parse_param(key: str, spec: Any, where: str) -> Param:
    """Parse one ``key: spec`` entry of a space file (``where`` names the file in errors)."""
    at = f"{where}: {key}"
    if isinstance(spec, list):  # shorthand: a list is categorical choices
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{at}: expected a mapping such as {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}} "
                         f"or a list of choices, got {spec!r}")
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind is None:
        raise SpaceError(f"{at}: missing 'type' (one of {', '.join(SPEC_FIELDS)})")
    if kind not in SPEC_FIELDS:
        close = difflib.get_close_matches(str(kind), list(SPEC_FIELDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpaceError(f"{at}: unknown type {kind!r}{hint}; types: {', '.join(SPEC_FIELDS)}")
    allowed = SPEC_FIELDS[kind]
    for name in spec:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpaceError(f"{at}: unknown field {name!r}{hint}; type {kind} takes {', '.join(allowed)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{at}: choices must be a non-empty list, got {choices!r}")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise SpaceError(f"{at}: choice {c!r} is not a scalar (null, true/false, a number or a string)")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise SpaceError(f"{at}: choices repeat a value: {choices!r}")
        return Param(key, "categorical", choices=tuple(choices))
    integer = kind == "int"
    for name in ("low", "high"):
        if name not in spec:
            raise SpaceError(f"{at}: missing {name!r} (type {kind} needs low and high)")
    low = _number(at, "low", spec["low"], integer)
    high = _number(at, "high", spec["high"], integer)
    if low >= high:
        raise SpaceError(f"{at}: low ({low}) must be below high ({high}); fix a value with --set instead")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{at}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise SpaceError(f"{at}: log: true needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(at, "step", step, integer)
        if step <= 0:
            raise SpaceError(f"{at}: step must be > 0, got {step}")
        if log:
            raise SpaceError(f"{at}: step and log: true exclude each other")
        n = (high - low) / step
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise SpaceError(f"{at}: high - low ({high - low}) must be a multiple of step ({step})")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _check_type(param: Param, tp: Any, where: str) -> None:
    """Every value the param can take must have the config field's type (``kgc.config`` coercion)."""
    from kgc.config import ConfigError, _coerce

    at = f"{where}: {param.key}"
    for label, value in param.representatives():
        try:
            _coerce(tp, value, param.key)
        except ConfigError as exc:
            kind = f"type: {param.type}" if param.type != "categorical" else f"{label} {value!r}"
            raise SpaceError(f"{at}: {kind} does not fit the config field ({exc})") from None


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, validated search space (:func:`load_space`)."""

    params: tuple[Param, ...]
    source: str

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        return {p.key: p.to_dict() for p in self.params}

    def param(self, key: str) -> Param:
        return next(p for p in self.params if p.key == key)


def resolve_space_path(space: str | os.PathLike) -> Path:
    """A path, or the name of a file in ``configs/hpo/`` (``nations`` -> ``configs/hpo/nations.yaml``)."""
    p = Path(space)
    if p.is_file() or p.suffix in (".yaml", ".yml") or os.sep in str(space):
        if not p.is_file():
            raise SpaceError(f"{p}: search-space file not found")
        return p
    from kgc.resources import config_dir

    with contextlib.suppress(KGCError):
        preset = config_dir("hpo") / f"{space}.yaml"
        if preset.is_file():
            return preset
    raise SpaceError(f"{space}: search-space file not found (nor configs/hpo/{space}.yaml)")


def load_space(space: str | os.PathLike | Mapping[str, Any]) -> SearchSpace:
    """Read and check a search space: a YAML file, a ``configs/hpo`` name or a mapping (Python API).

    Raises :class:`SpaceError` naming the file and the key for a key that is not a fine-tuning config
    value (with a close-match hint), an unknown spec field or type, an empty or invalid range, or a
    bound/choice whose type does not fit the config field."""
    from kgc.utils.io import read_yaml

    if isinstance(space, Mapping):
        data, where = dict(space), "search space"
    else:
        path = resolve_space_path(space)
        data, where = read_yaml(path), str(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise SpaceError(f"{where}: top level must be a mapping of config keys to ranges")
    if not data:
        raise SpaceError(f"{where}: the search space is empty")
    leaves = config_leaves()
    sections = _sections(leaves)
    params = []
    for key, spec in data.items():
        if not isinstance(key, str):
            raise SpaceError(f"{where}: key {key!r} is not a dotted config key")
        root = key.split(".")[0]
        if root in NOT_SEARCHABLE:
            raise SpaceError(f"{where}: {key} cannot be searched ({NOT_SEARCHABLE[root]})")
        if key in sections:
            inner = sorted(k for k in leaves if k.startswith(key + "."))[:3]
            raise SpaceError(f"{where}: {key} is a config section, not a value; name a key inside it "
                             f"(e.g. {', '.join(inner)})")
        if key not in leaves:
            close = difflib.get_close_matches(key, [k for k in leaves if k.split(".")[0] not in NOT_SEARCHABLE], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpaceError(f"{where}: unknown config key {key!r}{hint}")
        param = parse_param(key, spec, where)
        tp = leaves[key]
        if typing.get_origin(tp) in (list, tuple, dict):
            raise SpaceError(f"{where}: {key} is a list/mapping field; only single values can be searched")
        _check_type(param, tp, where)
        params.append(param)
    return SearchSpace(tuple(params), where)


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optim.lr": 1e-3}`` -> ``{"optim": {"lr": 1e-3}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        cur = out
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
    return out


def _override_keys(overrides: Sequence[str]) -> set[str]:
    return {item.split("=", 1)[0].strip() for item in overrides if "=" in item}


# ---------------------------------------------------------------------------------------------------------------
# trial setup shared by every trial
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Setup:
    dataset: str  # as given (a registered name or a folder): what each trial passes on
    ds: Any
    space: SearchSpace
    user_config: dict[str, Any] | None
    overrides: list[str]
    max_steps: int | None
    budget: str | None
    seed: int | None
    init: str | None

    def identity(self) -> dict[str, Any]:
        """What a resumed study must share with the one in storage."""
        return {"format": STUDY_FORMAT, "dataset": self.ds.name, "fingerprint": self.ds.fingerprint,
                "space": self.space.to_dict(), "config": self.user_config, "overrides": list(self.overrides),
                "max_steps": self.max_steps, "budget": self.budget, "seed": self.seed, "init": self.init}


def _trial_args(setup: _Setup, values: Mapping[str, Any] | None = None) -> argparse.Namespace:
    """The fine-tuning flags of a trial (what :func:`_run_trial` passes to ``kgc.run_finetuning``)."""
    from kgc.resolve import namespace

    return namespace(dataset=setup.dataset, config=_trial_config(setup, values or {}) or None,
                     overrides=list(setup.overrides), max_steps=setup.max_steps, max_time=setup.budget,
                     seed=setup.seed)


def _trial_config(setup: _Setup, values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's ``--config`` layer: the study's ``--config`` with the sampled values merged in."""
    from kgc.config import merge

    config = nested(values)
    return merge(setup.user_config, config) if setup.user_config else config


def _base_config(setup: _Setup) -> list:
    """The first layers of a trial's fine-tuning config (defaults -> size defaults -> dataset file),
    resolved as ``kgc finetune`` does (:func:`kgc.resolve.finetune_base_layers`); the same for every trial."""
    from kgc.resolve import finetune_base_layers

    return finetune_base_layers(setup.ds, setup.dataset, _trial_args(setup))


def _resolve(setup: _Setup, base: list, values: Mapping[str, Any]):
    """The FinetuneConfig a trial with ``values`` gets (raises ConfigError/KGCError like the run would):
    ``base`` -> ``--config`` (with the sampled values) -> ``--set`` -> flags (:data:`kgc.resolve.FINETUNE_ORDER`)."""
    from kgc.finetune import FinetuneConfig
    from kgc.models.config import check_context_fits
    from kgc.resolve import FINETUNE_ORDER, build, finetune_layers

    layers = finetune_layers(setup.ds, setup.dataset, _trial_args(setup, values), base=base)
    cfg, _ = build(FinetuneConfig, layers, FINETUNE_ORDER, where="config")
    if setup.init is None:
        check_context_fits(cfg.model, setup.ds.max_arity, where="config")
        if cfg.model.num_roles < setup.ds.max_arity:
            raise KGCError(f"model.num_roles={cfg.model.num_roles} is below the maximum arity {setup.ds.max_arity}")
    return cfg


def check_combinations(setup: _Setup) -> None:
    """Refuse a bound or choice that no trial could use.

    Every combination of the params' representatives (bounds of a range, each choice; up to
    :data:`MAX_COMBINATIONS`) is resolved with the base config. A value that is invalid in every
    combination tried (e.g. ``model.dropout`` high 1.5, or ``model.heads`` 3 with a fixed
    ``model.dim: 32``) is a :class:`SpaceError`; one that fails only beside some other sampled value
    (heads 3 with ``model.dim`` searched over [32, 48]) is left to the trials, which record it as failed.
    """
    from kgc.config import ConfigError

    base = _base_config(setup)
    params = setup.space.params
    reps = [p.representatives() for p in params]
    ok: set[tuple[str, int]] = set()
    first_error: dict[tuple[str, int], str] = {}
    total = math.prod(len(r) for r in reps)
    for combo in itertools.islice(itertools.product(*[list(enumerate(r)) for r in reps]), MAX_COMBINATIONS):
        values = {p.key: rv[1][1] for p, rv in zip(params, combo)}
        try:
            _resolve(setup, base, values)
        except (ConfigError, KGCError) as exc:
            for p, (i, _) in zip(params, combo):
                first_error.setdefault((p.key, i), str(exc))
            continue
        ok.update((p.key, i) for p, (i, _) in zip(params, combo))
    if not ok:
        why = next(iter(first_error.values()), "")
        raise SpaceError(f"no combination of the bounds and choices of {setup.space.source} gives a valid "
                         f"fine-tuning config with this --config/--set: {why}")
    if total > MAX_COMBINATIONS:
        return  # not every combination was tried: only refuse when nothing worked
    for p, r in zip(params, reps):
        for i, (label, value) in enumerate(r):
            if (p.key, i) not in ok:
                why = first_error.get((p.key, i), "")
                what = f"{label} {value!r}" if label == "choice" else f"{label}={value!r}"
                raise SpaceError(f"{setup.space.source}: {p.key}: {what} gives no valid fine-tuning config "
                                 f"with any other value of the space ({why})")


def prepare(dataset: str | os.PathLike, space, *, config=None, overrides: Sequence[str] = (),
            max_steps: int | None = None, budget: str | None = None, seed: int | None = None,
            init: str | os.PathLike | None = None) -> _Setup:
    """Check every input before a study or a run folder exists (each problem a one-line KGCError)."""
    from kgc.config import read_user_config
    from kgc.data import load_dataset
    from kgc.resolve import FINETUNE_TUNABLE_MODEL_KEYS
    from kgc.training.config import parse_duration

    sp = load_space(space)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise KGCError(f"--max-steps must be a positive integer, got {max_steps!r}")
    if budget is not None:
        try:
            parse_duration(budget)
        except ValueError as exc:
            raise KGCError(f"--budget: {exc}") from None
        budget = str(budget)
    overrides = list(overrides or [])
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise KGCError(f"--set {item!r}: expected key=value")
    taken = {**{k: "--set" for k in _override_keys(overrides)}}
    if max_steps is not None:
        taken["trainer.max_steps"] = "--max-steps"
    if budget is not None:
        taken["trainer.max_time"] = "--budget"
    if seed is not None:
        taken["seed"] = "--seed"
    for key in sp.keys:
        if key in taken:
            raise SpaceError(f"{sp.source}: {key} is searched, but {taken[key]} also sets it; drop one of the two")
    if init is not None:
        fixed = [k for k in sp.keys if k.startswith("model.") and k.split(".")[1] not in FINETUNE_TUNABLE_MODEL_KEYS]
        if fixed:
            raise SpaceError(f"{sp.source}: {fixed[0]} cannot be searched when fine-tuning a checkpoint (--init fixes "
                             f"the architecture; searchable model keys: {', '.join(FINETUNE_TUNABLE_MODEL_KEYS)})")
        if not Path(init).exists():
            raise KGCError(f"{init}: --init checkpoint not found")
    user = None if config is None else read_user_config(config)
    ds = load_dataset(os.fspath(dataset) if isinstance(dataset, os.PathLike) else dataset)
    if len(ds.splits.get("valid", ())) == 0:
        raise KGCError(f"dataset {ds.name} has no validation split; the search selects on validation MRR "
                       "(give it a valid.txt, or hold one out of train with KGDataset.with_valid_from_train)")
    setup = _Setup(dataset=str(dataset), ds=ds, space=sp, user_config=user, overrides=overrides, max_steps=max_steps, budget=budget, seed=seed,
                   init=None if init is None else str(init))
    check_combinations(setup)
    return setup


def parse_enqueue(items: Sequence[str | Mapping[str, Any]], space: SearchSpace) -> list[dict[str, Any]]:
    """``"model.heads=3,optim.lr=1e-3"`` (or a mapping) -> checked params of a trial to run first."""
    out = []
    for item in items or []:
        if isinstance(item, Mapping):
            pairs = dict(item)
        else:
            pairs = {}
            for part in str(item).split(","):
                if "=" not in part:
                    raise KGCError(f"--enqueue {item!r}: expected KEY=VALUE[,KEY=VALUE...]")
                k, raw = part.split("=", 1)
                pairs[k.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        for k, v in pairs.items():
            if k not in space.keys:
                close = difflib.get_close_matches(k, space.keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise KGCError(f"--enqueue: {k!r} is not a key of {space.source}{hint}")
            p = space.param(k)
            if isinstance(v, str) and not p.contains(v):  # YAML 1.1 reads 1e-3 (no dot) as a string
                with contextlib.suppress(ValueError):
                    v = float(v)
            if _is_number(v) and (p.type == "float" or (p.type == "categorical" and not p.contains(v))):
                v = float(v)
            if not p.contains(v):
                raise KGCError(f"--enqueue: {k}={v!r} is outside the search space ({p.to_dict()})")
            pairs[k] = v
        out.append(pairs)
    return out


# ---------------------------------------------------------------------------------------------------------------
# pruning and divergence: a Lightning callback
# ---------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _pruning_callback_class():
    import pytorch_lightning as pl

    class TrialCallback(pl.Callback):
        """Reports ``val/mrr`` to the Optuna trial after every validation (step = optimiser step) and
        raises :class:`optuna.TrialPruned` when the pruner says so; a NaN/inf training loss or
        validation MRR raises :class:`NonFiniteError` (the trial fails instead of training on)."""

        def __init__(self, trial, monitor: str = "val/mrr"):
            self.trial = trial
            self.monitor = monitor
            self.last_step: int | None = None
            self.last_value: float | None = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if loss is not None:
                value = float(loss.detach().float().mean())
                if not math.isfinite(value):
                    raise NonFiniteError(f"training loss is {value} at step {trainer.global_step}")

        def on_validation_end(self, trainer, pl_module) -> None:
            import optuna

            if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
                return
            value = float(trainer.callback_metrics[self.monitor])
            step = int(trainer.global_step)
            if not math.isfinite(value):
                raise NonFiniteError(f"{self.monitor} is {value} at step {step}")
            if step == self.last_step:
                return
            self.trial.report(value, step)
            self.last_step, self.last_value = step, value
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} ({self.monitor} {value:.4f})")

    return TrialCallback


def TrialCallback(trial, monitor: str = "val/mrr"):
    """The Lightning callback for ``trial`` (built lazily: importing kgc.hpo does not import Lightning)."""
    return _pruning_callback_class()(trial, monitor)


# ---------------------------------------------------------------------------------------------------------------
# storage, lock, study
# ---------------------------------------------------------------------------------------------------------------
def _check_storage(storage: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(storage)
    except ArgumentError:
        raise StudyError(f"--storage {storage!r}: not a database URL (e.g. sqlite:///path/study.db)") from None


def _sqlite_path(storage: str) -> Path | None:
    if not storage.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    db = make_url(storage).database
    if not db or db == ":memory:":
        return None
    return Path(db)


def study_lock(path: Path, study_name: str) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``path`` while this process runs the study (:func:`kgc.utils.io.exclusive_lock`:
    released by the kernel when the process dies, even by SIGKILL): with the lock held, any RUNNING trial
    is stale."""
    from kgc.utils.io import exclusive_lock

    return exclusive_lock(path, lambda pid: StudyError(
        f"study {study_name!r} is being run by another process (pid {pid}, lock {path}); "
        "wait for it to finish or pass another --study-name"))


def _fail_stale(study) -> list[int]:
    """Mark the study's RUNNING trials (left by a killed process: the lock is ours) as FAIL."""
    from optuna.trial import TrialState

    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage = study._storage
        with contextlib.suppress(Exception):
            storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                        "interrupted: the process running this trial was killed")
        with contextlib.suppress(Exception):
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            failed.append(t.number)
    return failed


def _identity_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    names = {"dataset": "--dataset", "fingerprint": "the dataset's files", "space": "--space",
             "config": "--config", "overrides": "--set", "max_steps": "--max-steps", "budget": "--budget",
             "seed": "--seed", "init": "--init", "format": "the kgc version"}
    for key, flag in names.items():
        if _canon(old.get(key)) != _canon(new.get(key)):
            return f"{flag} ({_short(old.get(key))} in the study, {_short(new.get(key))} now)"
    return None


def _canon(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def _short(v: Any, n: int = 60) -> str:
    s = _canon(v)
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class HpoResult:
    """What :func:`run_hpo` returns: the study, its folder and the best (complete) trial, if any."""

    study: Any
    study_name: str
    storage: str
    out: Path
    best_trial: Any | None
    best_config: Path | None
    table: str

    @property
    def best_valid_mrr(self) -> float | None:
        return None if self.best_trial is None else float(self.best_trial.value)


def _one_line(exc: BaseException, n: int = 500) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    s = f"{exc.__class__.__name__}: {text}"
    return s if len(s) <= n else s[: n - 3] + "..."


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def _make_pruner(pruner):
    import optuna

    if pruner is None or pruner == "none":
        return optuna.pruners.NopPruner()
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if isinstance(pruner, optuna.pruners.BasePruner):
        return pruner
    raise KGCError(f"--pruner {pruner!r}: expected median or none")


def run_hpo(dataset: str | os.PathLike, space: str | os.PathLike | Mapping[str, Any], *, trials: int = 20,
            budget: str | None = None, max_steps: int | None = None, study_name: str | None = None,
            storage: str | None = None, out: str | os.PathLike | None = None,
            config: str | os.PathLike | Mapping[str, Any] | None = None, overrides: Sequence[str] = (),
            seed: int | None = None, runs_root: str | os.PathLike | None = None, pruner: Any = "median",
            init: str | os.PathLike | None = None, enqueue: Sequence[str | Mapping[str, Any]] = (),
            quiet: bool = False) -> HpoResult:
    """Run (or resume) a study of ``trials`` finished trials; see the module docstring.

    ``space``: a YAML path, a ``configs/hpo`` name or a mapping. ``budget``: per-trial wall clock
    (``trainer.max_time``); ``max_steps``: per-trial steps. ``seed`` seeds the TPE sampler and every
    trial's training (default: sampler seed 0, training seed from the config). ``pruner``: ``median``,
    ``none`` or an :class:`optuna.pruners.BasePruner`. ``enqueue``: params (``"k=v,k=v"`` or mappings)
    to try first (skipped when a trial with those params exists). ``quiet`` silences the study's
    progress lines. Each trial's own output goes to ``trials/trial-NNNN.log``. Returns an
    :class:`HpoResult` (the caller prints ``.table``)."""
    from kgc.utils.console import quiet_if

    with quiet_if(quiet):
        return _run_hpo(dataset, space, trials=trials, budget=budget, max_steps=max_steps, study_name=study_name,
                        storage=storage, out=out, config=config, overrides=overrides, seed=seed,
                        runs_root=runs_root, pruner=pruner, init=init, enqueue=enqueue)


def _run_hpo(dataset, space, *, trials, budget, max_steps, study_name, storage, out, config, overrides, seed,
             runs_root, pruner, init, enqueue) -> HpoResult:
    try:
        import optuna
    except ImportError:
        raise KGCError("kgc hpo needs Optuna, which is not installed (pip install optuna)") from None

    from kgc.training.runs import default_runs_root, slug

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise KGCError(f"--trials must be a positive integer, got {trials!r}")
    if storage is not None:
        _check_storage(storage)
    setup = prepare(dataset, space, config=config, overrides=overrides, max_steps=max_steps, budget=budget,
                    seed=seed, init=init)
    queued = parse_enqueue(enqueue, setup.space)
    pruner_obj = _make_pruner(pruner)
    if study_name is None:
        stem = Path(setup.space.source).stem if setup.space.source != "search space" else "space"
        study_name = setup.ds.name if stem == setup.ds.name else f"{setup.ds.name}-{stem}"
    study_name = slug(study_name)
    runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
    out = Path(out) if out is not None else runs_root / "hpo" / study_name
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    db = _sqlite_path(storage)
    lock_path = Path(str(db) + ".lock") if db is not None else out / "study.lock"
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    new_dirs = [d for d in (out, None if db is None else db.parent) if d is not None and not d.exists()]
    out.mkdir(parents=True, exist_ok=True)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    with study_lock(lock_path, study_name):
        try:
            study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                        sampler=optuna.samplers.TPESampler(seed=0), pruner=pruner_obj,
                                        load_if_exists=True)
        except Exception as exc:  # an unreachable, unreadable or foreign database: leave nothing behind
            for d in new_dirs:
                shutil.rmtree(d, ignore_errors=True)
            raise StudyError(f"--storage {storage!r}: cannot open the study ({_one_line(exc)})") from None
        identity = setup.identity()
        stored = study.user_attrs.get(ATTR)
        if stored is None:
            if study.get_trials(deepcopy=False):
                raise StudyError(f"study {study_name!r} in {storage} was not created by kgc hpo; pass another --study-name")
            trial_dir = out / "trials"
            if trial_dir.is_dir() and any(trial_dir.iterdir()):
                raise StudyError(f"{trial_dir} holds trial runs of a study that is not in {storage}; "
                                 "remove the folder or pass another --out")
            study.set_user_attr(ATTR, identity)
        else:
            diff = _identity_diff(stored, identity)
            if diff is not None:
                raise StudyError(f"study {study_name!r} ({storage}) was run with other settings: {diff}; "
                                 "rerun the same command to resume it, or pass another --study-name")
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise StudyError(f"study {study_name!r} in {storage} does not maximise; pass another --study-name")
        stale = _fail_stale(study)
        if stale:
            say(f"trial(s) {', '.join(map(str, stale))} of study {study_name} were left running by a killed "
                "process: marked failed")
        done = _finished(study)
        remaining = max(0, trials - done)
        # a different sampler seed after each restart: a resumed study must not replay the startup draws
        study.sampler = optuna.samplers.TPESampler(seed=(0 if seed is None else seed) + len(study.trials))
        if remaining and queued:
            for params in queued:
                study.enqueue_trial(params, skip_if_exists=True)
        say(f"study {study_name} ({storage}): {done} finished trial(s), running {remaining} more "
            f"(of --trials {trials})")
        for _ in range(remaining):
            _run_trial(study, setup, out, runs_root)
            _write_outputs(study, out, setup, study_name)  # after every trial: a killed study keeps them
        table, best_trial, best_path = _write_outputs(study, out, setup, study_name)
    return HpoResult(study=study, study_name=study_name, storage=storage, out=out, best_trial=best_trial,
                     best_config=best_path, table=table)


def _write_outputs(study, out: Path, setup: _Setup, study_name: str):
    """``trials.md``, ``trials.csv`` and (once a trial completed) ``best.yaml``; returns (table, best, path)."""
    table = trials_table(study)
    write_reports(study, out, table)
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return table, None, None
    best = study.best_trial
    path = out / "best.yaml"
    write_best_config(best, path, setup, study_name)
    return table, best, path


def _run_trial(study, setup: _Setup, out: Path, runs_root: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    from kgc.api import run_finetuning

    trial = study.ask()
    values = {p.key: p.suggest(trial) for p in setup.space.params}
    run_dir = out / "trials" / f"trial-{trial.number:04d}"
    log_path = run_dir.with_name(run_dir.name + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("log", str(log_path))
    cb = TrialCallback(trial)
    config = _trial_config(setup, values)
    t0 = time.time()
    state, value, note = TrialState.FAIL, None, ""
    try:
        with open(log_path, "a") as log, contextlib.redirect_stdout(log):  # the run's own lines
            res = run_finetuning(dataset=setup.dataset, config=config, overrides=list(setup.overrides),
                                 max_steps=setup.max_steps, max_time=setup.budget, seed=setup.seed, out=run_dir,
                                 runs_root=runs_root, from_scratch=setup.init is None, init=setup.init,
                                 skip_test=True, callbacks=[cb])
        if res is None:
            raise KGCError("the run returned no result (a multi-process strategy? trials run in one process)")
        value = res.valid_mrr
        if value is None or not math.isfinite(value):
            raise NonFiniteError(f"validation MRR is {value}")
        trial.set_user_attr("valid_mrr", float(value))
        trial.set_user_attr("steps", int(res.metrics.get("finetune_steps", 0)))
        trial.set_user_attr("config", res.metrics.get("config"))
        state, note = TrialState.COMPLETE, f"valid MRR {value:.4f}"
    except optuna.TrialPruned as exc:
        state, note = TrialState.PRUNED, str(exc) or "pruned"
        trial.set_user_attr("pruned_at_step", cb.last_step)
        if cb.last_value is not None:
            trial.set_user_attr("valid_mrr", cb.last_value)  # the in-training (subsampled) validation MRR
    except (KeyboardInterrupt, SystemExit):
        trial.set_user_attr("fail_reason", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:  # KGCError (bad sampled config), NaN/inf, OOM, any failure: the study goes on
        note = _one_line(exc)
        trial.set_user_attr("fail_reason", note)
        if not isinstance(exc, KGCError):
            trial.set_user_attr("traceback", "".join(traceback.format_exception(exc))[-4000:])
    finally:
        trial.set_user_attr("seconds", round(time.time() - t0, 2))
        gc.collect()
        _empty_cuda_cache()
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
    word = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[state.name]
    say(f"trial {trial.number} {word}: {note} ({shown}; {time.time() - t0:.1f}s)")


def _empty_cuda_cache() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _param_keys(study) -> list[str]:
    keys: list[str] = list(study.user_attrs.get(ATTR, {}).get("space", {}))
    for t in study.get_trials(deepcopy=False):
        keys += [k for k in t.params if k not in keys]
    return keys


def _rows(study, raw: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and one row per trial; ``raw``: numbers in full (CSV) instead of 4 significant digits."""
    fmt = (lambda v: "" if v is None else str(v)) if raw else _fmt
    keys = _param_keys(study)
    header = ["trial", "state", *keys, "valid MRR", "seconds", "run folder / reason"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        mrr = t.value if t.value is not None else attrs.get("valid_mrr")
        where = attrs.get("run_dir", "")
        if t.state.name == "FAIL":
            where = attrs.get("fail_reason", "failed")
        elif t.state.name == "PRUNED":
            where = f"{attrs.get('run_dir', '')} (pruned at step {attrs.get('pruned_at_step')})"
        rows.append([str(t.number), t.state.name, *[fmt(t.params.get(k)) for k in keys], fmt(mrr),
                     fmt(attrs.get("seconds")), where])
    return header, rows


def trials_table(study) -> str:
    """The study's trials as a Markdown table (number, state, params, validation MRR, run folder or reason)."""
    header, rows = _rows(study)

    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_reports(study, out: Path, table: str) -> None:
    """``trials.md`` (the table) and ``trials.csv`` (one row per trial), written atomically."""
    from kgc.utils.io import atomic_write

    header, rows = _rows(study, raw=True)
    with atomic_write(out / "trials.md", "w") as fh:
        fh.write(f"# Study {study.study_name}\n\n{table}\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    with atomic_write(out / "trials.csv", "w") as fh:
        fh.write(buf.getvalue())


#: resolved-config keys left out of best.yaml: ``--dataset`` names the dataset, ``published`` is per-dataset
BEST_DROP = ("dataset", "published")


def best_config_dict(trial) -> dict[str, Any]:
    """The best trial's full resolved fine-tuning config minus :data:`BEST_DROP`."""
    cfg = dict(trial.user_attrs.get("config") or {})
    if not cfg:
        raise KGCError(f"trial {trial.number} recorded no config")
    for key in BEST_DROP:
        cfg.pop(key, None)
    return cfg


def write_best_config(trial, path: Path, setup: _Setup, study_name: str) -> None:
    """Write ``best.yaml`` atomically: every key spelled out, so ``kgc finetune --config best.yaml``
    resolves to the best trial's config whatever layers it would otherwise merge."""
    from kgc.utils.io import atomic_write

    cfg = best_config_dict(trial)
    start = f"--init {setup.init}" if setup.init else "--from-scratch"
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    head = (f"# kgc hpo: best trial {trial.number} of study {study_name} on {setup.ds.name}, "
            f"validation MRR {trial.value:.4f}\n# params: {params}\n"
            f"# the trial's full resolved config; fine-tune with it (a longer run: add --max-steps/--max-time):\n"
            f"#   python -m kgc.finetune --dataset {setup.dataset} {start} --config {path}\n")
    with atomic_write(path, "w") as fh:
        fh.write(head)
        yaml.safe_dump(cfg, fh, sort_keys=False, default_flow_style=False)


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from kgc.training.runs import default_runs_root

    p = argparse.ArgumentParser(prog="kgc hpo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="registered name or folder")
    p.add_argument("--space", required=True, metavar="SPACE.yaml",
                   help="search space: a YAML file or a name in configs/hpo/ (see configs/hpo/nations.yaml)")
    p.add_argument("--trials", type=int, default=20, help="finished trials the study ends with (default 20)")
    p.add_argument("--budget", help="per-trial wall clock, e.g. 30s, 5m (trainer.max_time)")
    p.add_argument("--max-steps", type=int, help="per-trial optimiser steps (trainer.max_steps)")
    p.add_argument("--study-name", help="default: <dataset>-<space file stem>")
    p.add_argument("--out", help="study folder (default <runs-root>/hpo/<study-name>)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<study folder>/study.db)")
    p.add_argument("--config", help="base fine-tuning config for every trial (merged like kgc finetune --config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every trial (repeatable)")
    p.add_argument("--seed", type=int, help="seeds the TPE sampler and every trial's training")
    p.add_argument("--runs-root", default=str(default_runs_root()), help="where the hpo/ folder goes (default $KGC_RUNS or runs)")
    p.add_argument("--pruner", choices=("median", "none"), default="median",
                   help="prune trials on validation MRR (median: below the median of earlier trials at that step)")
    p.add_argument("--init", help="pretraining checkpoint every trial starts from (default: from scratch)")
    p.add_argument("--enqueue", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="params to try first (repeatable); the rest of each trial's params is sampled")
    p.add_argument("--quiet", action="store_true", help="print only the final table (each trial's output is in trials/trial-NNNN.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    res = run_hpo(args.dataset, args.space, trials=args.trials, budget=args.budget, max_steps=args.max_steps,
                  study_name=args.study_name, storage=args.storage, out=args.out, config=args.config,
                  overrides=args.overrides, seed=args.seed, runs_root=args.runs_root, pruner=args.pruner,
                  init=args.init, enqueue=args.enqueue, quiet=args.quiet)
    print(res.table, flush=True)
    if res.best_trial is None:
        print(f"[kgc] no trial of study {res.study_name} completed; no best.yaml written (reasons in {res.out / 'trials.md'})",
              flush=True)
        return 1
    print(f"[kgc] best trial {res.best_trial.number}: validation MRR {res.best_trial.value:.4f}; "
          f"config written to {res.best_config}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
