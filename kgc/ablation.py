"""``python -m kgc.ablation``: the per-signal pretraining ablation, one command, resumable cell by cell.

Examples::

    python -m kgc.ablation --dataset umls --finetune-steps 1500 --pretrain-steps-per-signal 300 --seeds 0,1,2
    python -m kgc.ablation --dataset fb15k237 --finetune-time 15m --pretrain-time 30m --arms none,ig_path,all
    python -m kgc.ablation --dataset fb15k237 --mode matched --budget 30m --pretrain-fraction 0.3

Arms: ``none`` (fine-tuned from scratch, always run), each signal (``random_walk``, ``shortest_path``,
``khop``, ``ig_path``, ``lcc``), ``all`` (the five, fixed uniform weights, mixed within every step as the
pretraining defaults say: ``signals.step_tasks``, ``loss.balance``), ``all-uncertainty`` (the five with
``signals.sampler=uncertainty``, the CA-MTL-style sampler) and ``all-size`` (the five with
``signals.weights=size``: every sequence equally likely, so a signal's share is its size); ``a+b`` is a
combination.

Modes (the grid folder is ``<runs>/ablation-<dataset>-<mode>/``, so the two never mix):

- ``amortised`` (default): each pretrained arm pretrains ONCE (``pretrain-<arm>/``, ``--pretrain-seed``,
  ``--pretrain-steps``/``--pretrain-time``), as a user reuses one checkpoint; then every arm x seed
  fine-tunes (``finetune-<arm>-s<seed>/``) for the same budget (``--finetune-steps``/``--finetune-time``),
  from scratch (``none``) or from that arm's checkpoint.
- ``matched``: every cell is an independent run of total wall-clock budget B (``--budget``). ``none``
  fine-tunes for B; a pretrained arm pretrains for F*B (``--pretrain-fraction`` F, a ``trainer.max_time``
  cap; ``pretrain-<arm>-s<seed>/``, per seed) then fine-tunes for (1-F)*B. Signal generation (cached)
  and the final evaluation are outside B. The time shares are the budgets: without
  ``--pretrain-steps``/``--finetune-steps`` (step caps) no configured step count stops a run, and every
  run's decay ends at its time (``optim.horizon=time``, applied before ``--pretrain-set``/``--finetune-set``).

Without a step or time flag a run trains for what its config says (``trainer.max_steps``/``max_time``).
Every arm has the same architecture: the pretraining runs use exactly the ``model`` section that
fine-tuning the dataset resolves to (``kgc finetune --from-scratch`` with the same flags, including the
CPU-budget recipe that ``--max-time`` picks on a machine without CUDA), so the initialisation is the only
difference; the other pretraining settings come from ``configs/pretrain/`` plus ``--pretrain-config`` /
``--pretrain-set``. Change the architecture with ``--finetune-config``/``--finetune-set model.*``.

Resumable: a cell with ``metrics.json`` is skipped (and listed in the manifest if it was not), a finished
pretraining run is reused, an interrupted run (pretraining or fine-tuning) continues from its
``last.ckpt`` (``--resume``). ``ablation.json`` in the
grid records its settings; rerunning a grid with another budget or config is refused. One process runs a
grid at a time (``<grid>/.lock``, an ``flock`` that dies with its process): a second is refused at once,
naming the first's pid. Afterwards the
per-signal table is printed and written to ``<grid>/report/`` (``ablation.md``, ``ablation.png``, and
the leaderboard files, which carry the same table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from kgc.cli import run_cli
from kgc.errors import KGCError
from pretrain_tasks.registry import SIGNAL_NAMES as SIGNALS

MODES = ("amortised", "matched")
# matched mode without a step flag: a step cap no run reaches, so the time share is the budget (the
# CPU-budget fine-tuning recipe uses the same number)
MATCHED_STEP_CAP = 1_000_000
#: every named arm; ``a+b`` combinations of signals are accepted too
ARMS = ("none", *SIGNALS, "all", "all-uncertainty", "all-size")
#: the default arms: no pretraining, each signal, all five
DEFAULT_ARMS = ("none", *SIGNALS, "all")
MANIFEST = "ablation.json"
MANIFEST_VERSION = 1
LOCK = ".lock"  # the grid lock (grid_lock)


# ---- arms, seeds, budgets -------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One row of the ablation: a name, the signals it pretrains on (none: from scratch) and the
    pretraining overrides that define it (``all-uncertainty``: the uncertainty sampler)."""

    name: str
    signals: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()

    @property
    def pretrained(self) -> bool:
        return bool(self.signals)


