"""Build the Lightning Trainer for a run folder (callbacks, loggers, atomic checkpoints)."""

from __future__ import annotations

import datetime as _dt
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from kgc.training.checkpoint import AtomicCheckpointIO
from kgc.training.config import LoggingConfig, TrainerConfig, parse_duration
from kgc.training.progress import StepLines, resolve_progress
from kgc.training.preemption import PreemptionCheckpoint, RNGStateCallback
from kgc.training.runs import RunDir, is_launch_rank_zero
from kgc.utils.console import say


def _devices(value: str):
    v = str(value).strip()
    if v == "auto":
        return "auto"
    if v.lstrip("-").isdigit():
        return int(v)
    return v


def quiet_lightning() -> None:
    """Silence Lightning's advisory warnings that do not apply to kgc's small CPU runs."""
    for pat in (".*does not have many workers.*", ".*GPU available but not used.*", ".*TPU available.*",
                ".*LeafSpec.*", ".*is deprecated.*treespec.*", ".*Checkpoint directory.*exists and is not empty.*",
                ".*The number of training batches.*", ".*sync_dist=True.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=pat)
    import logging

    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # its INFO line "`weights_only` was not set" is about what a *save* keeps (we keep everything)
    logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def checkpoint_step(path) -> int:
    """The ``global_step`` stored in a Lightning checkpoint (memory-mapped: the tensors are not read)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


class FinalCheckpoint(pl.Callback):
    """Write ``last.ckpt`` when training ends (max_steps, max_time or early stopping), so a finished run's
    last checkpoint is its final state, not the last periodic one."""

    def __init__(self, path):
        self.path = path

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)  # full state (optimiser, loops) for --resume


def build_trainer(
    run: RunDir,
    cfg: TrainerConfig,
    monitor: str | None = None,
    mode: str = "max",
    callbacks: list | None = None,
    limit_val_batches: int | float | None = None,
    grad_clip: float = 0.0,
    resume_from=None,
    logging_cfg: LoggingConfig | None = None,
    hparams: dict | None = None,
) -> pl.Trainer:
    """The Trainer of ``run``; ``resume_from`` is the checkpoint ``fit`` will resume from (its step
    bounds the CSV rows kept from the interrupted run). ``logging_cfg`` (default: CSV + TensorBoard,
    progress ``auto``) picks the loggers and the progress display (kgc.training.tracking,
    kgc.training.progress); ``hparams`` (the resolved config) is logged to every logger."""
    from kgc.training.tracking import TrackingCallback, build_loggers
    from kgc.utils.alloc import tune_cpu_allocator

    quiet_lightning()
    tune_cpu_allocator()  # large per-step buffers stay in the heap (kgc.utils.alloc)
    if is_launch_rank_zero():  # before fit: no rank writes into the folder yet
        stale = run.remove_stale_temp_files()
        if stale:
            say(f"removed {len(stale)} stale temp file(s) of killed writes: {', '.join(f.name for f in stale)}")
    cbs = [
        ModelCheckpoint(
            dirpath=run.checkpoints, filename="step-{step}", every_n_train_steps=cfg.ckpt_every or None,
            save_last=True, save_top_k=2, monitor="step", mode="max", auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
        )
    ]
    if monitor is not None:
        cbs.append(ModelCheckpoint(dirpath=run.checkpoints, filename="best", monitor=monitor, mode=mode,
                                   save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False))
    cbs.extend(callbacks or [])
    cbs.append(FinalCheckpoint(run.checkpoints / "last.ckpt"))
    # RNG states in every checkpoint; SIGTERM/SIGUSR1 -> last.ckpt and kgc.Preempted (kgc.training.preemption)
    cbs += [RNGStateCallback(), PreemptionCheckpoint(run.checkpoints / "last.ckpt", run)]
    logging_cfg = logging_cfg if logging_cfg is not None else LoggingConfig()
    progress = resolve_progress(logging_cfg.progress, bar_allowed=cfg.progress_bar)
    if progress == "lines":
        cbs.append(StepLines(logging_cfg.every_n_steps, logging_cfg.every_s))
    cbs.append(TrackingCallback(run, hparams, logging_cfg))
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    max_time = None
    if cfg.max_time is not None:
        max_time = _dt.timedelta(seconds=parse_duration(cfg.max_time))
    keep_below = checkpoint_step(resume_from) if resume_from else None
    loggers = build_loggers(run, logging_cfg, keep_below_step=keep_below, resuming=resume_from is not None)
    return pl.Trainer(
        default_root_dir=run.path,
        max_steps=cfg.max_steps,
        max_epochs=-1,
        max_time=max_time,
        val_check_interval=cfg.val_every if cfg.val_every else None,
        check_val_every_n_epoch=None if cfg.val_every else 1,
        limit_val_batches=limit_val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every,
        precision=precision,
        accelerator=cfg.accelerator,
        devices=_devices(cfg.devices),
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        deterministic=cfg.deterministic,
        gradient_clip_val=grad_clip or None,
        enable_progress_bar=progress == "bar",
        enable_model_summary=False,
        callbacks=cbs,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )
