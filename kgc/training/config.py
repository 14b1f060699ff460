"""Training configuration shared by pretraining and fine-tuning (strict, documented defaults).

Every field is documented here; ``configs/pretrain/*.yaml`` and
``configs/finetune/*.yaml`` set them per dataset. Unknown keys are errors.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Literal

from kgc.errors import KGCError


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and a decay schedule.

    lr: peak learning rate. weight_decay: AdamW decoupled decay (not applied to
    norms, biases and embeddings of special tokens). betas: AdamW betas.
    warmup_steps: linear warm-up from 0. schedule: after warm-up, ``constant``,
    ``cosine`` (to ``min_lr_ratio * lr`` at ``max_steps``) or ``linear``.
    horizon: where the decay ends. ``steps`` = at ``trainer.max_steps``; ``time`` = at
    ``trainer.max_time`` of training wall time or at ``max_steps``, whichever comes first (for
    budgeted runs, where the step cap is never reached; the elapsed time survives ``--resume``
    through Lightning's Timer state). ``time`` makes the schedule depend on the machine's speed.
    grad_clip: gradient-norm clipping (0 = off).
    embedding_lr: peak learning rate of the embedding tables (token and entity embeddings, entity
    bias, the direct term's relation and role tables); ``null`` = ``lr``. Knowledge-graph
    embeddings train well at 1e-2 with Adam, where a Transformer's blocks diverge; the schedule
    scales both alike.
    """

    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    min_lr_ratio: float = 0.05
    horizon: Literal["steps", "time"] = "steps"
    grad_clip: float = 1.0
    embedding_lr: float | None = None

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.embedding_lr is not None and self.embedding_lr <= 0:
            raise ValueError(f"embedding_lr must be > 0 or null, got {self.embedding_lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.horizon not in ("steps", "time"):
            raise ValueError(f"horizon must be 'steps' or 'time', got {self.horizon!r}")


@dataclass
class SignalLossConfig:
    """The output layer of pretraining (``kgc.training.losses.SignalLoss``; docs/decisions.md,
    "Cheap pretraining steps").

    kind: ``sampled`` (default) - a target is scored only against tokens of its own class: a relation,
    hop, bucket or EOS target over the structure tokens (every id below the first entity), an entity
    target over sampled entities (the batch's other entity targets plus ``negatives`` shared uniform
    draws, with the log-probability correction; exact over all entities when ``negatives`` >= the
    number of entities); ``typed`` - the same classes, entity targets exact over all entities;
    ``full`` - every target over the whole vocabulary (the reference, and what a GPU can afford).
    negatives: shared uniform entity negatives per step (``sampled``). in_batch: the batch's other
    entity targets are negatives too (``sampled``). direct: an entity target that follows an
    ``(entity, relation)`` step of a path (or a 1-hop item of its centre) adds the model's direct
    term of that entity and relation to its query vector, as link prediction does for ``(h, r, ?)``
    (no effect when ``model.direct`` is ``none``). Validation always takes the exact ``typed`` loss.
    balance: ``tasks`` (default) - a step's loss is the mean over the step's tasks of each task's token
    mean, so mixed-task steps (``signals.step_tasks: mixed``) weigh tasks by the mixture, not by how
    many target tokens their sequences have (a k-hop sequence has ten times an lcc one's); ``tokens`` -
    the mean over its target tokens. With one task per step both are the token mean.
    """

    kind: Literal["sampled", "typed", "full"] = "sampled"
    negatives: int = 1024
    in_batch: bool = True
    direct: bool = True
    balance: Literal["tokens", "tasks"] = "tasks"

    def validate(self) -> None:
        if self.kind not in ("sampled", "typed", "full"):
            raise ValueError(f"kind must be 'sampled', 'typed' or 'full', got {self.kind!r}")
        if self.negatives < 1:
            raise ValueError(f"negatives must be >= 1, got {self.negatives}")
        if self.balance not in ("tokens", "tasks"):
            raise ValueError(f"balance must be 'tokens' or 'tasks', got {self.balance!r}")


@dataclass
class TrainerConfig:
    """Loop settings passed to Lightning.

    max_steps: optimiser steps. max_time: wall-clock cap (``"5m"``, ``"90s"``,
    ``"1h30m"`` or ``"DD:HH:MM:SS"``; ``null`` = none). batch_size: sequences per
    step (per device). val_every: validation every N steps (0 = only at the end).
    ckpt_every: checkpoint every N steps (a killed run loses at most this many).
    log_every: log every N steps. precision: ``auto`` = bf16-mixed on CUDA, 32 on
    CPU. accelerator/devices/strategy: as Lightning takes them (``ddp`` works on
    CPU with gloo). num_nodes: machines of a multi-node DDP run (Lightning's ``num_nodes``; under
    SLURM every task is launched by ``srun``, see the README). deterministic:
    ``torch.use_deterministic_algorithms``. num_workers: DataLoader workers.
    progress_bar: ``false`` (``--no-progress``) turns Lightning's progress bar off wherever
    ``logging.progress`` would show it (plain step lines are unaffected).
    """

    max_steps: int = 2000
    max_time: str | None = None
    batch_size: int = 256
    val_every: int = 500
    ckpt_every: int = 500
    log_every: int = 50
    precision: str = "auto"
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    deterministic: bool = False
    num_workers: int = 0
    progress_bar: bool = True

    def validate(self) -> None:
        for key in ("max_steps", "batch_size", "num_nodes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("val_every", "ckpt_every", "num_workers"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_time is not None:
            parse_duration(self.max_time)


#: the loggers ``logging.loggers`` may name (Lightning's CSV, TensorBoard, MLflow and W&B loggers)
LOGGER_NAMES = ("csv", "tensorboard", "mlflow", "wandb")
#: the progress modes of ``logging.progress``
PROGRESS_MODES = ("auto", "bar", "lines", "none")


@dataclass
class MLflowConfig:
    """The MLflow tracker (``logging.loggers: [..., mlflow]``; needs ``pip install 'kgc[mlflow]'``).

    tracking_uri: the tracking store; ``null`` = ``sqlite:///<root>/mlflow.db``, where ``<root>`` is
    the folder holding the run folder (the runs root, ``runs/``, unless ``--out`` puts the run
    elsewhere), so the runs of one root share a store (MLflow 3 refuses the plain file store).
    experiment_name: ``null`` = ``kgc-<kind>`` (``kgc-pretrain`` / ``kgc-finetune``).
    run_name: ``null`` = the run folder's name.
    artifact_location: where a *new* experiment keeps its artifacts; ``null`` = ``<root>/mlartifacts``
    beside a local SQLite store, the store's own default otherwise.
    """

    tracking_uri: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    artifact_location: str | None = None


@dataclass
class WandbConfig:
    """The Weights & Biases tracker (``logging.loggers: [..., wandb]``; needs ``pip install 'kgc[wandb]'``).

    project: the W&B project. mode: ``offline`` (default: files in the run folder's ``logs/wandb``,
    upload later with ``wandb sync``), ``online`` (needs ``wandb login``) or ``disabled``.
    entity: team or user (``null`` = your default). run_name: ``null`` = the run folder's name.
    tags: W&B run tags.
    """

    project: str = "kgc"
    mode: Literal["offline", "online", "disabled"] = "offline"
    entity: str | None = None
    run_name: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggingConfig:
    """What a training run logs and prints (the top-level ``logging:`` section of both CLIs).

    loggers: Lightning loggers, any of ``csv`` (``logs/csv/metrics.csv``), ``tensorboard``
    (``logs/tb``), ``mlflow`` and ``wandb`` (``--logger a,b`` sets this list). The resolved config is
    logged to each as hyperparameters; fine-tuning also logs its test metrics and ``metrics.json``
    to MLflow and W&B.
    progress: ``auto`` = Lightning's progress bar when stdout is a terminal, plain step lines
    otherwise (a batch job, CI, ``> log.txt``); ``bar``, ``lines`` or ``none`` force one
    (``trainer.progress_bar: false`` / ``--no-progress`` turns the bar off; ``--quiet`` both).
    every_n_steps / every_s: a step line every N optimiser steps or S seconds of training or
    validation, whichever comes first (0 turns that rule off; not both).
    """

    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    progress: Literal["auto", "bar", "lines", "none"] = "auto"
    every_n_steps: int = 100
    every_s: float = 20.0
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def validate(self) -> None:
        unknown = [n for n in self.loggers if n not in LOGGER_NAMES]
        if unknown:
            raise ValueError(f"unknown logger {unknown[0]!r} in loggers; valid loggers: {', '.join(LOGGER_NAMES)}")
        self.loggers = list(dict.fromkeys(self.loggers))  # a name given twice is one logger
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, got {self.progress!r}")
        if self.every_n_steps < 0 or self.every_s < 0:
            raise ValueError(f"every_n_steps and every_s must be >= 0, got {self.every_n_steps}, {self.every_s}")
        if self.every_n_steps == 0 and self.every_s == 0:
            raise ValueError("every_n_steps and every_s cannot both be 0")
        if any(n in ("mlflow", "wandb") for n in self.loggers):
            check_loggers_available(self)  # a missing extra fails here, before any run folder exists


# ---- optional logger extras (kgc.training.tracking re-exports these) --------------------------------
#: logger name -> (extra, modules it imports); the SQLite store of MLflow needs SQLAlchemy and Alembic
_EXTRAS = {"mlflow": ("mlflow", ("mlflow",)), "wandb": ("wandb", ("wandb",))}
_SQL_MODULES = ("sqlalchemy", "alembic")


class MissingExtraError(KGCError):
    """A logger was asked for whose optional dependency is not installed."""


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:  # also a ``sys.modules[name] = None`` block
        return False
    return True


def check_loggers_available(cfg: "LoggingConfig") -> None:
    """Raise :class:`MissingExtraError` naming the first logger of ``cfg`` whose extra is missing."""
    for name in cfg.loggers:
        if name not in _EXTRAS:
            continue
        extra, modules = _EXTRAS[name]
        if name == "mlflow" and (cfg.mlflow.tracking_uri is None or cfg.mlflow.tracking_uri.startswith("sqlite:")):
            modules = modules + _SQL_MODULES
        missing = [m for m in modules if not _importable(m)]
        if missing:
            raise MissingExtraError(f"logger {name!r} needs the {extra} extra ({missing[0]} is not installed): "
                                    f"pip install 'kgc[{extra}]'")


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``"5m"``, ``"1h30m"``, ``"90s"``, ``"90"`` or ``"DD:HH:MM:SS"``; must be > 0."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip()
        if ":" in s:
            parts = s.split(":")
            if len(parts) > 4 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"max_time {text!r}: expected DD:HH:MM:SS")
            mult = [86400, 3600, 60, 1][-len(parts):]
            seconds = float(sum(int(p) * m for p, m in zip(parts, mult)))
        else:
            try:
                seconds = float(s)
            except ValueError:
                m = _DURATION.match(s)
                if not m or not any(m.groups()):
                    raise ValueError(f"max_time {text!r}: expected e.g. '5m', '1h30m', '90s'") from None
                h, mi, se = (float(g) if g else 0.0 for g in m.groups())
                seconds = h * 3600 + mi * 60 + se
    if seconds <= 0:
        raise ValueError(f"max_time {text!r} must be > 0")
    return seconds