def arm(name: str) -> Arm:
    """The :class:`Arm` named ``name`` (see :data:`ARMS`; ``a+b`` combines signals); a KGCError lists the valid ones."""
    from kgc.reports.collect import signals_label

    name = name.strip()
    if name == "none":
        return Arm("none")
    if name == "all":
        return Arm("all", tuple(SIGNALS))
    if name == "all-uncertainty":
        return Arm("all-uncertainty", tuple(SIGNALS), ("signals.sampler=uncertainty",))
    if name == "all-size":
        return Arm("all-size", tuple(SIGNALS), ("signals.weights=size",))
    parts = [p.strip() for p in name.split("+")]
    if name and all(p in SIGNALS for p in parts):
        label = signals_label(parts)
        return Arm(label, tuple(s for s in SIGNALS if s in parts))
    raise KGCError(f"--arms: unknown arm {name!r}; valid arms: {', '.join(ARMS)} (or signals joined by '+')")


def parse_arms(spec: str | Sequence[str]) -> list[Arm]:
    """A comma list (or list) of arm names -> arms, ``none`` first (always included), duplicates dropped."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n and n.strip()]
    if not names:
        raise KGCError(f"--arms: no arm given; valid arms: {', '.join(ARMS)}")
    arms = [arm(n) for n in names]
    out: dict[str, Arm] = {"none": Arm("none")}
    for a in arms:
        out.setdefault(a.name, a)
    return list(out.values())


def parse_signal_set(spec: str) -> list[str]:
    """``all`` or a comma list of signal names (validated; the old ``--signals-set`` form)."""
    spec = spec.strip()
    if spec == "all":
        return list(SIGNALS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise KGCError(f"--signals-set {spec!r}: empty")
    bad = [n for n in names if n not in SIGNALS]
    if bad:
        raise KGCError(f"--signals-set {spec!r}: unknown signal {bad[0]!r} (known: {', '.join(SIGNALS)}, all)")
    return [s for s in SIGNALS if s in names]


def parse_seeds(spec: str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (duplicates dropped); a KGCError for anything else."""
    if not isinstance(spec, str):
        seeds = list(spec)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise KGCError(f"--seeds {spec!r}: expected integers")
    else:
        try:
            seeds = [int(s) for s in spec.split(",") if s.strip()]
        except ValueError:
            raise KGCError(f"--seeds {spec!r}: expected a comma list of integers, e.g. 0,1,2") from None
    if not seeds:
        raise KGCError("--seeds: no seed given (e.g. --seeds 0,1,2)")
    if any(s < 0 for s in seeds):
        raise KGCError(f"--seeds {spec!r}: seeds must be >= 0")
    return list(dict.fromkeys(seeds))


def _seconds(value: str | None, flag: str) -> float | None:
    from kgc.training.config import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise KGCError(f"{flag} {value!r}: {exc}") from None


def fmt_seconds(seconds: float) -> str:
    """A ``--max-time`` string: ``"6s"``, ``"2.4s"`` (at most 0.1 s resolution, at least 0.1 s)."""
    return f"{max(0.1, round(seconds, 1)):g}s"


