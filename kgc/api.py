"""kgc's Python API: one call per task, on the same code path as the CLIs (PyKEEN ``pipeline()`` style).

Example (runs offline on the built-in synthetic KG in about a minute)::

    import kgc

    pt = kgc.run_pretraining(dataset="synthetic", signals="all", max_steps=50, runs_root="runs")
    ft = kgc.run_finetuning(dataset="synthetic", init=pt.checkpoint, max_steps=200, runs_root="runs")
    print(ft.mrr, ft.hits(10), ft.valid_mrr, ft.run_dir, ft.checkpoint)

Each keyword is the CLI flag of the same name (``from_scratch`` is ``--from-scratch``); ``config``
is a YAML path or a mapping merged like ``--config``; ``overrides`` are ``--set`` strings
(``"optim.lr=1e-3"``) or a mapping ``{"optim.lr": 1e-3}``; ``callbacks`` are extra Lightning
callbacks. The arguments go through the CLI's own parser, so a value the CLI would refuse is
refused here with the same :class:`kgc.KGCError`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Mapping, Sequence

from kgc.cli import console_flags

__all__ = ["run_finetuning", "run_pretraining"]

#: keyword -> flag for the flags every training CLI shares (kgc.cli.add_training_flags)
_COMMON = {"max_steps": "--max-steps", "max_time": "--max-time", "batch_size": "--batch-size", "seed": "--seed",
           "out": "--out", "runs_root": "--runs-root", "resume": "--resume", "devices": "--devices",
           "accelerator": "--accelerator", "strategy": "--strategy", "num_nodes": "--num-nodes",
           "logger": "--logger"}


def _override_list(overrides: Sequence[str] | Mapping[str, Any] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        import yaml

        # a YAML flow scalar/collection parses back to the same value in kgc.config.apply_overrides
        return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _parse(parser: argparse.ArgumentParser, named: dict[str, str], values: dict[str, Any],
           overrides, progress: bool, quiet: bool) -> argparse.Namespace:
    argv: list[str] = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        if key == "logger" and not isinstance(value, str):  # a list of logger names
            value = ",".join(value)
        flag = named.get(key) or _COMMON.get(key)
        if flag is None:
            raise TypeError(f"unknown argument {key!r}")
        argv += [flag] if value is True else [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    for item in _override_list(overrides):
        argv += ["--set", item]
    if not progress:
        argv.append("--no-progress")
    if quiet:
        argv.append("--quiet")
    return parser.parse_args(argv)


def run_finetuning(dataset: str | os.PathLike | None = None, *, model: str | None = None,
                   init: str | os.PathLike | None = None, from_scratch: bool = False,
                   config: str | os.PathLike | Mapping[str, Any] | None = None,
                   overrides: Sequence[str] | Mapping[str, Any] | None = None,
                   callbacks: list | None = None, quiet: bool = False, progress: bool = False, **flags: Any):
    """Fine-tune for link prediction and evaluate test once (``kgc finetune``).

    Returns a :class:`kgc.finetune.FinetuneResult` (``.metrics``, ``.mrr``, ``.valid_mrr``,
    ``.hits(k)``, ``.run_dir``, ``.checkpoint``); ``None`` on the non-zero ranks of a DDP run.
    ``flags``: ``skip_test`` (validation only: ``.mrr`` is then ``None``), ``max_steps``, ``max_time``, ``batch_size``, ``seed``, ``out``, ``runs_root``,
    ``resume``, ``devices``, ``accelerator``, ``strategy``, ``num_nodes``, ``logger`` (a name, a
    comma list or a list: csv, tensorboard, mlflow, wandb)."""
    from kgc import finetune

    named = {"dataset": "--dataset", "model": "--model", "init": "--init", "from_scratch": "--from-scratch",
             "skip_test": "--skip-test"}
    values = {"dataset": dataset, "model": model, "init": init, "from_scratch": from_scratch, **flags}
    args = _parse(finetune.build_parser(), named, values, overrides, progress, quiet)
    args.config = None if config is None else (config if isinstance(config, Mapping) else os.fspath(config))
    with console_flags(args):
        return finetune.run(args, callbacks=callbacks)


def run_pretraining(dataset: str | os.PathLike | None = None, *, signals: str | Sequence[str] | None = None,
                    model: str | None = None, config: str | os.PathLike | Mapping[str, Any] | None = None,
                    overrides: Sequence[str] | Mapping[str, Any] | None = None,
                    callbacks: list | None = None, quiet: bool = False, progress: bool = False, **flags: Any):
    """Pretrain on graph-algorithm signals (``kgc pretrain``); ``signals``: ``"all"``, a comma list
    or a list of names. Returns a :class:`kgc.pretrain.PretrainResult` (``.run_dir``,
    ``.checkpoint``, ``.steps``, ``.signals``); ``None`` on the non-zero ranks of a DDP run."""
    from kgc import pretrain

    if signals is not None and not isinstance(signals, str):
        signals = ",".join(signals)
    named = {"dataset": "--dataset", "signals": "--signals", "model": "--model"}
    values = {"dataset": dataset, "signals": signals, "model": model, **flags}
    args = _parse(pretrain.build_parser(), named, values, overrides, progress, quiet)
    args.config = None if config is None else (config if isinstance(config, Mapping) else os.fspath(config))
    with console_flags(args):
        return pretrain.run(args, callbacks=callbacks)
