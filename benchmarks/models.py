"""Forward+backward throughput and memory of the kgc encoders.

    python benchmarks/models.py [--quick] [--device cpu|cuda] [--batch 16] [--iters 3] [--threads 2]

For each model (default presets ``transformer`` and ``hybrid``) and sequence
length it times ``encode`` + link-prediction head (entity scores at the last
position, cross-entropy) + backward, and reports sequences/s and memory:
on CUDA the peak allocated bytes; on CPU the bytes of tensors saved for
backward (activation memory, counted through ``saved_tensors_hooks``, each
storage once) plus the process max RSS. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kgc.models import build_model, load_model_config  # noqa: E402

VOCAB, ENTITIES, OFFSET = 15_000, 14_500, 500  # ~FB15k-237-sized entity table


def saved_bytes(fn) -> tuple[object, int]:
    """Run fn() and count bytes of distinct storages autograd saved for backward."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type != "meta":
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def step(model, tokens, target):
    h = model.encode(tokens)  # (B, L, D)
    loss = F.cross_entropy(model.entity_scores(h[:, -1]), target)
    return loss


def bench(preset: str, L: int, batch: int, iters: int, device: str) -> dict:
    torch.manual_seed(0)
    cfg = load_model_config(preset, ["dropout=0.0", "attn_dropout=0.0"])
    model = build_model(cfg, VOCAB, ENTITIES, OFFSET).to(device).train()
    tokens = torch.randint(1, VOCAB, (batch, L), device=device)
    target = torch.randint(0, ENTITIES, (batch,), device=device)
    step(model, tokens, target).backward()  # warm-up
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loss, act = saved_bytes(lambda: step(model, tokens, target))
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        model.zero_grad(set_to_none=True)
        step(model, tokens, target).backward()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / iters
    mem = torch.cuda.max_memory_allocated() if device == "cuda" else act
    return {"model": preset, "L": L, "params": model.num_parameters(), "seq_s": batch / dt, "ms": dt * 1e3, "mem_mb": mem / 2**20}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 4, 1 iteration, lengths 3/16/64")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["transformer", "hybrid"])
    ap.add_argument("--lengths", nargs="+", type=int, default=[3, 16, 64, 256])
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.iters, args.lengths = 4, 1, [3, 16, 64]
    torch.set_num_threads(args.threads)
    mem_kind = "peak CUDA alloc" if args.device == "cuda" else "saved activations"
    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} iters={args.iters} torch={torch.__version__}")
    print(f"| model | L | params | seq/s (fwd+bwd) | ms/step | {mem_kind} MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset in args.models:
        for L in args.lengths:
            r = bench(preset, L, args.batch, args.iters, args.device)
            print(f"| {r['model']} | {r['L']} | {r['params'] / 1e6:.2f}M | {r['seq_s']:.1f} | {r['ms']:.1f} | {r['mem_mb']:.1f} |", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