@dataclass(frozen=True)
class Budget:
    """The budgets of a grid. amortised: ``finetune_*`` per fine-tuning cell, ``pretrain_*`` per
    pretraining run (None: the config decides). matched: ``budget`` (a duration) per cell split by
    ``pretrain_fraction``; the ``*_steps`` are step caps."""

    mode: str = "amortised"
    finetune_steps: int | None = None
    finetune_time: str | None = None
    pretrain_steps: int | None = None
    pretrain_time: str | None = None
    budget: str | None = None
    pretrain_fraction: float = 0.3
    pretrain_steps_per_signal: int | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
            raise KGCError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        for flag, steps in (("--finetune-steps", self.finetune_steps), ("--pretrain-steps", self.pretrain_steps)):
            if steps is not None and steps < 1:
                raise KGCError(f"{flag} must be >= 1, got {steps}")
        if self.pretrain_steps_per_signal is not None:
            if self.pretrain_steps_per_signal < 1:
                raise KGCError(f"--pretrain-steps-per-signal must be >= 1, got {self.pretrain_steps_per_signal}")
            if self.pretrain_steps is not None or self.mode == "matched":
                raise KGCError("--pretrain-steps-per-signal is for --mode amortised, instead of --pretrain-steps")
        _seconds(self.finetune_time, "--finetune-time")
        _seconds(self.pretrain_time, "--pretrain-time")
        if self.mode == "matched":
            if self.budget is None:
                raise KGCError("--mode matched needs --budget (the total wall time per cell, e.g. --budget 10m)")
            _seconds(self.budget, "--budget")
            for flag, value in (("--finetune-time", self.finetune_time), ("--pretrain-time", self.pretrain_time)):
                if value is not None:
                    raise KGCError(f"{flag} is for --mode amortised; in matched mode --budget is split by "
                                   f"--pretrain-fraction")
            if not 0 < self.pretrain_fraction < 1:
                raise KGCError(f"--pretrain-fraction must be in (0, 1), got {self.pretrain_fraction}")
        elif self.budget is not None:
            raise KGCError("--budget is for --mode matched; in amortised mode give --finetune-steps/--finetune-time "
                           "and --pretrain-steps/--pretrain-time")

    @property
    def budget_s(self) -> float | None:
        return _seconds(self.budget, "--budget")

    def schedule_sets(self) -> list[str]:
        """Overrides every run of the grid gets before ``--pretrain-set``/``--finetune-set`` (which win).
        matched: ``optim.horizon=time``, so that each run's decay ends at its share of the budget and
        not at a configured step count it may never reach (or reach early)."""
        return ["optim.horizon=time"] if self.mode == "matched" else []

    def finetune(self, a: Arm) -> dict[str, Any]:
        """``max_steps``/``max_time`` of a fine-tuning cell of arm ``a`` (matched: the time is the budget;
        without ``--finetune-steps`` no configured step count stops a cell early)."""
        if self.mode == "matched":
            b = self.budget_s
            return {"max_steps": self.finetune_steps or MATCHED_STEP_CAP,
                    "max_time": fmt_seconds(b * (1 - self.pretrain_fraction) if a.pretrained else b)}
        return {"max_steps": self.finetune_steps, "max_time": self.finetune_time}

    def pretrain(self, a: Arm) -> dict[str, Any]:
        """``max_steps``/``max_time`` of arm ``a``'s pretraining run (``pretrain_steps_per_signal``: that
        many steps for each of the arm's signals, so that ``all`` trains each signal as long as a
        single-signal arm does)."""
        if self.mode == "matched":
            return {"max_steps": self.pretrain_steps or MATCHED_STEP_CAP,
                    "max_time": fmt_seconds(self.budget_s * self.pretrain_fraction)}
        steps = self.pretrain_steps
        if self.pretrain_steps_per_signal is not None:
            steps = self.pretrain_steps_per_signal * len(a.signals)
        return {"max_steps": steps, "max_time": self.pretrain_time}

    def describe(self) -> str:
        def part(steps, time):
            bits = ([f"{steps} steps"] if steps else []) + ([f"max {time}"] if time else [])
            return ", ".join(bits) or "as configured"

        if self.mode == "matched":
            b = self.budget_s
            f = self.pretrain_fraction
            return (f"budget {fmt_seconds(b)} per cell: none fine-tunes {fmt_seconds(b)}; a pretrained arm pretrains "
                    f"{fmt_seconds(b * f)} then fine-tunes {fmt_seconds(b * (1 - f))}")
        pt = (f"{self.pretrain_steps_per_signal} steps per signal" if self.pretrain_steps_per_signal
              else part(self.pretrain_steps, self.pretrain_time))
        return (f"pretraining once per arm ({pt}); fine-tuning per cell "
                f"({part(self.finetune_steps, self.finetune_time)})")


