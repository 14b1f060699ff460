"""Quality at a fixed CPU budget: kgc vs PyKEEN's ComplEx/RotatE (LCWA), same wall time, same threads.

    python benchmarks/quality_budget.py --dataset umls --budget 5m
    python benchmarks/quality_budget.py --dataset fb15k237 --budget 15m --pretrain-fraction 0.3 --signals all
    python benchmarks/quality_budget.py --dataset umls --smoke            # CI: seconds, kgc + PyKEEN if installed
    python benchmarks/quality_budget.py --dataset umls --smoke --systems kgc
    python benchmarks/quality_budget.py --dataset wn18rr --pykeen-results runs/bench/quality-pykeen-wn18rr.json

kgc: ``python -m kgc.finetune --max-time BUDGET`` in a subprocess (or, with ``--pretrain-fraction F``,
``python -m kgc.pretrain --max-time F*BUDGET`` then fine-tuning from its checkpoint for the rest).
PyKEEN: each model of ``--pykeen-models`` trained with LCWA (1-N), cross-entropy, inverse triples and Adam
(``_common.pykeen_recipe``) for BUDGET seconds of wall time, checked before every batch; validation time
counts inside the budget and the best-on-valid state is kept when validation was affordable.
Both sides use ``--threads`` intra-op threads (default 2). Start-up (dataset load, vocabulary, PyKEEN's
triples factories) and the final test evaluation are outside the budget for both.

Evaluation: kgc's model by kgc's evaluator; PyKEEN's model by OUR evaluator (PyKEEN's scores for all tails
and heads -> ``filtered_ranks_from_scores`` with our FilterIndex) AND by PyKEEN's ``RankBasedEvaluator``,
same test set, filtered against train+valid+test, realistic ties; the cross-check table prints both and
their difference. ``--test-set full`` (default) ranks every test triple (kgc's convention: entities seen only
in valid/test stay candidates and queries); ``seen`` keeps only the triples whose entities occur in train
(what PyKEEN's own dataset loaders keep). PyKEEN models are built on kgc's ids, so nothing is dropped.
The quality table comes last; its ratio column is test MRR / the best PyKEEN model's test MRR.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

DEFAULT_BUDGETS = {"umls": "5m", "nations": "2m", "kinships": "5m", "fb15k237": "15m", "wn18rr": "15m", "jf17k": "15m"}


def prior_row(ds, triples) -> dict:
    """The relation-frequency prior (``kgc.evaluation.prior``) on the same test triples: the floor."""
    from kgc.evaluation import LinkPredictionQueries, evaluate
    from kgc.evaluation.prior import RelationPrior

    t0 = time.time()
    import torch

    if triples is None:  # n-ary: every position of every test fact
        q = LinkPredictionQueries.from_dataset(ds, "test")
    else:
        facts = torch.as_tensor(triples)[:, [1, 0, 2]]  # (h, r, t) -> (r, h, t)
        q = LinkPredictionQueries.from_facts(facts, num_relations=ds.num_relations, is_binary=True,
                                             num_entities=ds.num_entities)
    res = evaluate(RelationPrior(ds), ds, "test", queries=q, distributed=False)
    what = "direction" if ds.is_binary else "position"
    return {"system": "prior", "model": f"relation-frequency prior (train answers per relation and {what})",
            "budget_s": 0.0, "train_s": time.time() - t0, "epochs": "-", "metrics": res.metrics}


def _kgc_eval_on(run_dir: Path, ckpt: str, ds, triples, batch_size: int) -> dict:
    """Re-evaluate a finished kgc run's chosen checkpoint on a subset of the test triples."""
    import torch

    from kgc.evaluation import LinkPredictionQueries, ModelScorer, evaluate
    from kgc.models import build_model
    from kgc.models.config import ModelConfig
    from kgc.config import from_dict
    from kgc.training.checkpoint import load_checkpoint_file, strip_model_prefix
    from kgc.vocab import Vocabulary

    vocab = Vocabulary.load(run_dir / "vocab.json")
    ck = load_checkpoint_file(ckpt)
    cfg = from_dict(ModelConfig, ck["kgc"]["model"], where=ckpt)
    model = build_model(cfg, len(vocab), vocab.num_entities, vocab.entity_offset)
    model.load_state_dict(strip_model_prefix(ck["state_dict"]))
    model.eval()
    facts = torch.stack([triples[:, 1], triples[:, 0], triples[:, 2]], 1)
    q = LinkPredictionQueries.from_facts(facts, ds.num_relations, is_binary=True, num_entities=ds.num_entities)
    res = evaluate(ModelScorer(model, vocab), ds, "test", queries=q, batch_size=batch_size, distributed=False)
    return dict(res.metrics)


