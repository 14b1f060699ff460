"""Training throughput (samples/s): our fine-tuning step vs PyKEEN's LCWA step, same batch size, same threads.

    python benchmarks/train_throughput.py --dataset fb15k237 --batch-size 256
    python benchmarks/train_throughput.py --dataset umls --smoke            # CI: seconds

Ours: ``LinkPredictionModule.lp_loss`` (encoder + fused label-smoothed 1-N cross-entropy over all entities) +
backward + the CLI's AdamW step, on pre-tokenised batches of training queries (both directions). The config is
the one ``kgc finetune --dataset D --from-scratch`` resolves (:func:`kgc_config`, through the CLI's parser and
:mod:`kgc.resolve`: defaults -> size defaults -> ``configs/finetune/<dataset>.yaml`` or, with ``--cpu-budget``,
the CPU-budget recipe -> ``--kgc-set`` as ``--set`` -> ``--batch-size``): its model, optimiser, label smoothing
and (without ``--batch-size``) batch size.
PyKEEN: ComplEx d=200 (``--pykeen-model``) in ``LCWATrainingLoop`` with inverse triples, cross-entropy and
Adam; the time between consecutive batches is read from a training callback, so its data loading is
counted (our pre-tokenised batches cost nothing to load). A sample is one 1-N query in both systems
(ours: ``(h, r, ?)`` or ``(t, r^-1, ?)``; PyKEEN's LCWA: an ``(h, r)`` pair of the inverse-augmented
graph). ``--warmup`` steps are discarded; the median step time of ``--steps`` steps is reported.
The ratio (last) is ours / PyKEEN.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


#: the ``--max-time`` of a ``--cpu-budget`` config (it selects the CPU-budget recipe; the value sets only
#: ``trainer.max_time`` and the time-based schedule's horizon, never a step's cost)
CPU_BUDGET_MAX_TIME = "15m"


def kgc_argv(dataset: str, sets: list[str], cpu_budget: bool = False, batch_size: int | None = None) -> list[str]:
    """The ``kgc finetune`` arguments whose config this benchmark measures."""
    argv = ["--dataset", str(dataset), "--from-scratch"]
    if cpu_budget:  # what a --max-time run on a CPU trains
        argv += ["--max-time", CPU_BUDGET_MAX_TIME, "--accelerator", "cpu"]
    for kv in sets:
        argv += ["--set", kv]
    if batch_size is not None:
        argv += ["--batch-size", str(batch_size)]
    return argv


def kgc_config(ds, sets: list[str], cpu_budget: bool = False, batch_size: int | None = None, dataset: str | None = None):
    """The :class:`kgc.finetune.FinetuneConfig` that ``kgc finetune`` resolves for :func:`kgc_argv`
    (``dataset``: the name as given, default ``ds.name``)."""
    from kgc.finetune import build_parser, resolve_config

    args = build_parser().parse_args(kgc_argv(dataset or ds.name, sets, cpu_budget, batch_size))
    return resolve_config(args, ds)


def kgc_step_times(ds, batch_size: int | None, steps: int, warmup: int, sets: list[str], seed: int = 0,
                   cpu_budget: bool = False):
    import torch

    from kgc.evaluation import LinkPredictionQueries
    from kgc.models import build_model
    from kgc.training.losses import OneVsAllLoss
    from kgc.training.module import LinkPredictionModule
    from pretrain_tasks import build_vocab

    cfg = kgc_config(ds, sets, cpu_budget=cpu_budget, batch_size=batch_size)
    mcfg, batch_size = cfg.model, cfg.trainer.batch_size
    vocab = build_vocab(ds)  # as kgc finetune builds it (the dataset + the signal registry's task list)
    torch.manual_seed(seed)
    model = build_model(mcfg, len(vocab), vocab.num_entities, vocab.entity_offset)
    # the batches below carry one answer per row (no CSR targets): 1vsAll
    module = LinkPredictionModule(model, vocab, cfg.optim, max_steps=cfg.trainer.max_steps,
                                  loss=OneVsAllLoss(cfg.label_smoothing))
    module.train()
    opt = module.configure_optimizers()["optimizer"]  # the CLI's AdamW (parameter groups, lr, weight decay)
    from kgc.evaluation.context import QueryContext, query_batch
    from kgc.evaluation.queries import compact_batch

    ctx = QueryContext.for_dataset(ds, mcfg.context)
    q = LinkPredictionQueries.from_dataset(ds, "train")
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(warmup + steps):
        idx = torch.randint(0, len(q), (batch_size,), generator=g)
        batches.append(compact_batch(query_batch(q[idx], vocab, ctx)))
    times = []
    for i, b in enumerate(batches):
        t0 = time.perf_counter()
        loss = module.lp_loss(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    desc = (f"kgc {mcfg.name} dim={mcfg.dim} layers={mcfg.layers} direct={mcfg.direct} "
            f"context={mcfg.context.budget}")
    return times, desc, int(sum(p.numel() for p in model.parameters()))


def pykeen_step_times(ds, model_name: str, batch_size: int, steps: int, warmup: int, seed: int = 0):
    import torch
    from pykeen.losses import CrossEntropyLoss
    from pykeen.models import model_resolver
    from pykeen.training import LCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback

    recipe = C.pykeen_recipe(model_name, ds.name)
    tf = C.pykeen_factories(ds, create_inverse_triples=True)["train"]
    torch.manual_seed(seed)
    model = model_resolver.make(recipe["model"], recipe["model_kwargs"], triples_factory=tf, loss=CrossEntropyLoss(),
                                random_seed=seed)
    loop = LCWATrainingLoop(model=model, triples_factory=tf, optimizer=torch.optim.Adam(model.parameters(), lr=recipe["lr"]))
    stamps: list[float] = []
    total = warmup + steps

    class Clock(TrainingCallback):
        def pre_batch(self, **kwargs):
            stamps.append(time.perf_counter())
            if len(stamps) > total:
                raise C._BudgetExhausted()

    try:
        loop.train(triples_factory=tf, num_epochs=10**6, batch_size=batch_size, use_tqdm=False, callbacks=[Clock()],
                   pin_memory=False, num_workers=0)
    except C._BudgetExhausted:
        pass
    # stamps[i + 1] - stamps[i] = batch i (loading included); an epoch end in between adds its overhead
    times = [b - a for a, b in zip(stamps[:-1], stamps[1:])][warmup:]
    desc = f"PyKEEN {C.pykeen_version()} {recipe['model']} d={recipe['model_kwargs']['embedding_dim']} LCWA"
    return times, desc, int(sum(p.numel() for p in model.parameters()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fb15k237")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the batch size kgc finetune resolves for the dataset (size defaults, dataset file)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kgc-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a kgc finetune --set override (e.g. model.dim=128)")
    p.add_argument("--pykeen-model", default="complex")
    p.add_argument("--cpu-budget", action="store_true",
                   help="kgc's model from the CPU-budget recipe (configs/finetune/cpu-budget/), as --max-time on a CPU")
    p.add_argument("--json")
    p.add_argument("--smoke", action="store_true", help="CI: 2 steps, 1 warm-up")
    args = p.parse_args(argv)

    C.set_threads(args.threads)
    from kgc.data import load_dataset

    steps, warmup = (2, 1) if args.smoke else (args.steps, args.warmup)
    info = C.machine_info(args.threads)
    C.print_header(f"training throughput: {args.dataset}", [__file__] + (argv if argv is not None else sys.argv[1:]), info)
    ds = load_dataset(args.dataset)
    rows = []
    import resource

    args.batch_size = kgc_config(ds, args.kgc_set, args.cpu_budget, args.batch_size, args.dataset).trainer.batch_size
    t, desc, n = kgc_step_times(ds, args.batch_size, steps, warmup, args.kgc_set, cpu_budget=args.cpu_budget)
    rows.append([desc, n, statistics.median(t)])
    print(f"[bench] peak RSS after kgc's steps: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB",
          flush=True)
    if C.pykeen_available():
        t, desc, n = pykeen_step_times(ds, args.pykeen_model, args.batch_size, steps, warmup)
        rows.append([desc, n, statistics.median(t)])
    else:
        print("[bench] PyKEEN is not installed; its row is skipped", flush=True)
    pk = rows[1][2] if len(rows) > 1 else None
    print(f"\ntraining step throughput on {ds.name} ({ds.num_entities} entities), batch {args.batch_size}, "
          f"{args.threads} threads, median of {steps} steps after {warmup} warm-up; ratio = samples/s / PyKEEN's:")
    table = [[d, f"{n / 1e6:.2f}M", f"{s * 1e3:.0f}", f"{args.batch_size / s:,.0f}",
              C.ratio(args.batch_size / s, None if pk is None else args.batch_size / pk)] for d, n, s in rows]
    print(C.format_table(["step", "parameters", "ms / step", "samples/s", "vs PyKEEN"], table), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": ds.name, "batch_size": args.batch_size,
                             "rows": [{"step": d, "parameters": n, "median_step_s": s} for d, n, s in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
