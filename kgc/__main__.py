"""``kgc``: the console command (also ``python -m kgc``), one subcommand per ``python -m kgc.<x>`` CLI.

Examples::

    kgc pretrain --signals all
    kgc finetune --dataset wn18rr --max-time 15m
    kgc evaluate runs/<run>
    kgc hpo --dataset nations --space configs/hpo/nations.yaml --trials 20 --budget 2m
    kgc finetune --help          # the same flags and help as python -m kgc.finetune --help

``kgc <subcommand> ...`` runs exactly what ``python -m kgc.<subcommand> ...`` runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module whose ``main(argv)`` runs it, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("kgc.pretrain", "pretrain on graph-algorithm signals"),
    "finetune": ("kgc.finetune", "fine-tune for link prediction, evaluate test once"),
    "evaluate": ("kgc.evaluate", "evaluate a checkpoint or run folder (filtered MRR, Hits@k)"),
    "predict": ("kgc.predict", "top-k answers of (head, relation, ?) / (?, relation, tail) queries"),
    "leaderboard": ("kgc.leaderboard", "MRR/Hits leaderboard report of finished runs"),
    "ablation": ("kgc.ablation", "per-signal pretraining ablation grid"),
    "data": ("kgc.data.__main__", "datasets: list, stats, download"),
    "signals": ("kgc.signals", "show or list the pretraining signals"),
    "hpo": ("kgc.hpo", "hyperparameter search with Optuna"),
}


def build_parser() -> argparse.ArgumentParser:
    from kgc._version import __version__

    p = argparse.ArgumentParser(
        prog="kgc", description="kgc: knowledge-graph completion Transformers pretrained on graph-algorithm signals.",
        epilog="subcommands:\n" + "\n".join(f"  {name:<12} {summary}" for name, (_, summary) in SUBCOMMANDS.items())
        + "\n\n'kgc <subcommand> --help' shows a subcommand's flags.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kgc {__version__}")
    p.add_argument("command", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND", help="one of: " + ", ".join(SUBCOMMANDS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the subcommand's own flags")
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kgc`` console script: dispatch to the subcommand's ``main(argv)``."""
    from kgc.cli import run_cli

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        sys.exit(2)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    run_cli(module.main, args.args)


if __name__ == "__main__":
    main()
