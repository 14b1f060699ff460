"""Training progress that reads well on a terminal and in a log file.

``logging.progress`` (:class:`kgc.training.config.LoggingConfig`) picks how a run shows progress:

- ``bar``: Lightning's progress bar (redraws one line with carriage returns: good on a terminal,
  one ever-growing line in a file);
- ``lines``: :class:`StepLines`, one plain line every ``every_n_steps`` optimiser steps or
  ``every_s`` seconds, whichever comes first, e.g.
  ``[kgc] step 300/600 loss 2.4312 lr 8.21e-04 4.87 steps/s elapsed 0:01:02 ETA 0:01:02``;
- ``none``: nothing (``--quiet`` forces it);
- ``auto`` (default): ``bar`` when stdout is a terminal, ``lines`` otherwise.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytorch_lightning as pl

#: a printed line is cut to this many characters
MAX_LINE = 240


def resolve_progress(mode: str, bar_allowed: bool = True, stream: Any = None) -> str:
    """``bar``, ``lines`` or ``none`` for ``logging.progress`` = ``mode``: ``auto`` is ``bar`` when
    ``stream`` (default ``sys.stdout``) is a terminal and ``lines`` otherwise; ``bar_allowed=False``
    (``trainer.progress_bar: false``) turns a bar into ``none``; ``--quiet`` makes everything ``none``."""
    from kgc.utils.console import is_quiet

    if is_quiet() or mode == "none":
        return "none"
    if mode == "auto":
        stream = sys.stdout if stream is None else stream
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            tty = False
        mode = "bar" if tty else "lines"
    if mode == "bar" and not bar_allowed:
        return "none"
    return mode


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fit(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def _loss_of(outputs: Any):
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if outputs is None:
        return None
    return outputs.detach() if hasattr(outputs, "detach") else float(outputs)


@contextlib.contextmanager
def heartbeat(what: str, every_s: float, emit: Callable[[str], None] | None = None) -> Iterator[None]:
    """While the block runs, say ``<what>: still working (H:MM:SS)`` every ``every_s`` seconds (from a
    daemon thread; ``every_s <= 0`` = never): a log gets a line during a long silent phase such as
    building the pretraining signals (the numba kernels release the GIL)."""
    if not every_s or every_s <= 0:
        yield
        return
    if emit is None:
        from kgc.utils.console import say as emit
    stop, t0 = threading.Event(), time.monotonic()

    def beat() -> None:
        while not stop.wait(every_s):
            emit(_fit(f"{what}: still working ({format_duration(time.monotonic() - t0)})"))

    thread = threading.Thread(target=beat, name="kgc-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class StepLines(pl.Callback):
    """Print one plain line every ``every_n_steps`` steps or ``every_s`` seconds, whichever comes first.

    A step line has the step and ``max_steps``, the mean training loss since the previous line, the
    learning rate (first parameter group), steps per second since the previous line (validation time
    left out) and the ETA: the earlier of ``max_steps`` at the average speed since the first step
    and the end of ``max_time`` (Lightning's Timer). The first step always gets a line; during validation the time
    rule prints which batch it is at, and each validation ends with a line of its metrics. Lines go
    through :func:`kgc.utils.console.say` on global rank zero only. ``clock`` (seconds) is for tests.
    """

    def __init__(self, every_n_steps: int = 100, every_s: float = 20.0,
                 clock: Callable[[], float] = time.monotonic, emit: Callable[[str], None] | None = None):
        if every_n_steps < 0 or every_s < 0 or (every_n_steps == 0 and every_s == 0):
            raise ValueError("StepLines needs every_n_steps > 0 or every_s > 0 (neither negative)")
        self.every_n_steps = int(every_n_steps)
        self.every_s = float(every_s)
        self.clock = clock
        self._emit = emit
        self._reset(0, clock())

    # ---- state ---------------------------------------------------------------------------------
    def _reset(self, step: int, now: float) -> None:
        self._t_start = now
        self._start_step = step
        self._last_t = now  # last line of any kind (the time rule)
        self._mark_t = now  # last step line (steps/s)
        self._mark_step = step
        self._val_since_mark = 0.0
        self._val_t0: float | None = None
        self._loss_sum = None
        self._loss_n = 0
        self._first: tuple[int, float] | None = None  # (step, clock) of the first step: the ETA's base

    def _say(self, trainer: pl.Trainer, line: str) -> None:
        if not trainer.is_global_zero:
            return
        if self._emit is not None:
            self._emit(_fit(line))
        else:
            from kgc.utils.console import say

            say(_fit(line))

    def due(self, step: int, now: float) -> bool:
        """Whether step ``step`` (just finished at clock ``now``) gets a line."""
        if step <= self._mark_step:
            return False
        if step == self._start_step + 1:
            return True
        if self.every_n_steps and step % self.every_n_steps == 0:
            return True
        return bool(self.every_s) and now - self._last_t >= self.every_s

    # ---- ETA -----------------------------------------------------------------------------------
    @staticmethod
    def _time_left(trainer: pl.Trainer) -> float | None:
        from pytorch_lightning.callbacks import Timer

        for cb in trainer.callbacks:
            if isinstance(cb, Timer):
                left = cb.time_remaining("train")
                return None if left is None else max(0.0, float(left))
        return None

    def eta(self, trainer: pl.Trainer, step: int, now: float) -> float | None:
        """Seconds to the end of training: the earlier of ``max_steps`` and ``max_time``."""
        cands = []
        base_step, base_t = self._first if self._first and step > self._first[0] else (self._start_step, self._t_start)
        done, spent = step - base_step, now - base_t  # the first step (start-up) left out once there are more
        if trainer.max_steps and trainer.max_steps > 0 and done > 0 and spent > 0:
            cands.append(max(0, trainer.max_steps - step) * spent / done)
        left = self._time_left(trainer)
        if left is not None:
            cands.append(left)
        return min(cands) if cands else None

    # ---- hooks ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset(int(trainer.global_step), self.clock())
        cap = [f"max_steps {trainer.max_steps}"] if trainer.max_steps and trainer.max_steps > 0 else []
        left = self._time_left(trainer)
        if left is not None:
            cap.append(f"max_time {format_duration(left)} left")
        self._say(trainer, f"training from step {trainer.global_step} ({', '.join(cap) or 'no step or time cap'}); "
                           f"a line every {self.every_n_steps} steps or {self.every_s:g}s")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is not None:
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_n += 1
        step, now = int(trainer.global_step), self.clock()
        if self.due(step, now):
            self._say(trainer, self.step_line(trainer, step, now))

    def step_line(self, trainer: pl.Trainer, step: int, now: float) -> str:
        """The line of step ``step`` at clock ``now`` (resets the interval it averages over)."""
        parts = [f"step {step}/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else f"step {step}"]
        if self._loss_n:
            parts.append(f"loss {float(self._loss_sum) / self._loss_n:.4f}")
        if trainer.optimizers:
            parts.append(f"lr {float(trainer.optimizers[0].param_groups[0]['lr']):.2e}")
        busy = now - self._mark_t - self._val_since_mark
        if busy > 0:
            parts.append(f"{(step - self._mark_step) / busy:.2f} steps/s")
        parts.append(f"elapsed {format_duration(now - self._t_start)}")
        parts.append(f"ETA {format_duration(self.eta(trainer, step, now))}")
        self._mark_t, self._mark_step, self._last_t = now, step, now
        if self._first is None:
            self._first = (step, now)
        self._val_since_mark = 0.0
        self._loss_sum, self._loss_n = None, 0
        return " ".join(parts)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_t0 = self.clock()

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._val_t0 is None or not self.every_s:
            return
        now = self.clock()
        if now - self._last_t >= self.every_s:
            total = trainer.num_val_batches
            total = total[dataloader_idx] if isinstance(total, (list, tuple)) and len(total) > dataloader_idx else total
            of = f"/{int(total)}" if isinstance(total, (int, float)) and math.isfinite(total) else ""
            self._say(trainer, f"step {trainer.global_step}: validating, batch {batch_idx + 1}{of} "
                               f"({format_duration(now - self._val_t0)})")
            self._last_t = now

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._val_t0 is None:
            return
        now = self.clock()
        spent, self._val_t0 = now - self._val_t0, None
        self._val_since_mark += spent
        shown = []
        for key in ("val/loss", "val/mrr", "val/hits@10"):
            v = trainer.callback_metrics.get(key)
            if v is not None:
                shown.append(f"{key} {float(v):.4f}")
        self._say(trainer, f"step {trainer.global_step}: validation {' '.join(shown) or 'done'} ({spent:.1f}s)")
        self._last_t = now

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now, step = self.clock(), int(trainer.global_step)
        if trainer.max_steps and 0 < trainer.max_steps <= step:
            why = "max_steps reached"
        elif (left := self._time_left(trainer)) is not None and left <= 0:
            why = "max_time reached"
        elif trainer.should_stop:
            why = "stopped early"
        else:
            why = "stopped"
        rate = (step - self._start_step) / (now - self._t_start) if now > self._t_start else float("nan")
        self._say(trainer, f"training ended at step {step} ({why}) after {format_duration(now - self._t_start)}, "
                           f"{rate:.2f} steps/s")
