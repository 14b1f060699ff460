"""Deterministic peak-memory accounting for CPU code (tests and benchmarks).

``peak_cpu_bytes(fn)`` runs ``fn`` under ``torch.profiler`` with memory profiling and
returns (result, peak) where peak is the largest sum of live bytes allocated *during* the
call (allocations minus frees, in event order); memory held before the call is not counted.
"""

from __future__ import annotations

from torch.profiler import ProfilerActivity, profile


def peak_cpu_bytes(fn):
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type().name == "CPU"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return result, peak
