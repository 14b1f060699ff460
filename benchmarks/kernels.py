"""Benchmark the fused kernels against naive PyTorch (time and peak memory), same process.

    python benchmarks/kernels.py            # CUDA if present (Triton vs naive), else CPU (chunked vs naive)
    python benchmarks/kernels.py --quick    # smaller sizes / fewer repeats
    python benchmarks/kernels.py --cpu      # force the CPU comparison

CUDA grid: B in {1024, 4096}, D = 256, E in {14541, 40943, 1000000}, float32 and bfloat16.
Reported per row: forward+backward time of linear_cross_entropy (fused vs naive
F.cross_entropy(h @ W.T + b)), peak memory above the inputs, the FLOP-bound floor (3 matmuls of
2*B*E*D FLOPs at the throughput of a large matmul measured in the same process and dtype), and
filtered_rank (fused vs the dense reference). Ratios are naive / fused.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kernels  # noqa: E402
from kernels._memory import peak_cpu_bytes  # noqa: E402


def _fmt_bytes(n):
    return "OOM" if n is None else f"{n / 2**20:9.1f}MiB"


def _fmt_ms(t):
    return "   OOM" if t is None else f"{t * 1e3:8.2f}ms"


def _ratio(a, b):
    return "   -" if (a is None or b is None or b == 0) else f"{a / b:6.2f}x"


def _make(B, D, E, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = (torch.randn(B, D, generator=g) / D**0.5).to(device, dtype).requires_grad_()
    w = torch.randn(E, D, generator=g).to(device, dtype).requires_grad_()
    b = torch.zeros(E).to(device, dtype).requires_grad_()
    t = torch.randint(0, E, (B,), generator=g).to(device)
    nnz = 8 * B
    indptr = torch.arange(0, nnz + 1, 8).to(device)
    indices = torch.randint(0, E, (nnz,), generator=g).to(device)
    return h, w, b, t, indptr, indices


def _lce_step(impl, h, w, b, t):
    def go():
        loss = kernels.linear_cross_entropy(h, w, t, b, label_smoothing=0.1, impl=impl)
        return torch.autograd.grad(loss, (h, w, b))
    return go


def _rank_step(impl, h, w, b, t, indptr, indices):
    return lambda: kernels.filtered_rank(h.detach(), w.detach(), t, indptr, indices, b.detach(), impl=impl)


# --------------------------------------------------------------------------- CUDA


def _cuda_time(fn, reps):
    try:
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps / 1e3
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def _cuda_peak(fn):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    try:
        out = fn()
        torch.cuda.synchronize()
        del out
        return torch.cuda.max_memory_allocated() - base
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def _matmul_tflops(dtype):
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    t = _cuda_time(lambda: a @ a, 10)
    return 2 * n**3 / t


def run_cuda(quick):
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for both sides
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    Bs = [1024] if quick else [1024, 4096]
    Es = [14541, 40943, 1000000]
    reps = 3 if quick else 10
    for dtype in (torch.float32, torch.bfloat16):
        peak = _matmul_tflops(dtype)
        print(f"\n== {str(dtype).replace('torch.', '')}: large-matmul throughput {peak / 1e12:.0f} TFLOP/s (floor = 3*2*B*E*D / that)")
        print(f"{'B':>5} {'E':>8} | {'LCE fused':>10} {'naive':>10} {'speedup':>7} {'floor':>10} | "
              f"{'mem fused':>12} {'mem naive':>12} | {'rank fused':>10} {'rank ref':>10} {'speedup':>7} | "
              f"{'rmem fused':>12} {'rmem ref':>12}")
        for B in Bs:
            for E in Es:
                h, w, b, t, ip, ix = _make(B, 256, E, dtype, "cuda")
                fused = _cuda_time(_lce_step("triton", h, w, b, t), reps)
                naive = _cuda_time(_lce_step("ref", h, w, b, t), reps)
                mf = _cuda_peak(_lce_step("triton", h, w, b, t))
                mn = _cuda_peak(_lce_step("ref", h, w, b, t))
                floor = 3 * 2 * B * E * 256 / peak
                rf = _cuda_time(_rank_step("triton", h, w, b, t, ip, ix), reps)
                rr = _cuda_time(_rank_step("ref", h, w, b, t, ip, ix), reps)
                rmf = _cuda_peak(_rank_step("triton", h, w, b, t, ip, ix))
                rmr = _cuda_peak(_rank_step("ref", h, w, b, t, ip, ix))
                print(f"{B:>5} {E:>8} | {_fmt_ms(fused):>10} {_fmt_ms(naive):>10} {_ratio(naive, fused):>7} {_fmt_ms(floor):>10} | "
                      f"{_fmt_bytes(mf):>12} {_fmt_bytes(mn):>12} | {_fmt_ms(rf):>10} {_fmt_ms(rr):>10} {_ratio(rr, rf):>7} | "
                      f"{_fmt_bytes(rmf):>12} {_fmt_bytes(rmr):>12}", flush=True)
                del h, w, b, t, ip, ix
                torch.cuda.empty_cache()


# --------------------------------------------------------------------------- CPU


def _cpu_time(fn, reps):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def run_cpu(quick):
    threads = torch.get_num_threads()
    print(f"device: CPU ({threads} threads)  torch {torch.__version__}  chunk_bytes={kernels.get_chunk_bytes() / 2**20:.0f}MiB")
    shapes = [(256, 128, 14541)] if quick else [(256, 128, 14541), (1024, 256, 14541), (1024, 256, 40943)]
    reps = 1 if quick else 3
    print(f"{'B':>5} {'D':>4} {'E':>6} | {'LCE chunked':>11} {'naive':>10} {'ratio':>7} | {'mem chunked':>12} {'mem naive':>12} | "
          f"{'rank chunked':>12} {'rank ref':>10} {'ratio':>7} | {'rmem chunked':>12} {'rmem ref':>12}")
    for B, D, E in shapes:
        h, w, b, t, ip, ix = _make(B, D, E, torch.float32, "cpu")
        fc = _cpu_time(_lce_step("chunked", h, w, b, t), reps)
        fn = _cpu_time(_lce_step("ref", h, w, b, t), reps)
        _, mc = peak_cpu_bytes(_lce_step("chunked", h, w, b, t))
        _, mn = peak_cpu_bytes(_lce_step("ref", h, w, b, t))
        rc = _cpu_time(_rank_step("chunked", h, w, b, t, ip, ix), reps)
        rr = _cpu_time(_rank_step("ref", h, w, b, t, ip, ix), reps)
        _, rmc = peak_cpu_bytes(_rank_step("chunked", h, w, b, t, ip, ix))
        _, rmr = peak_cpu_bytes(_rank_step("ref", h, w, b, t, ip, ix))
        print(f"{B:>5} {D:>4} {E:>6} | {_fmt_ms(fc):>11} {_fmt_ms(fn):>10} {_ratio(fn, fc):>7} | {_fmt_bytes(mc):>12} {_fmt_bytes(mn):>12} | "
              f"{_fmt_ms(rc):>12} {_fmt_ms(rr):>10} {_ratio(rr, rc):>7} | {_fmt_bytes(rmc):>12} {_fmt_bytes(rmr):>12}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller grid, fewer repeats")
    p.add_argument("--cpu", action="store_true", help="CPU comparison even when CUDA is present")
    p.add_argument("--chunk-bytes", default=None, help="chunked-path memory bound (e.g. 64M)")
    args = p.parse_args(argv)
    if args.chunk_bytes:
        kernels.set_chunk_bytes(args.chunk_bytes)
    if torch.cuda.is_available() and not args.cpu:
        run_cuda(args.quick)
    else:
        run_cpu(args.quick)


if __name__ == "__main__":
    main()
