"""Pretraining throughput: signal target tokens per second of the cheap output layer and packing against
the full-vocabulary path, same model and same sequences, in one invocation.

    python benchmarks/pretrain_throughput.py --datasets fb15k237,wn18rr --steps 10
    python benchmarks/pretrain_throughput.py --datasets nations --steps 2 --warmup 1   # CI smoke: seconds

For each dataset: the pretraining data of ``--signals all`` (the signal cache under ``KGC_HOME``), the model
a budgeted fine-tuning of that dataset resolves to (``kgc.ablation.finetune_model`` with ``--max-time``:
on CPU the CPU-budget recipe, which is also what every ablation arm at that budget pretrains), and the step-indexed, token-budgeted batches of
``StepTaskBatchSampler`` (``trainer.batch_size * 48`` tokens per step, mixed- or single-task as the defaults
``signals.step_tasks`` says; the same sequences for every row).
Rows, each from the same initial weights with its own AdamW:

* ``full, padded``: every target over the whole vocabulary (``loss.kind=full``, no direct term), the
  sequences right-padded per batch (``signals.packing=false``) - the path before issue 15;
* ``full, packed``: the same loss on packed rows (``collate_packed``);
* ``typed, packed``: each target over its token class, entities exact over all entities;
* ``sampled, padded``: the default loss (entity targets by the logQ-corrected sampled softmax,
  ``loss.negatives`` shared draws + in-batch targets, the direct term) on padded batches;
* ``sampled, packed``: the new default (``loss.kind=sampled``, ``signals.packing=true``).

A step is collate + forward + backward + AdamW step (wall clock, ``time.perf_counter``), after
``--warmup`` untimed steps; the rows run one after another in this process. tokens/s = target tokens
(positions with a label) / seconds; the ratio is over the first row.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

ROWS = (("full, padded", "full", False, False), ("full, packed", "full", False, True),
        ("typed, packed", "typed", True, True), ("sampled, padded", "sampled", True, False),
        ("sampled, packed", "sampled", True, True))


def measure(dataset: str, steps: int, warmup: int, batch_size: int, negatives: int, rows, log=print) -> list[dict]:
    import torch

    from kgc.ablation import finetune_model
    from kgc.config import from_dict
    from kgc.models import build_model
    from kgc.models.config import ModelConfig
    from kgc.training.losses import SignalLoss, TokenLayout
    from kgc.training.pretrain_data import PretrainDataModule, SignalsConfig, StepTaskBatchSampler
    from pretrain_tasks import collate, collate_packed

    # the model a budgeted fine-tuning resolves to (``--max-time``: on CPU the CPU-budget recipe)
    mcfg = from_dict(ModelConfig, finetune_model(dataset, {"max_time": "15m"}), where=f"{dataset} fine-tuning model")
    from kgc.resources import config_dir
    from kgc.utils.io import read_yaml

    # the pretraining defaults' signal section (configs/pretrain/default.yaml): all five, their sizes
    sig = from_dict(SignalsConfig, read_yaml(config_dir("pretrain") / "default.yaml")["signals"], where="signals")
    dm = PretrainDataModule(dataset, sig, batch_size, seed=0, model_name=mcfg.name, max_len=mcfg.max_len)
    dm.prepare_data()
    dm.setup("fit")
    v, ts = dm.vocab, dm.train_set
    sampler = StepTaskBatchSampler(dm.sampler, ts.task_index, ts.task_ids, batch_size, 0, lambda: 0,
                                   lengths=ts.lengths, batch_tokens=batch_size * 48,
                                   mixed=sig.step_tasks == "mixed")
    batches = [[ts[i] for i in sampler.batch(g)] for g in range(warmup + steps)]
    torch.manual_seed(0)
    base = build_model(mcfg, len(v), v.num_entities, v.entity_offset)
    log(f"[bench] {dataset}: vocabulary {len(v)} ({v.num_entities} entities), model {mcfg.name} D{mcfg.dim} "
        f"x{mcfg.layers} direct={mcfg.direct}, {base.num_parameters() / 1e6:.2f}M parameters; "
        f"signals {dict(dm.sizes)}; {steps} timed steps after {warmup}")
    out = []
    for label, kind, direct, packed in rows:
        model = copy.deepcopy(base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = SignalLoss(kind, negatives, True, direct, TokenLayout.of(v))
        tokens = seconds = 0.0
        real = cells = 0
        for g, seqs in enumerate(batches):
            t0 = time.perf_counter()
            batch = collate_packed(seqs, mcfg.max_len) if packed else collate(seqs)
            loss, stats = loss_fn(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            if g >= warmup:
                seconds += dt
                tokens += int(stats["tok_loss"].numel())
                real += int((batch.tokens != 0).sum())
                cells += batch.tokens.numel()
        out.append({"dataset": dataset, "row": label, "kind": kind, "direct": direct, "packed": packed,
                    "target_tokens": int(tokens), "seconds": seconds, "tokens_per_s": tokens / seconds,
                    "padding": 1 - real / max(cells, 1)})
        log(f"[bench] {dataset} {label}: {tokens / seconds:,.0f} target tokens/s ({seconds:.1f}s)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="fb15k237,wn18rr")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--negatives", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    from kgc.utils.alloc import tune_cpu_allocator

    tune_cpu_allocator()
    info = C.machine_info(args.threads)
    C.print_header("pretraining throughput (signal target tokens per second)",
                   [__file__] + (argv if argv is not None else sys.argv[1:]), info)
    results = []
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        results += measure(ds, args.steps, args.warmup, args.batch_size, args.negatives, ROWS)
    rows = []
    for r in results:
        ref = next(x for x in results if x["dataset"] == r["dataset"] and x["row"] == ROWS[0][0])
        rows.append([r["dataset"], r["row"], f"{r['target_tokens']:,}", f"{r['seconds']:.1f}",
                     f"{r['tokens_per_s']:,.0f}", f"{100 * r['padding']:.1f}%",
                     C.ratio(r["tokens_per_s"], ref["tokens_per_s"])])
    print("\nsignal target tokens per second (collate + forward + backward + AdamW), same sequences per row:")
    print(C.format_table(["dataset", "loss, batches", "target tokens", "seconds", "tokens/s", "padding",
                          "vs full, padded"], rows), flush=True)
    C.write_json(args.json, {"machine": info, "args": vars(args), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
