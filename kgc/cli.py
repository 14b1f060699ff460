"""Shared CLI plumbing: one-line errors, common training flags, config assembly."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Callable, Iterator

from kgc.errors import KGCError, Preempted
from kgc.training.runs import default_runs_root


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main``; a :class:`KGCError` prints ``error: <message>`` to stderr and exits with 2; a
    :class:`~kgc.errors.Preempted` run (checkpoint written) prints where to resume and exits with 75; a
    closed stdout (the reader of a pipe went away) exits with 1 without a traceback."""
    try:
        code = main(argv)
    except Preempted as exc:
        if exc.rank_zero:
            print(str(exc), file=sys.stderr, flush=True)
        sys.exit(exc.exit_status)
    except KGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (``kgc data stats x | head``): no traceback
        _quiet_stdout()
        sys.exit(1)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(1)
    sys.exit(code or 0)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush after a closed pipe does not raise
    again (the recipe of the Python documentation, "Note on SIGPIPE")."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (merged over the defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set optim.lr=1e-3 (repeatable)")
    p.add_argument("--max-steps", type=int, help="optimiser steps (trainer.max_steps)")
    p.add_argument("--max-time", help="wall-clock cap, e.g. 5m, 1h30m, 90s (trainer.max_time)")
    p.add_argument("--batch-size", type=int, help="trainer.batch_size")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", help="run folder (default runs/<dataset>-<kind>-...-<time>)")
    p.add_argument("--runs-root", default=str(default_runs_root()), help="where run folders go (default $KGC_RUNS or runs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--devices", help="Lightning devices (e.g. 1, 2, auto)")
    p.add_argument("--accelerator", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--strategy", help="Lightning strategy (auto, ddp, ddp_spawn, ...)")
    p.add_argument("--num-nodes", type=int, help="Lightning num_nodes: machines of a multi-node DDP run "
                   "(trainer.num_nodes; under SLURM launch one task per device with srun, see README)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.add_argument("--logger", dest="loggers", action="append", metavar="NAME[,NAME]",
                   help="experiment loggers: csv, tensorboard, mlflow, wandb (comma list or repeated; "
                        "sets logging.loggers, default csv,tensorboard)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the final metrics (no progress bar, step lines or info lines)")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Turn the explicit CLI flags into config overrides (applied after --config and --set)."""
    out = []
    for flag, key in (("max_steps", "trainer.max_steps"), ("max_time", "trainer.max_time"),
                      ("batch_size", "trainer.batch_size"), ("seed", "seed"), ("devices", "trainer.devices"),
                      ("accelerator", "trainer.accelerator"), ("strategy", "trainer.strategy"),
                      ("num_nodes", "trainer.num_nodes")):
        val = getattr(args, flag, None)
        if val is not None:
            out.append(f"{key}={val}" if key != "trainer.devices" else f"{key}='{val}'")
    if getattr(args, "no_progress", False):
        out.append("trainer.progress_bar=false")
    if getattr(args, "loggers", None):
        import json

        names = [n.strip() for item in args.loggers for n in str(item).split(",") if n.strip()]
        out.append(f"logging.loggers={json.dumps(names)}")
    return out


@contextlib.contextmanager
def console_flags(args: argparse.Namespace) -> Iterator[None]:
    """Within the block, ``--quiet``: only :func:`kgc.utils.console.result` lines reach stdout (no
    ``say`` messages, no progress bar or step lines: see kgc.training.progress), and Lightning's info
    lines are off. The previous state comes back after the block (the CLIs and the Python API may
    run several times in one process)."""
    import logging

    from kgc.utils.console import quiet_if

    quiet = bool(getattr(args, "quiet", False))
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    if quiet:  # both set themselves to INFO on import
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with quiet_if(quiet):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
