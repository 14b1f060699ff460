"""Top-k link prediction from a checkpoint: ``kgc.predict(...)`` and ``python -m kgc.predict``.

    >>> kgc.predict("runs/umls-ft/checkpoints/best.ckpt", head="virus", relation="causes", k=5)
    [{'entity': 'disease_or_syndrome', 'id': 35, 'score': 9.1, 'known': True}, ...]

Binary KGs: give ``head`` + ``relation`` (tail prediction) or ``relation`` +
``tail`` (head prediction, asked as ``(tail, relation^-1, ?)``). N-ary KGs: give
``relation``, ``entities={position: name, ...}`` and the queried ``position``.
``filtered=True`` removes answers already known in train+valid+test (the
known flag is reported either way).

    python -m kgc.predict --checkpoint CKPT --head virus --relation causes -k 5
    python -m kgc.predict --checkpoint CKPT --relation people.marriage --entity 0=01cz4n8 --position 1
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import types
from typing import Any

import torch

from kgc.errors import KGCError
from kgc.cli import run_cli

_CACHE: dict[str, Any] = {}


def _lookup(names: list[str], name: str, what: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KGCError(f"unknown {what} {name!r}{hint}") from None


def predict(
    checkpoint: str,
    head: str | None = None,
    relation: str | None = None,
    tail: str | None = None,
    *,
    entities: dict[int, str] | None = None,
    position: int | None = None,
    k: int = 10,
    filtered: bool = False,
) -> list[dict[str, Any]]:
    """Top-``k`` entities for one query with names, scores and whether the fact is already known."""
    from kgc.evaluation.evaluator import ModelScorer
    from kgc.evaluation.queries import LinkPredictionQueries
    from kgc.training.restore import load_model

    if k < 1:
        raise KGCError(f"k must be >= 1, got {k}")
    if checkpoint not in _CACHE:
        _CACHE.clear()
        _CACHE[checkpoint] = load_model(checkpoint)
    model, vocab, meta = _CACHE[checkpoint]
    R = vocab.num_relations
    rel_names = vocab.label_names[:R]
    if relation is None:
        raise KGCError("a relation is required")
    r = _lookup(rel_names, relation, "relation")
    ents = vocab.entity_names
    if entities is not None or position is not None:
        if entities is None or position is None:
            raise KGCError("n-ary queries need both entities={position: name} and position")
        if position in entities:
            raise KGCError(f"position {position} is both given and queried")
        arity = max(max(entities) + 1, position + 1)
        if arity > vocab.max_arity:
            raise KGCError(f"arity {arity} exceeds the dataset's maximum arity {vocab.max_arity}")
        fact = [r] + [-1] * vocab.max_arity
        for pos, name in entities.items():
            fact[1 + pos] = _lookup(ents, name, "entity")
        fact[1 + position] = 0  # placeholder target
        q = LinkPredictionQueries.from_facts(torch.tensor([fact]), num_relations=R, is_binary=vocab.max_arity == 2)
        q = q[q.direction == position]
    else:
        if (head is None) == (tail is None):
            raise KGCError("give exactly one of head= (predict tails) or tail= (predict heads)")
        h = _lookup(ents, head, "entity") if head is not None else 0
        t = _lookup(ents, tail, "entity") if tail is not None else 0
        q = LinkPredictionQueries.from_facts(torch.tensor([[r, h, t]]), num_relations=R, is_binary=True)
        q = q[q.direction == (0 if head is not None else 1)]
    ds = None
    try:
        from kgc.training.restore import dataset_for

        ds = dataset_for(vocab, meta.get("dataset_source"))
    except KGCError:
        if filtered or model.cfg.context.budget > 0:
            raise
    scorer = _CACHE.get("scorer")
    if scorer is None:
        scorer = ModelScorer(model, vocab)
        if ds is not None:
            scorer = scorer.with_context_for(ds)  # the model's train-graph context, built as in evaluation
        _CACHE["scorer"] = scorer  # with the model: the context is built once per checkpoint
    with torch.no_grad():
        scores = scorer.scores(q)[0]
    known = set()
    if ds is not None:
        from kgc.evaluation.filter import FilterIndex

        ip, ix = FilterIndex.for_dataset(ds).lookup(q)
        known = set(ix[int(ip[0]) : int(ip[1])].tolist())
    if filtered and known:
        scores = scores.clone()
        scores[list(known)] = float("-inf")
    top = torch.topk(scores, min(k, len(scores)))
    return [{"entity": ents[i], "id": int(i), "score": float(s), "known": int(i) in known}
            for s, i in zip(top.values.tolist(), top.indices.tolist()) if s != float("-inf")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kgc predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--head")
    p.add_argument("--relation", required=True)
    p.add_argument("--tail")
    p.add_argument("--entity", action="append", default=[], metavar="POS=NAME", help="n-ary: a known entity")
    p.add_argument("--position", type=int, help="n-ary: the queried position")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--filtered", action="store_true", help="hide answers already known in the dataset")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    entities = None
    if args.entity:
        entities = {}
        for item in args.entity:
            pos, sep, name = item.partition("=")
            if not sep or not pos.strip().isdigit():
                raise KGCError(f"--entity {item!r}: expected POS=NAME")
            entities[int(pos)] = name
    preds = predict(args.checkpoint, args.head, args.relation, args.tail, entities=entities,
                    position=args.position, k=args.k, filtered=args.filtered)
    if args.json:
        print(json.dumps(preds, indent=2))
    else:
        for i, pr in enumerate(preds, 1):
            print(f"{i:3d}  {pr['score']:9.4f}  {pr['entity']}{'  (known)' if pr['known'] else ''}")
    return 0


class _CallableModule(types.ModuleType):
    """``kgc.predict`` is both this module (``python -m kgc.predict``) and the function: calling the
    module calls :func:`predict` (Python binds the submodule to ``kgc.predict`` once it is imported)."""

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    run_cli(main)
