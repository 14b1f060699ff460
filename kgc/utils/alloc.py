"""CPU allocator tuning for training processes (glibc ``mallopt``).

A training step on a large vocabulary allocates and frees the same large buffers every step: the
dense gradient of the token embedding (WN18RR: 41,003 x 256 floats, 42 MB) several times, the
(B, E) logits and their gradient. glibc serves every allocation above its mmap threshold (at most
32 MB, however it adapts) with a fresh ``mmap`` and returns it with ``munmap`` on free, so each of
those buffers is page-faulted in again, zero-filled by the kernel, every step. Measured on the
2-core CPU machine (``python benchmarks/step_cost.py --dataset wn18rr``: the CPU-budget recipe,
batch 256): 407 ms per step with glibc's defaults, 229 ms with ``M_MMAP_MAX = 0`` (large blocks
come from the heap) and a trim threshold that keeps freed memory in the process (peak RSS 0.83 ->
1.09 GiB; docs/benchmarks.md). PyTorch's CPU performance
guide recommends jemalloc or tcmalloc for the same reason; this is the no-dependency equivalent.

The price: memory freed by training is not returned to the operating system until the process
ends (peak RSS is what training peaks at anyway). ``KGC_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_state: dict[str, bool] = {}


def tune_cpu_allocator() -> bool:
    """Apply the glibc settings above once per process; True when they are in effect.

    A no-op (False) off Linux, on a C library without ``mallopt`` (musl), or with
    ``KGC_MALLOC_TUNING=0``."""
    if "applied" in _state:
        return _state["applied"]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("KGC_MALLOC_TUNING", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _state["applied"] = ok
    return ok