def run_kgc(args, ds, budget_s: float, test) -> dict:
    root = Path(args.runs_root) / f"quality-{ds.name}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"[bench] kgc fine-tuning config: {args.kgc_config or 'configs/finetune/<dataset>.yaml'}"
          + (f"; pretraining config: {args.kgc_pretrain_config or 'configs/pretrain/<dataset>.yaml'}"
             if args.pretrain_fraction > 0 else ""), flush=True)
    sets = list(args.kgc_set)
    max_steps = 3 if args.smoke else None
    if args.smoke:
        sets += ["trainer.val_every=2", "trainer.ckpt_every=2"]
    init, pre, tag = None, None, "scratch"
    ft_budget = budget_s
    if args.pretrain_fraction > 0:
        pt_budget = budget_s * args.pretrain_fraction
        ft_budget = budget_s - pt_budget
        pre = C.kgc_pretrain(args.dataset, root / "pretrain",
                             pt_budget, args.signals, args.seed, config=args.kgc_pretrain_config,
                             sets=args.kgc_pretrain_set, max_steps=max_steps)
        init = pre["checkpoint"]
        tag = f"pt-{args.signals}"
        print(f"[bench] kgc pretraining ({args.signals}, {pt_budget:.0f}s): {pre['steps']} steps", flush=True)
    m = C.kgc_finetune(args.dataset, root / "finetune", ft_budget, args.seed, init=init, config=args.kgc_config,
                       sets=sets, max_steps=max_steps)
    cfg = m.get("config", {})
    bsz = int(cfg.get("trainer", {}).get("batch_size", 0) or 0)
    n_train_q = _train_examples(ds, cfg.get("targets", "single"))
    epochs = m["finetune_steps"] * bsz / n_train_q if bsz else None
    metrics = m["metrics"] if args.test_set == "full" else \
        _kgc_eval_on(Path(m["run"]), m["checkpoint"], ds, test, args.eval_batch_size)
    print(f"[bench] kgc fine-tuning: {m['finetune_steps']} steps, test MRR {metrics['mrr']:.4f} ({m['run']})",
          flush=True)
    return {"system": "kgc", "model": f"{m['model']} ({tag})", "budget_s": budget_s,
            "train_s": m.get("train_wall_time_s", 0.0) + (pre["wall_s"] if pre else 0.0),
            "epochs": None if epochs is None else round(epochs, 2), "metrics": metrics,
            "steps": {"pretrain": pre["steps"] if pre else 0, "finetune": m["finetune_steps"]}, "run": m["run"]}


def _train_examples(ds, targets: str) -> int:
    """Training examples per epoch: every train query (1vsAll, ``single``) or every distinct one (KvsAll)."""
    import torch

    from kgc.evaluation import LinkPredictionQueries

    q = LinkPredictionQueries.from_dataset(ds, "train")
    if targets != "all":
        return len(q)
    key = torch.cat([q.label[:, None], q.target_role[:, None], q.context, q.context_roles], 1)
    return int(torch.unique(key, dim=0).shape[0])


