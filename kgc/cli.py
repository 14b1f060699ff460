"""Shared CLI plumbing: one-line errors, common training flags, config assembly."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from kgc import KGCError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main``; a :class:`KGCError` prints ``error: <message>`` to stderr and exits with 2."""
    try:
        code = main(argv)
    except KGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (merged over the defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set optim.lr=1e-3 (repeatable)")
    p.add_argument("--max-steps", type=int, help="optimiser steps (trainer.max_steps)")
    p.add_argument("--max-time", help="wall-clock cap, e.g. 5m, 1h30m, 90s (trainer.max_time)")
    p.add_argument("--batch-size", type=int, help="trainer.batch_size")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", help="run folder (default runs/<dataset>-<kind>-...-<time>)")
    p.add_argument("--runs-root", default=os.environ.get("KGC_RUNS", "runs"), help="where run folders go")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--devices", help="Lightning devices (e.g. 1, 2, auto)")
    p.add_argument("--accelerator", help="Lightning accelerator (cpu, gpu, auto)")
    p.add_argument("--strategy", help="Lightning strategy (auto, ddp, ddp_spawn, ...)")
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Turn the explicit CLI flags into config overrides (applied after --config and --set)."""
    out = []
    for flag, key in (("max_steps", "trainer.max_steps"), ("max_time", "trainer.max_time"),
                      ("batch_size", "trainer.batch_size"), ("seed", "seed"), ("devices", "trainer.devices"),
                      ("accelerator", "trainer.accelerator"), ("strategy", "trainer.strategy")):
        val = getattr(args, flag, None)
        if val is not None:
            out.append(f"{key}={val}" if key != "trainer.devices" else f"{key}='{val}'")
    if getattr(args, "no_progress", False):
        out.append("trainer.progress_bar=false")
    return out
