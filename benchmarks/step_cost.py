"""Fine-tuning step cost of the CPU-budget recipes: the fast paths against their baselines, in one invocation.

    python benchmarks/step_cost.py --dataset fb15k237     # the single-row last block (1 and 2 layers)
    python benchmarks/step_cost.py --dataset wn18rr       # the glibc allocator tuning
    python benchmarks/step_cost.py --dataset umls --smoke # CI: seconds

Every row runs in its own subprocess (the allocator setting is per process and cannot be undone),
one after another, with the same model, batches and threads: the CPU-budget recipe's model
(``configs/finetune/cpu-budget/``), batches of sampled training queries with their context and one
answer each (the recipe trains KvsAll; the 1-N cross-entropy over all entities is the same size
either way), the loss of ``LinkPredictionModule.lp_loss`` (``OneVsAllLoss``) + backward + AdamW step
(``train_throughput.kgc_step_times``).
Rows:

* ``reference encoder``: ``encode(..., at=)`` replaced by the full encoding + gather (what the
  model computed before the single-row last block), glibc defaults;
* ``single-row last block``: the model as shipped, glibc defaults;
* ``+ allocator tuning``: also ``kgc.utils.alloc.tune_cpu_allocator`` (what training processes use);
* the same three with ``--kgc-set`` overrides given by ``--variant`` (e.g. 2 layers).

The ratio column is each row's speed over the first row's; peak RSS is the worker process's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import _common as C


def worker(args) -> int:
    C.set_threads(args.threads)
    if args.allocator:
        from kgc.utils.alloc import tune_cpu_allocator

        assert tune_cpu_allocator(), "the allocator tuning did not apply"
    if args.reference_encoder:
        from kgc.models.base import KGCModel

        full = KGCModel.encode

        def encode_then_gather(self, tokens, prefix_len=None, roles=None, extra=None, at=None):
            import torch

            h = full(self, tokens, prefix_len, roles, extra)
            return h if at is None else h[torch.arange(h.shape[0], device=h.device), at]

        KGCModel.encode = encode_then_gather
    from kgc.data import load_dataset
    from train_throughput import kgc_step_times

    ds = load_dataset(args.dataset)
    times, desc, n = kgc_step_times(ds, args.batch_size, args.steps, args.warmup, args.kgc_set, cpu_budget=True)
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    print(json.dumps({"desc": desc, "parameters": n, "median_s": statistics.median(times), "peak_rss_gib": rss}))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fb15k237")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", action="append", default=[], metavar="model.KEY=VALUE",
                   help="also measure the three rows with this override (repeatable: one variant each)")
    p.add_argument("--json")
    p.add_argument("--smoke", action="store_true", help="CI: 2 steps, 1 warm-up")
    # worker mode (one row)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--allocator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reference-encoder", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kgc-set", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.smoke:
        args.steps, args.warmup = 2, 1
    info = C.machine_info(args.threads)
    C.print_header(f"fine-tuning step cost: {args.dataset}", [__file__] + (argv if argv is not None else sys.argv[1:]),
                   info)
    rows = []
    for variant in [None, *args.variant]:
        sets = [] if variant is None else ["--kgc-set", variant]
        for label, flags in (("reference encoder", ["--reference-encoder"]), ("single-row last block", []),
                             ("+ allocator tuning", ["--allocator"])):
            cmd = [sys.executable, __file__, "--worker", "--dataset", args.dataset, "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   *flags, *sets]
            env = {**os.environ, "KGC_MALLOC_TUNING": "1" if "--allocator" in flags else "0"}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise SystemExit(f"worker failed ({label}, {variant}):\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((label + ("" if variant is None else f", {variant}"), r))
            print(f"[bench] {rows[-1][0]}: {r['median_s'] * 1e3:.0f} ms / step ({r['desc']})", flush=True)
    base = rows[0][1]["median_s"]
    print(f"\nstep cost on {args.dataset}, batch {args.batch_size}, {args.threads} threads, median of {args.steps} steps "
          f"after {args.warmup} warm-up; ratio = speed / the first row's:")
    table = [[label, f"{r['parameters'] / 1e6:.2f}M", f"{r['median_s'] * 1e3:.0f}", C.ratio(base, r["median_s"]),
              f"{r['peak_rss_gib']:.2f} GiB"] for label, r in rows]
    print(C.format_table(["step", "parameters", "ms / step", "speed-up", "peak RSS"], table), flush=True)
    C.write_json(args.json, {"machine": info, "dataset": args.dataset, "batch_size": args.batch_size,
                             "rows": [{"step": label, **r} for label, r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
