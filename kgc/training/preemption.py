"""Preemption-safe training: checkpoint on SIGTERM/SIGUSR1 and exit with :data:`kgc.EXIT_PREEMPTED`.

Two Lightning callbacks, both installed by :func:`kgc.training.runner.build_trainer`:

- :class:`PreemptionCheckpoint` catches SIGTERM and SIGUSR1 (what SLURM sends before a time
  limit or a preemption) while training runs. The handler only records the signal. At the end
  of the next training batch every process takes part in one boolean reduction (``any``), so
  DDP ranks that received the signal at different steps, or not at all, stop at the same step
  without a deadlock. Then ``checkpoints/last.ckpt`` is written through ``trainer.save_checkpoint``
  (atomic: :class:`~kgc.training.checkpoint.AtomicCheckpointIO`). If a validation follows at that
  step, it runs and the checkpoint is written again after it (with the best-checkpoint and
  early-stopping state it updated), so the resumed run neither skips nor repeats it. Training
  then stops by raising :class:`kgc.Preempted` out of ``trainer.fit`` (before the next batch, or
  from the validation's end): no extra validation, no end-of-epoch bookkeeping and no
  ``FinalCheckpoint`` overwrite the state just saved. A signal that arrives after the last
  training batch is reported by :func:`raise_if_preempted` once ``fit`` returns. CLIs exit with
  75 (``EX_TEMPFAIL``) and print the ``--resume`` command; the DDP workers Lightning starts itself
  exit 0 (its child-process observer would SIGKILL rank 0 on a non-zero worker status).
- :class:`RNGStateCallback` stores the torch (CPU and the current CUDA device), numpy and
  Python ``random`` states of every rank in each checkpoint and restores them at the first
  training batch of a resumed run, so dropout draws the masks the uninterrupted run would have
  drawn. The data order needs no stored state: kgc's training samplers are functions of
  ``(seed, global step)`` (``ResumableShuffleSampler``, ``StepTaskBatchSampler``) and the step is
  part of Lightning's loop state; the callback records that step and restores nothing when the
  resumed run starts elsewhere.

Outside ``fit`` (dataset loading, the final evaluation) the previous handlers apply: the process
dies and ``last.ckpt`` stays the last complete checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import signal
import threading
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.trainer.states import TrainerFn

from kgc.errors import EXIT_PREEMPTED, Preempted
from kgc.training.runs import external_rank
from kgc.utils.console import say

__all__ = ["EXIT_PREEMPTED", "PREEMPTION_SIGNALS", "Preempted", "PreemptionCheckpoint", "RNGStateCallback",
           "raise_if_preempted"]

#: the signals that trigger a checkpoint-and-exit (SLURM: SIGTERM at the time limit or on preemption,
#: SIGUSR1 ahead of it with ``--signal=USR1@SECONDS``)
PREEMPTION_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)


class PreemptionCheckpoint(Checkpoint):
    """Write ``last.ckpt`` and stop when a preemption signal arrives (see the module docstring).

    A :class:`~pytorch_lightning.callbacks.Checkpoint` subclass, so Lightning runs it after the
    ``ModelCheckpoint`` callbacks: the state it saves includes what they updated in the same hook.

    Args:
        path: the checkpoint to write (``run.checkpoints / "last.ckpt"``).
        run: the :class:`~kgc.training.runs.RunDir`; rank 0 appends the event to ``run.json``
            (``preemptions``) and :class:`kgc.Preempted` names its ``--resume`` command.
    """

    def __init__(self, path, run=None):
        self.path = path
        self.run = run
        self.signum: int | None = None  # first signal received (set by the handler)
        self._previous: dict[int, Any] = {}
        self._stopping = False  # the ranks agreed to stop; last.ckpt written at self._step
        self._step: int | None = None
        self.preempted: dict[str, Any] | None = None  # what raise_if_preempted reports

    # ---- signal handling -------------------------------------------------------------------
    def _handler(self, signum, frame) -> None:  # keep it minimal: it may run in the middle of anything
        if self.signum is None:
            self.signum = int(signum)

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for s in PREEMPTION_SIGNALS:
            self._previous[s] = signal.getsignal(s)
            signal.signal(s, self._handler)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here, not earlier: Lightning registers its own SIGTERM handler (it raises SIGTERMException,
        # without a checkpoint) just before the loop starts; ours replaces it while training runs
        self.signum, self._stopping, self._step, self.preempted = None, False, None, None
        self._install()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()

    # ---- the stop protocol -----------------------------------------------------------------
    def _agree(self, trainer: pl.Trainer) -> bool:
        """True on every rank when any rank has received a signal (a collective: all ranks call it)."""
        return bool(trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False))

    def _save(self, trainer: pl.Trainer, when: str) -> None:
        trainer.save_checkpoint(self.path)  # every rank takes part; rank 0 writes (atomically)
        self._step = int(trainer.global_step)
        if trainer.is_global_zero:
            name = signal.Signals(self.signum).name if self.signum is not None else "another rank's signal"
            say(f"preemption ({name}): wrote {self.path} at step {self._step} ({when}); stopping")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._stopping or not self._agree(trainer):
            return
        self._stopping = True
        self._save(trainer, "end of the training batch")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if not self._stopping and not self._agree(trainer):
            return
        if trainer.should_stop:  # early stopping ends training here anyway: let it end, then report
            self._stopping = True
            return
        self._stopping = True
        self._save(trainer, "after the validation")
        self._stop(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._stopping:  # the checkpoint of the previous batch's end is on disk
            self._stop(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # training is complete (last.ckpt is its final state, FinalCheckpoint ran before this
        # callback); a signal during the last step or the final validation still means "exit now"
        stop = self._stopping or self._agree(trainer)
        self._restore()
        if stop:
            self._step = int(trainer.global_step)
            self._record(trainer)

    def _record(self, trainer: pl.Trainer) -> None:
        name = signal.Signals(self.signum).name if self.signum is not None else "another rank's signal"
        self.preempted = {"signal": name, "step": self._step, "checkpoint": str(self.path)}
        if trainer.is_global_zero and self.run is not None:
            try:
                history = list(self.run.meta().get("preemptions") or [])
                history.append({**self.preempted, "time": _dt.datetime.now().isoformat(timespec="seconds")})
                self.run.update_meta(preemptions=history)
            except Exception as exc:  # metadata is informative; never lose the exit status over it
                say(f"could not record the preemption in run.json: {exc}")

    def _stop(self, trainer: pl.Trainer) -> None:
        self._record(trainer)
        self._restore()
        raise _preempted(self.preempted, self.run, trainer.is_global_zero)


def _preempted(info: dict[str, Any], run, rank_zero: bool) -> Preempted:
    kind = None
    if run is not None:
        try:
            kind = run.meta().get("kind")
        except Exception:
            pass
    module = {"finetune": "kgc.finetune", "pretrain": "kgc.pretrain"}.get(kind, "kgc.<pretrain|finetune>")
    where = run.path if run is not None else "<run folder>"
    msg = (f"preempted by {info['signal']} at step {info['step']}: checkpoint {info['checkpoint']}; "
           f"continue with: python -m {module} --resume {where}")
    # a DDP worker that Lightning started (not srun/torchrun) exits 0: Lightning's child-process observer
    # SIGKILLs rank 0 when a worker exits non-zero, and rank 0's status is the one that counts
    worker = int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 and external_rank() is None
    return Preempted(msg, checkpoint=info["checkpoint"], step=info["step"], signal=info["signal"],
                     rank_zero=rank_zero, exit_status=0 if worker else EXIT_PREEMPTED)


def raise_if_preempted(trainer: pl.Trainer) -> None:
    """Call right after ``trainer.fit``: raise :class:`kgc.Preempted` when a preemption signal arrived
    while training (most preemptions raise out of ``fit`` already; this reports a signal that came
    after the last training batch, when ``fit`` ends normally)."""
    for cb in trainer.callbacks:
        if isinstance(cb, PreemptionCheckpoint) and cb.preempted is not None:
            raise _preempted(cb.preempted, cb.run, trainer.is_global_zero)


# --------------------------------------------------------------------------- RNG states
RNG_STATE_FORMAT = 1


def collect_rng_states(device: torch.device | None = None) -> dict[str, Any]:
    """This process's torch CPU, CUDA (``device`` only), numpy and Python ``random`` states, as
    tensors and plain values (checkpoints load with ``weights_only=True``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_states(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`collect_rng_states`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class RNGStateCallback(pl.Callback):
    """Checkpoint every rank's RNG states; restore them at the first training batch after a resume.

    Saved (``checkpoint["callbacks"]["RNGStateCallback"]``): ``step`` (the global step at the save,
    which is also the training samplers' position), ``world_size`` and ``ranks`` (one
    :func:`collect_rng_states` dict per global rank, gathered from all processes: DDP ranks draw
    different dropout masks, so rank 0's states would not do for the others).

    Restored in ``on_train_batch_start``, just before the first ``training_step``: between a save
    and the next step an uninterrupted run draws nothing from the global generators (kgc's data
    loaders and samplers use their own generators), while a resumed run builds the model, its
    data loaders and their iterators in between. A checkpoint without the state (older kgc), of
    another world size, or a resume that starts at another step restores nothing and says so
    (the run goes on from the seeded generators).
    """

    def __init__(self):
        self._trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None
        self._loaded = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path and not self._loaded and trainer.is_global_zero:
            say("the checkpoint carries no RNG states (an older kgc wrote it): dropout will draw other "
                "masks than the interrupted run would have")

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None:
            return {}
        local = collect_rng_states(trainer.strategy.root_device)
        world = int(trainer.world_size)
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            ranks: list[Any] = [None] * world
            torch.distributed.all_gather_object(ranks, local)  # every rank saves (trainer.save_checkpoint)
        else:
            ranks = [local]
        return {"format": RNG_STATE_FORMAT, "step": int(trainer.global_step), "world_size": world, "ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending, self._loaded = state_dict, True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        if state.get("format") != RNG_STATE_FORMAT:
            why = f"RNG state format {state.get('format')!r} (this kgc writes {RNG_STATE_FORMAT})"
        elif int(state.get("world_size", -1)) != trainer.world_size:
            why = f"saved by {state.get('world_size')} processes, this run has {trainer.world_size}"
        elif int(state.get("step", -1)) != trainer.global_step:
            why = f"saved at step {state.get('step')}, resumed at step {trainer.global_step}"
        else:
            set_rng_states(state["ranks"][trainer.global_rank], trainer.strategy.root_device)
            return
        if trainer.is_global_zero:
            say(f"checkpoint RNG states not restored: {why}")
