"""Inspect the pretraining signals: ``python -m kgc.signals show --dataset NAME --signal NAME -n 5``.

Prints generated sequences with entity and relation names, so a user can read
what the model is taught. ``python -m kgc.signals list`` lists the signals and
their default configs (``configs/signals/<name>.yaml``). Errors print
``error: <message>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict


def _fmt(vocab, toks) -> str:
    return " ".join(vocab.token_name(int(t)) for t in toks)


def format_example(vocab, ex, i: int) -> str:
    """One example as ``[TASK] prompt [SEP] target [EOS]`` text with names."""
    prompt = _fmt(vocab, ex.prompt(i))
    target = _fmt(vocab, ex.target(i))
    task = vocab.token_name(int(ex.tokens[i, 0]))
    return f"{task} {prompt} [SEP] {target} [EOS]"


def cmd_show(args) -> int:
    from graph_algos.graph import KGraph
    from kgc.data import load_dataset
    from pretrain_tasks import build_vocab, load_signal

    signal = load_signal(args.signal, args.set)  # validate the name before loading data
    ds = load_dataset(args.dataset)
    graph = KGraph.from_dataset(ds, "train")
    vocab = build_vocab(ds, graph)  # from the dataset alone; the graph is checked against it
    ex = signal.generate(ds, graph, vocab, num_examples=args.n, seed=args.seed)
    print(f"# {ds.name}: signal {signal.name}, {len(ex)} sequence(s), seed {args.seed}; config {asdict(signal.config)}")
    for i in range(len(ex)):
        print(format_example(vocab, ex, i))
    if len(ex) == 0:
        print("# (no sequences: the train graph yields none for this signal/config)")
    return 0


def cmd_list(args) -> int:
    from pretrain_tasks import SIGNALS, load_signal

    for name in SIGNALS:
        print(f"{name}: {asdict(load_signal(name).config)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kgc signals", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="print generated sequences with entity/relation names")
    s.add_argument("--dataset", default="synthetic", help="registry name or folder (default: synthetic)")
    s.add_argument("--signal", required=True, help="random_walk, shortest_path, khop, ig_path or lcc")
    s.add_argument("-n", type=int, default=5, help="number of sequences (default 5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a signal config key (repeatable), e.g. --set length=8")
    s.set_defaults(func=cmd_show)
    ls = sub.add_parser("list", help="list the signals and their default configs")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    from kgc.errors import KGCError

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
            raise KGCError(f"-n must be >= 1, got {args.n}")
        return args.func(args)
    except KGCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0


if __name__ == "__main__":
    sys.exit(main())