def grid_dir(runs_dir: str | Path, dataset: str, mode: str) -> Path:
    """``<runs>/ablation-<dataset>-<mode>``."""
    return Path(runs_dir) / f"ablation-{Path(str(dataset)).name}-{mode}"


# ---- the architecture every arm shares ------------------------------------------------------------
def _finetune_kwargs(seed: int, limits: dict[str, Any], config: str | None, sets: Sequence[str]) -> dict[str, Any]:
    return {"seed": seed, **limits, "config": config, "overrides": list(sets)}


def finetune_model(dataset: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section (a plain dict) that ``kgc.run_finetuning(dataset, from_scratch=True, **kwargs)``
    trains: the CLI's parser and :func:`kgc.finetune.resolve_config`, nothing else."""
    from kgc import finetune
    from kgc.config import to_dict
    from kgc.data import load_dataset

    argv = ["--dataset", str(dataset), "--from-scratch", "--no-progress"]
    for key, flag in (("seed", "--seed"), ("max_steps", "--max-steps"), ("max_time", "--max-time")):
        if kwargs.get(key) is not None:
            argv += [flag, str(kwargs[key])]
    for item in kwargs.get("overrides") or ():
        argv += ["--set", item]
    args = finetune.build_parser().parse_args(argv)
    args.config = kwargs.get("config")
    cfg = finetune.resolve_config(args, load_dataset(str(dataset)), str(dataset))
    return to_dict(cfg.model)


def pretrain_config_mapping(model: dict[str, Any], pretrain_config: str | None,
                            log: Callable[[str], None] = print) -> dict[str, Any]:
    """The ``--config`` mapping of a pretraining run: ``--pretrain-config`` (if any) with its ``model``
    section replaced by the fine-tuning architecture ``model``."""
    from kgc.config import read_user_config

    data = read_user_config(pretrain_config) if pretrain_config else {}
    if data.get("model") is not None and data.get("model") != model:
        log(f"[kgc] ablation: ignoring the model section of {pretrain_config}: every arm pretrains the "
            f"fine-tuning architecture (change it with --finetune-config / --finetune-set model.*)")
    data["model"] = dict(model)
    return data


# ---- the grid -------------------------------------------------------------------------------------
@dataclass
class AblationResult:
    """What :func:`run_ablation` did: the grid folder, the fine-tuning cells run and skipped
    (``"<arm>/seed <s>"``) and the pretraining runs run (new or continued) and reused (folder names)."""

    grid: Path
    mode: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    pretrained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def _finished_pretrain(folder: Path) -> bool:
    """kgc.pretrain records ``wall_time_s`` when training ended normally (max_steps or max_time); a
    killed or preempted run has a ``last.ckpt`` but no ``wall_time_s``."""
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return (folder / "checkpoints" / "last.ckpt").is_file() and "wall_time_s" in meta


def _settings(dataset: str, budget: Budget, pretrain_seed: int, model: dict, pretrain_config: str | None,
              finetune_config: str | None, pretrain_set: Sequence[str], finetune_set: Sequence[str]) -> dict:
    return {"dataset": Path(str(dataset)).name, "mode": budget.mode,
            "budget": {k: getattr(budget, k) for k in ("finetune_steps", "finetune_time", "pretrain_steps",
                                                       "pretrain_time", "budget", "pretrain_fraction",
                                                       "pretrain_steps_per_signal")
                       if (budget.mode == "matched" or k != "pretrain_fraction")
                       and (k != "pretrain_steps_per_signal" or budget.pretrain_steps_per_signal is not None)},
            "pretrain_seed": pretrain_seed if budget.mode == "amortised" else None,
            "pretrain_config": pretrain_config, "finetune_config": finetune_config,
            "pretrain_set": list(pretrain_set), "finetune_set": list(finetune_set), "model": model}


def _load_manifest(grid: Path, settings: dict) -> dict:
    from kgc.utils.io import read_json

    path = grid / MANIFEST
    if not path.is_file():
        return {"version": MANIFEST_VERSION, "settings": settings, "arms": {}, "cells": {}}
    try:
        data = read_json(path)
        old = data["settings"]
        data.setdefault("arms", {})
        data.setdefault("cells", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KGCError(f"{path}: unreadable ablation manifest ({exc}); remove it or use another --runs") from None
    diff = [k for k in settings if old.get(k) != settings[k]]
    if diff:
        raise KGCError(f"{grid} was run with other settings ({', '.join(diff)} differ: "
                       + "; ".join(f"{k}: {old.get(k)!r} vs now {settings[k]!r}" for k in diff[:2])
                       + "); its cells would not be comparable: use another --runs folder or remove the grid")
    return data


def _save_manifest(grid: Path, data: dict) -> None:
    from kgc.utils.io import write_json

    write_json(grid / MANIFEST, data)


def grid_lock(grid: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on ``grid/.lock`` while one process runs the grid's cells (released by the kernel
    when the process dies, even by SIGKILL): a second ``kgc ablation`` on the same grid is refused at once."""
    from kgc.utils.io import exclusive_lock

    return exclusive_lock(grid / LOCK, lambda pid: KGCError(
        f"{grid} is being run by another kgc ablation process (pid {pid}, lock {grid / LOCK}); wait for it to "
        "finish, or use another --runs folder"))


def run_ablation(dataset: str, *, mode: str = "amortised", arms: Sequence[str] | str = DEFAULT_ARMS,
                 seeds: Sequence[int] | str = (0, 1, 2), runs_dir: str | Path | None = None, pretrain_seed: int = 0,
                 finetune_steps: int | None = None, finetune_time: str | None = None,
                 pretrain_steps: int | None = None, pretrain_time: str | None = None, budget: str | None = None,
                 pretrain_fraction: float = 0.3, pretrain_steps_per_signal: int | None = None,
                 pretrain_config: str | None = None,
                 finetune_config: str | None = None, pretrain_set: Sequence[str] = (),
                 finetune_set: Sequence[str] = (), pretrain_only: bool = False,
                 log: Callable[[str], None] = print) -> AblationResult:
    """Run every missing cell of the ablation grid of ``dataset`` (see the module docstring); with
    ``pretrain_only`` (amortised), only the pretraining runs of its pretrained arms."""
    from kgc.api import run_finetuning, run_pretraining
    from kgc.training.runs import default_runs_root

    b = Budget(mode=mode, finetune_steps=finetune_steps, finetune_time=finetune_time, pretrain_steps=pretrain_steps,
               pretrain_time=pretrain_time, budget=budget, pretrain_fraction=float(pretrain_fraction),
               pretrain_steps_per_signal=pretrain_steps_per_signal)
    b.validate()
    arm_list = parse_arms(arms)
    seed_list = parse_seeds(seeds)
    pretrained_arms = any(a.pretrained for a in arm_list)
    if pretrain_only and b.mode != "amortised":
        raise KGCError("--pretrain-only is for --mode amortised; in matched mode a cell's pretraining is part of it")
    if pretrain_only and not pretrained_arms:
        raise KGCError(f"--pretrain-only: no pretrained arm in --arms {','.join(a.name for a in arm_list)}")
    if pretrain_seed is None or pretrain_seed < 0:
        raise KGCError(f"--pretrain-seed must be >= 0, got {pretrain_seed}")
    for flag, path in (("--pretrain-config", pretrain_config), ("--finetune-config", finetune_config)):
        if path and not Path(path).is_file():
            raise KGCError(f"{flag} {path}: config file not found")
    pretrain_set, finetune_set = list(pretrain_set or []), list(finetune_set or [])
    bad = [s for s in pretrain_set if s.split("=", 1)[0].strip().split(".")[0] == "model"]
    if bad:
        raise KGCError(f"--pretrain-set {bad[0]}: the pretraining architecture is the fine-tuning one (the same in "
                       f"every arm); change it with --finetune-set {bad[0]}")
    grid = grid_dir(runs_dir if runs_dir is not None else default_runs_root(), dataset, b.mode)

    none_kwargs = _finetune_kwargs(seed_list[0], b.finetune(Arm("none")), finetune_config, finetune_set)
    model = finetune_model(dataset, none_kwargs)  # the architecture of every arm
    settings = _settings(dataset, b, pretrain_seed, model, pretrain_config, finetune_config, pretrain_set, finetune_set)
    grid.mkdir(parents=True, exist_ok=True)
    with grid_lock(grid):  # one process per grid: two would run the same missing cell twice
        manifest = _load_manifest(grid, settings)
        for a in arm_list:
            manifest["arms"][a.name] = {"signals": list(a.signals), "pretrain_set": list(a.sets)}
        _save_manifest(grid, manifest)
        log(f"[kgc] ablation {b.mode}: {Path(str(dataset)).name}, arms {', '.join(a.name for a in arm_list)}, seeds "
            f"{seed_list}; {b.describe()}; model {model['name']} dim {model['dim']} x {model['layers']} layers; "
            f"grid {grid}")

        res = AblationResult(grid=grid, mode=b.mode)
        pt_config = pretrain_config_mapping(model, pretrain_config, log) if pretrained_arms else None
        ready: dict[Path, Path] = {}

        def pretrain_dir(a: Arm, seed: int) -> Path:
            return grid / (f"pretrain-{a.name}" if b.mode == "amortised" else f"pretrain-{a.name}-s{seed}")

        def pretrain(a: Arm, seed: int) -> Path:
            """The last.ckpt of arm ``a``'s pretraining run (run, continued or reused)."""
            pt = pretrain_dir(a, seed)
            if pt in ready:
                return ready[pt]
            if _finished_pretrain(pt):
                log(f"[kgc] ablation: reusing pretraining run {pt}")
                res.reused.append(pt.name)
            elif (pt / "checkpoints" / "last.ckpt").is_file() and (pt / "run.json").is_file():
                log(f"[kgc] ablation: continuing pretraining run {pt} from its last checkpoint")
                run_pretraining(resume=pt)
                res.pretrained.append(pt.name)
            else:
                if pt.exists():  # created but no checkpoint yet: nothing worth keeping
                    shutil.rmtree(pt)
                log(f"[kgc] ablation: pretraining {a.name} (seed {seed}) -> {pt}")
                run_pretraining(str(dataset), signals=",".join(a.signals), out=pt, runs_root=grid, seed=seed,
                                config=pt_config, overrides=b.schedule_sets() + pretrain_set + list(a.sets),
                                **b.pretrain(a))
                res.pretrained.append(pt.name)
            if not _finished_pretrain(pt):
                raise KGCError(f"pretraining {pt} did not finish (no wall_time_s in run.json)")
            ready[pt] = pt / "checkpoints" / "last.ckpt"
            return ready[pt]

        if pretrain_only:  # the checkpoints that later runs of the grid reuse
            for a in arm_list:
                if a.pretrained:
                    pretrain(a, pretrain_seed)
            return res
        for seed in seed_list:
            for a in arm_list:
                ft = grid / f"finetune-{a.name}-s{seed}"
                cell = f"{a.name}/seed {seed}"
                if (ft / "metrics.json").is_file():
                    log(f"[kgc] ablation: {cell} finished ({ft / 'metrics.json'}); skipping")
                    res.skipped.append(cell)
                    if ft.name not in manifest["cells"]:  # finished before the manifest knew it: the report reads it
                        pt_seed = pretrain_seed if b.mode == "amortised" else seed
                        pt_name = pretrain_dir(a, pt_seed).name if a.pretrained else None
                        manifest["cells"][ft.name] = {"arm": a.name, "seed": seed, "pretrain": pt_name}
                        _save_manifest(grid, manifest)
                    continue
                init: dict[str, Any] = {"from_scratch": True}
                pt_name = None
                if a.pretrained:
                    ckpt = pretrain(a, pretrain_seed if b.mode == "amortised" else seed)
                    init, pt_name = {"init": ckpt}, ckpt.parent.parent.name
                manifest["cells"][ft.name] = {"arm": a.name, "seed": seed, "pretrain": pt_name}
                _save_manifest(grid, manifest)
                if (ft / "checkpoints" / "last.ckpt").is_file() and (ft / "run.json").is_file():
                    log(f"[kgc] ablation: continuing fine-tuning run {ft} from its last checkpoint")
                    run_finetuning(resume=ft)
                else:
                    if ft.exists():
                        shutil.rmtree(ft)
                    log(f"[kgc] ablation: fine-tuning {cell} -> {ft}")
                    run_finetuning(str(dataset), out=ft, runs_root=grid, **init,
                                   **_finetune_kwargs(seed, b.finetune(a), finetune_config,
                                                      b.schedule_sets() + finetune_set))
                if not (ft / "metrics.json").is_file():
                    raise KGCError(f"fine-tuning {ft} failed (no metrics.json)")
                res.ran.append(cell)
    return res


def run_grid(dataset: str, pretrain_steps: int, finetune_steps: int, signal_sets: list[list[str]],
             seeds: list[int], runs_dir: str | Path, pretrain_config: str | None = None,
             finetune_config: str | None = None, finetune_max_time: str | None = None,
             pretrain_set: list[str] | None = None, finetune_set: list[str] | None = None,
             log=print) -> dict[str, list[str]]:
    """The old entry point: an amortised grid of signal sets (lists of names) with step budgets;
    returns ``{"ran": [...], "skipped": [...]}``. Prefer :func:`run_ablation`."""
    from kgc.reports.collect import signals_label

    if pretrain_steps < 1 or finetune_steps < 1:
        raise KGCError("--pretrain-steps and --finetune-steps must be >= 1")
    arms = ["none"] + [signals_label(s) for s in signal_sets if s]
    res = run_ablation(dataset, mode="amortised", arms=arms, seeds=seeds, runs_dir=runs_dir,
                       finetune_steps=finetune_steps, finetune_time=finetune_max_time, pretrain_steps=pretrain_steps,
                       pretrain_config=pretrain_config, finetune_config=finetune_config,
                       pretrain_set=pretrain_set or [], finetune_set=finetune_set or [], log=log)
    return {"ran": res.ran, "skipped": res.skipped}


# ---- the report -----------------------------------------------------------------------------------
def report(grid: str | Path, out: str | Path | None = None, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write ``<grid>/report/`` (or ``out``): ``ablation.md`` + ``ablation.png`` (the per-signal table of
    this grid) and the leaderboard files; print the table. Returns the written paths."""
    from kgc.reports.ablation import signal_tables
    from kgc.reports.build import build_report
    from kgc.reports.collect import collect_runs
    from kgc.reports.render import signal_table_text, write_ablation_report

    grid = Path(grid)
    out_dir = Path(out) if out else grid / "report"
    paths = build_report(grid, out_dir, warn=lambda m: None)
    tables = signal_tables(collect_runs(grid, warn=lambda m: None))
    paths.update(write_ablation_report(tables, out_dir))
    for t in tables:
        log(signal_table_text(t))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgc ablation", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="registered name or folder")
    p.add_argument("--mode", choices=MODES, default="amortised",
                   help="amortised (default): pretrain once per arm, fine-tune every arm x seed for the same "
                        "budget; matched: a total --budget per cell, pretraining time counted inside it")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help=f"comma list from: {', '.join(ARMS)} (or a+b combinations); default "
                        f"{','.join(DEFAULT_ARMS)}; none is always included")
    p.add_argument("--signals-set", action="append", metavar="SIGNALS", help=argparse.SUPPRESS)  # the old form
    p.add_argument("--seeds", default="0,1,2", help="comma list of fine-tuning seeds (default 0,1,2)")
    p.add_argument("--pretrain-seed", type=int, default=0,
                   help="seed of the one pretraining run per arm (amortised; default 0). In matched mode each "
                        "cell pretrains with its own seed")
    p.add_argument("--finetune-steps", "--budget-finetune-steps", dest="finetune_steps", type=int,
                   help="optimiser steps per fine-tuning run (a cap in matched mode)")
    p.add_argument("--finetune-time", "--budget-finetune-time", dest="finetune_time",
                   help="wall-clock cap per fine-tuning run, e.g. 5m (amortised)")
    p.add_argument("--pretrain-steps", "--budget-pretrain-steps", dest="pretrain_steps", type=int,
                   help="optimiser steps per pretraining run (a cap in matched mode)")
    p.add_argument("--pretrain-time", help="wall-clock cap per pretraining run, e.g. 30m (amortised)")
    p.add_argument("--pretrain-steps-per-signal", type=int,
                   help="amortised, instead of --pretrain-steps: N steps per signal of the arm (all: 5 N), so that "
                        "every signal of a mixture trains as long as it does alone")
    p.add_argument("--budget", help="matched: total wall time per cell (pretraining + fine-tuning), e.g. 10m")
    p.add_argument("--pretrain-fraction", type=float, default=0.3,
                   help="matched: share of --budget spent pretraining (default 0.3)")
    p.add_argument("--runs", default=None,
                   help="runs folder (default $KGC_RUNS or runs/); the grid is <runs>/ablation-<dataset>-<mode>/")
    p.add_argument("--pretrain-config", help="YAML config of the pretraining runs (its model section is replaced "
                                             "by the fine-tuning architecture)")
    p.add_argument("--finetune-config", help="YAML config of the fine-tuning runs (kgc finetune --config)")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                   help="pretraining override (repeatable; not model.*)")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="fine-tuning override (repeatable; model.* changes every arm's architecture)")
    p.add_argument("--pretrain-only", action="store_true",
                   help="amortised: run (or finish) only the pretraining runs of the pretrained arms, no "
                        "fine-tuning cells and no report; a later run of the grid reuses them")
    p.add_argument("--out", help="report folder (default <grid>/report)")
    return p


def main(argv: list[str] | None = None) -> int:
    from kgc.reports.collect import signals_label

    args = build_parser().parse_args(argv)
    arms = args.arms
    if args.signals_set:  # the old repeatable --signals-set 'a,b' form: one arm per set
        arms = ["none"] + [signals_label(parse_signal_set(s)) for s in args.signals_set]
    res = run_ablation(args.dataset, mode=args.mode, arms=arms, seeds=args.seeds, runs_dir=args.runs,
                       pretrain_seed=args.pretrain_seed, finetune_steps=args.finetune_steps,
                       finetune_time=args.finetune_time, pretrain_steps=args.pretrain_steps,
                       pretrain_time=args.pretrain_time, budget=args.budget,
                       pretrain_fraction=args.pretrain_fraction,
                       pretrain_steps_per_signal=args.pretrain_steps_per_signal, pretrain_config=args.pretrain_config,
                       finetune_config=args.finetune_config, pretrain_set=args.pretrain_set,
                       finetune_set=args.finetune_set, pretrain_only=args.pretrain_only)
    if args.pretrain_only:
        print(f"[kgc] ablation: {len(res.pretrained)} pretraining run(s) run, {len(res.reused)} reused; "
              f"no fine-tuning (--pretrain-only); grid {res.grid}")
        sys.stdout.flush()
        return 0
    paths = report(res.grid, args.out)
    print(f"[kgc] ablation: {len(res.ran)} cell(s) run, {len(res.skipped)} already finished; "
          f"{len(res.pretrained)} pretraining run(s) run, {len(res.reused)} reused; report in {paths['ablation_md']}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_cli(main)