def _eval_batch(model_name: str, recipe: dict, num_entities: int, requested: int) -> int:
    """PyKEEN's score_t/score_h materialise batch x entities x dim: bound that to about 1 GiB."""
    dim = int(recipe["model_kwargs"]["embedding_dim"]) * (2 if model_name in ("ComplEx", "RotatE") else 1)
    return max(1, min(requested, (2**30) // max(1, num_entities * dim * 4)))


def run_pykeen(args, ds, budget_s: float, test) -> tuple[list[dict], list[list]]:
    factories = C.pykeen_factories(ds, create_inverse_triples=True)
    rows, checks = [], []
    for name in [m.strip() for m in args.pykeen_models.split(",") if m.strip()]:
        recipe = C.pykeen_recipe(name, ds.name)
        if args.pykeen_batch_size:
            recipe["batch_size"] = args.pykeen_batch_size
        print(f"[bench] PyKEEN {recipe['model']} {recipe['model_kwargs']} lr={recipe['lr']} "
              f"batch={recipe['batch_size']}: training for {budget_s:.0f}s", flush=True)
        out = C.train_pykeen(recipe, factories, budget_s, seed=args.seed, ds=ds,
                             valid_fraction=0.0 if args.no_valid else 0.1)
        model = out["model"]
        eb = _eval_batch(recipe["model"], recipe, ds.num_entities, args.eval_batch_size)
        ours = C.our_eval_of_pykeen(model, ds, test, batch_size=eb)
        theirs = C.pykeen_eval(model, factories, test, batch_size=eb)
        o, t = ours["realistic"], theirs["realistic"]
        diff = {k: o[k] - t[k] for k in C.METRIC_KEYS}
        checks.append([recipe["model"], o["mrr"], t["mrr"], f"{diff['mrr']:+.2e}",
                       f"{max(abs(diff[k]) for k in C.METRIC_KEYS[1:]):.2e}",
                       f"{ours['wall_time_s']:.1f}", f"{theirs['wall_time_s']:.1f}",
                       C.ratio(theirs["wall_time_s"], ours["wall_time_s"], 1)])
        print(f"[bench] PyKEEN {recipe['model']}: {out['epochs']} epochs, {out['valid_evals']} validations, "
              f"test MRR ours {o['mrr']:.4f} / PyKEEN {t['mrr']:.4f}", flush=True)
        rows.append({"system": f"PyKEEN {C.pykeen_version()}", "model": f"{recipe['model']} d={recipe['model_kwargs']['embedding_dim']}",
                     "budget_s": budget_s, "train_s": out["train_s"], "epochs": out["epochs"], "metrics": o,
                     "pykeen_metrics": t, "best_valid_mrr": out["best_valid_mrr"], "recipe": recipe})
        del model, out
    return rows, checks


def _reuse_pykeen(path: str, dataset: str, budget_s: float, threads: int, test_set: str) -> tuple[list, list]:
    """PyKEEN rows from an earlier run's JSON, refused unless it measured the same thing."""
    import json

    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--pykeen-results {path}: cannot read ({e})") from None
    want = {"dataset": dataset, "budget_s": budget_s, "test_set": test_set}
    got = {k: old.get(k) for k in want}
    if got != want or old.get("machine", {}).get("threads") != threads:
        raise SystemExit(f"--pykeen-results {path}: measured {got} with {old.get('machine', {}).get('threads')} "
                         f"threads, this run is {want} with {threads}")
    rows = [r for r in old.get("rows", []) if str(r.get("system", "")).startswith("PyKEEN")]
    if not rows:
        raise SystemExit(f"--pykeen-results {path}: no PyKEEN rows")
    when = old.get("machine", {}).get("date", "?")
    print(f"[bench] PyKEEN rows reused from {path} (measured {when}, commit {old['machine'].get('commit')})",
          flush=True)
    return rows, old.get("crosscheck", [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="umls | fb15k237 | wn18rr | nations | ... | a folder")
    p.add_argument("--budget", help="training wall time per system (default: umls 5m, fb15k237/wn18rr 15m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--systems", default="kgc,pykeen", help="comma list of kgc, pykeen")
    p.add_argument("--kgc-config", help="fine-tuning YAML for kgc (kgc.finetune --config; default "
                   "configs/finetune/cpu-budget/<dataset>.yaml when it exists)")
    p.add_argument("--kgc-set", action="append", default=[], metavar="KEY=VALUE", help="kgc.finetune --set")
    p.add_argument("--pretrain-fraction", type=float, default=0.0,
                   help="share of the budget spent pretraining kgc before fine-tuning (0 = none)")
    p.add_argument("--signals", default="all", help="pretraining signals when --pretrain-fraction > 0")
    p.add_argument("--kgc-pretrain-config", help="pretraining YAML (kgc.pretrain --config; default "
                   "configs/pretrain/cpu-budget/<dataset>.yaml when it exists)")
    p.add_argument("--kgc-pretrain-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pykeen-models", default="complex,rotate", help="comma list of complex, rotate, distmult")
    p.add_argument("--pykeen-batch-size", type=int, help="override the recipes' training batch size")
    p.add_argument("--no-valid", action="store_true", help="PyKEEN: final model, no best-on-valid")
    p.add_argument("--test-set", choices=("full", "seen"), default="full")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--runs-root", default="runs/bench", help="where kgc's run folders go")
    p.add_argument("--pykeen-results", metavar="JSON",
                   help="reuse the PyKEEN rows and cross-check of an earlier '--systems pykeen --json' run on this "
                        "machine (same dataset, budget, threads and test set: checked) instead of training PyKEEN")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--smoke", action="store_true", help="seconds-long CI run (budget 4s, kgc 3 steps)")
    args = p.parse_args(argv)

    C.set_threads(args.threads)
    from kgc.data import load_dataset

    args.kgc_config = args.kgc_config or C.cpu_budget_config("finetune", args.dataset)
    args.kgc_pretrain_config = args.kgc_pretrain_config or C.cpu_budget_config("pretrain", args.dataset)

    key = Path(args.dataset).name.lower()
    budget_s = C.parse_duration(args.budget or ("4s" if args.smoke else DEFAULT_BUDGETS.get(key, "5m")))
    systems = {s.strip() for s in args.systems.split(",") if s.strip()}
    info = C.machine_info(args.threads)
    C.print_header(f"quality at budget: {args.dataset}", [__file__] + (argv if argv is not None else sys.argv[1:]), info)
    ds = load_dataset(args.dataset)
    if ds.is_binary:
        test = C.eval_triples(ds, "test", args.test_set)
        print(f"[bench] {ds.name}: {ds.num_entities} entities, {ds.num_relations} relations; test set "
              f"'{args.test_set}': {len(test)} of {len(ds.splits['test'])} triples ({2 * len(test)} rankings, both "
              f"directions); budget {budget_s:.0f}s per system", flush=True)
    else:  # a knowledge hypergraph: kgc and the prior only, every position of every test fact
        if args.test_set != "full":
            p.error("--test-set seen is for triples; n-ary datasets rank every position of every test fact")
        test = None
        systems.discard("pykeen")
        print(f"[bench] {ds.name}: {ds.num_entities} entities, {ds.num_relations} relations, n-ary (max arity "
              f"{ds.max_arity}): PyKEEN does not apply; every position of the {len(ds.splits['test'])} test facts; "
              f"budget {budget_s:.0f}s", flush=True)

    rows: list[dict] = []
    checks: list[list] = []
    reused = None
    if "pykeen" in systems and args.pykeen_results:  # checked before kgc trains: fail fast
        reused = _reuse_pykeen(args.pykeen_results, ds.name, budget_s, args.threads, args.test_set)
    prior = prior_row(ds, test)
    print(f"[bench] relation-frequency prior: test MRR {prior['metrics']['mrr']:.4f}", flush=True)
    if "kgc" in systems:
        rows.append(run_kgc(args, ds, budget_s, test))
    if reused is not None:
        rows += reused[0]
        checks = reused[1]
    elif "pykeen" in systems:
        if not C.pykeen_available():
            print("[bench] PyKEEN is not installed (pip install -e .[bench]); skipping its rows", flush=True)
        else:
            prow, checks = run_pykeen(args, ds, budget_s, test)
            rows += prow

    if checks:
        print("\nevaluator cross-check on PyKEEN's models (realistic, filtered train+valid+test, both directions):")
        print(C.format_table(["model", "our MRR", "PyKEEN MRR", "diff MRR", "max |diff| H@1/3/10", "our eval s",
                              "PyKEEN eval s", "PyKEEN/our time"], checks))
    rows.append(prior)
    best_pk = max((r["metrics"]["mrr"] for r in rows if r["system"].startswith("PyKEEN")), default=None)
    print(f"\nquality at {budget_s:.0f}s, {args.threads} threads, {ds.name} test ({args.test_set}, "
          f"realistic, filtered); ratio = MRR / best PyKEEN MRR:")
    table = [[r["system"], r["model"], f"{r['budget_s']:.0f}s", f"{r['train_s']:.0f}s", r["epochs"],
              r["metrics"]["mrr"], r["metrics"]["hits@1"], r["metrics"]["hits@3"], r["metrics"]["hits@10"],
              f"{r['metrics']['mrr'] - prior['metrics']['mrr']:+.4f}",
              C.ratio(r["metrics"]["mrr"], best_pk, 3)] for r in rows]
    print(C.format_table(["system", "model", "budget", "train+val wall", "epochs", "test MRR", "H@1", "H@3", "H@10",
                          "above prior", "MRR / best PyKEEN"], table), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": ds.name, "budget_s": budget_s, "test_set": args.test_set,
                             "rows": rows, "crosscheck": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
