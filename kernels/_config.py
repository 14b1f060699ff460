"""Dispatch and memory settings shared by the ops in :mod:`kernels`.

Implementation choice (detected once, overridable):

* ``"triton"``  - fused Triton kernels; the default for CUDA tensors (fp16/bf16/fp32,
  hidden size <= ``MAX_TRITON_D``). On CPU it only runs under ``TRITON_INTERPRET=1``
  (the tests force it there).
* ``"chunked"`` - chunked PyTorch with bounded temporary memory; the default on CPU and
  the fallback on CUDA for shapes/dtypes the kernels do not cover (fp64, huge D).
* ``"ref"``     - the dense plain-PyTorch reference (tests, debugging).
* ``"auto"``    - pick as above (default).

Priority: the op's ``impl=`` argument, then :func:`use_impl` / :func:`set_impl`, then the
``KGC_KERNEL_IMPL`` environment variable, then ``"auto"``. This is the one switch of both ops,
ranking included: ``kernels.filtered_rank``'s chunked path counts its blocks with numba on CPU
float32/float64 and with torch elsewhere by itself (the former ``KGC_RANK_COUNT`` is no longer
read; setting it warns).

Memory: the chunked CPU path keeps its temporaries (the score/logit chunk and the
buffers derived from it) under ``chunk_bytes``: the op's ``chunk_bytes=`` argument, else
:func:`set_chunk_bytes` / :func:`use_impl`, else ``KGC_KERNEL_CHUNK_BYTES`` (bytes; suffixes
K/M/G accepted), else 256 MiB. Buffers of the size of the inputs and outputs
(O(B*D + E*D + nnz)) come on top and are not counted.
"""

from __future__ import annotations

import contextlib
import os

import torch

from kgc.errors import KGCError

IMPLS = ("auto", "triton", "chunked", "ref")
DEFAULT_CHUNK_BYTES = 256 * 2**20
MIN_CHUNK_BYTES = 4096
MAX_TRITON_D = 1024  # the kernels keep a (rows x next_pow2(D)) tile on chip


def _parse_bytes(text: str, what: str) -> int:
    s = str(text).strip().upper().rstrip("B")
    mult = 1
    for suffix, m in (("K", 2**10), ("M", 2**20), ("G", 2**30)):
        if s.endswith(suffix):
            s, mult = s[:-1], m
            break
    try:
        value = int(float(s) * mult)
    except ValueError:
        raise KGCError(f"{what}: cannot parse byte count {text!r} (e.g. 268435456, 256M, 1G)") from None
    if value < MIN_CHUNK_BYTES:
        raise KGCError(f"{what}: chunk size {value} bytes is below the minimum {MIN_CHUNK_BYTES}")
    return value


def _env_impl() -> str:
    impl = os.environ.get("KGC_KERNEL_IMPL", "auto").strip().lower() or "auto"
    if impl not in IMPLS:
        raise KGCError(f"KGC_KERNEL_IMPL: unknown implementation {impl!r} (choose from {', '.join(IMPLS)})")
    return impl


def _env_chunk_bytes() -> int:
    raw = os.environ.get("KGC_KERNEL_CHUNK_BYTES")
    return DEFAULT_CHUNK_BYTES if not raw else _parse_bytes(raw, "KGC_KERNEL_CHUNK_BYTES")


_state = {"impl": None, "chunk_bytes": None}  # None: read the environment


def _detect_triton() -> tuple[bool, bool]:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # pragma: no cover - triton is a dependency
        return False, False
    return True, os.environ.get("TRITON_INTERPRET", "0") == "1"


HAS_TRITON, TRITON_INTERPRET = _detect_triton()


def set_impl(impl: str | None) -> None:
    """Set the process-wide implementation (``None`` returns to the environment/auto)."""
    if impl is not None and impl not in IMPLS:
        raise KGCError(f"kernels.set_impl: unknown implementation {impl!r} (choose from {', '.join(IMPLS)})")
    _state["impl"] = impl


def set_chunk_bytes(nbytes: int | str | None) -> None:
    """Set the process-wide temporary-memory bound of the chunked path (``None``: environment/default)."""
    _state["chunk_bytes"] = None if nbytes is None else _parse_bytes(nbytes, "kernels.set_chunk_bytes")


def get_chunk_bytes(override: int | str | None = None) -> int:
    if override is not None:
        return _parse_bytes(override, "chunk_bytes")
    if _state["chunk_bytes"] is not None:
        return _state["chunk_bytes"]
    return _env_chunk_bytes()


@contextlib.contextmanager
def use_impl(impl: str | None = None, chunk_bytes: int | str | None = None):
    """Context manager overriding the implementation and/or chunk size (tests, benchmarks)."""
    old = dict(_state)
    try:
        if impl is not None:
            set_impl(impl)
        if chunk_bytes is not None:
            set_chunk_bytes(chunk_bytes)
        yield
    finally:
        _state.update(old)


def triton_supported(x: torch.Tensor, d: int) -> bool:
    """Whether the Triton kernels cover this input (device, dtype, hidden size)."""
    if not HAS_TRITON or d > MAX_TRITON_D or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    return x.is_cuda or (TRITON_INTERPRET and x.device.type == "cpu")


def requested_impl(impl: str | None = None) -> str:
    """The implementation asked for (argument, then set_impl/use_impl, then KGC_KERNEL_IMPL), before dispatch."""
    return impl if impl is not None else (_state["impl"] if _state["impl"] is not None else _env_impl())


def resolve_impl(impl: str | None, x: torch.Tensor, d: int, op: str) -> str:
    """The implementation an op call runs: ``"triton"``, ``"chunked"`` or ``"ref"``."""
    choice = impl if impl is not None else (_state["impl"] if _state["impl"] is not None else _env_impl())
    if choice not in IMPLS:
        raise KGCError(f"{op}: unknown implementation {choice!r} (choose from {', '.join(IMPLS)})")
    if choice == "auto":
        return "triton" if (x.is_cuda and triton_supported(x, d)) else "chunked"
    if choice == "triton" and not triton_supported(x, d):
        raise KGCError(
            f"{op}: impl='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 on CPU) of dtype "
            f"float32/float16/bfloat16 and hidden size <= {MAX_TRITON_D}; got {x.device.type} {x.dtype} D={d}"
        )
    return choice


def plan_chunks(rows: int, cols: int, elems: int, col_extra: int = 0) -> tuple[int, int]:
    """Chunk sizes (rc, cc) with rc * (cc) + cc * col_extra <= elems (both >= 1).

    Rows are chunked only when a full row block would leave fewer than min(cols, 1024)
    columns per chunk; ``col_extra`` is a per-column overhead (e.g. an upcast weight row).
    """
    elems = max(int(elems), 1)
    want_cols = max(1, min(cols, 1024))
    rc = max(1, min(rows, elems // want_cols - col_extra))
    cc = max(1, min(cols, elems // (rc + col_extra)))
    return rc, cc


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
