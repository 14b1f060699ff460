"""kernels.linear_cross_entropy: Triton (interpreter on CPU) and chunked paths vs the reference."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels._memory import peak_cpu_bytes
from kgc import KGCError

B, D, E = 19, 24, 37  # E, B not multiples of the interpreter's 16-wide blocks


def _data(b=B, d=D, e=E, dtype=torch.float32, bias=True, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, d, generator=g, dtype=torch.float64).to(device=device, dtype=dtype).requires_grad_()
    w = (0.5 * torch.randn(e, d, generator=g, dtype=torch.float64)).to(device=device, dtype=dtype).requires_grad_()
    bb = torch.randn(e, generator=g, dtype=torch.float64).to(device=device, dtype=dtype).requires_grad_() if bias else None
    t = torch.randint(0, e, (b,), generator=g).to(device)
    return h, w, bb, t


def _run(fn, h, w, bb, **kw):
    loss = fn(h, w, bias=bb, **kw)
    inputs = [x for x in (h, w, bb) if x is not None]
    grads = torch.autograd.grad(loss.sum(), inputs)
    return loss.detach(), grads


def _close(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(a.to(torch.float64), b.to(torch.float64), rtol=rtol, atol=atol)


@pytest.mark.parametrize("impl", ["chunked", "triton"])
@pytest.mark.parametrize("bias,eps,reduction", [(True, 0.1, "mean"), (False, 0.0, "sum"), (True, 0.25, "none")])
def test_single_label_matches_reference(impl, bias, eps, reduction):
    h, w, bb, t = _data(bias=bias)
    t[[2, 11]] = -100  # ignored rows
    kw = dict(target=t, label_smoothing=eps, reduction=reduction)
    ref, ref_grads = _run(kernels.linear_cross_entropy_ref, h, w, bb, **kw)
    out, grads = _run(kernels.linear_cross_entropy, h, w, bb, impl=impl, chunk_bytes=4096, **kw)
    _close(out, ref)
    for g, rg in zip(grads, ref_grads):
        _close(g, rg)


@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_multi_label_csr_matches_reference(impl):
    h, w, bb, _ = _data()
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 5, (B,), generator=g)
    counts[0], counts[1] = 0, E  # an empty row (ignored) and a row where every entity is true
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    indices = torch.cat([torch.randperm(E, generator=g)[: int(c)] for c in counts])
    kw = dict(target=None, target_indptr=indptr, target_indices=indices, label_smoothing=0.1)
    ref, ref_grads = _run(kernels.linear_cross_entropy_ref, h, w, bb, **kw)
    out, grads = _run(kernels.linear_cross_entropy, h, w, bb, impl=impl, **kw)
    _close(out, ref)
    for a, r in zip(grads, ref_grads):
        _close(a, r)


def test_matches_torch_cross_entropy_convention():
    h, w, bb, t = _data(bias=True)
    logits = h @ w.T + bb
    expected = torch.nn.functional.cross_entropy(logits, t, label_smoothing=0.3)
    q = torch.full((B, E), 0.3 / E, dtype=torch.float64)
    q[torch.arange(B), t] += 0.7
    manual = -(q * torch.log_softmax(logits.double(), 1)).sum(1).mean()
    got = kernels.linear_cross_entropy(h, w, t, bb, label_smoothing=0.3, impl="chunked")
    _close(got, expected)
    _close(got, manual)


def test_chunked_gradcheck_float64():
    h, w, bb, t = _data(b=5, d=4, e=9, dtype=torch.float64)
    fn = lambda h_, w_, b_: kernels.linear_cross_entropy(h_, w_, t, b_, label_smoothing=0.2, impl="chunked", chunk_bytes=4096)
    assert torch.autograd.gradcheck(fn, (h, w, bb))


def test_chunked_row_and_column_chunking():
    # 4096 bytes -> 1024 fp32 elements: B=80 rows (x D=8 overhead) force row chunks as well as entity chunks
    h, w, bb, t = _data(b=80, d=8, e=301)
    ref, ref_grads = _run(kernels.linear_cross_entropy_ref, h, w, bb, target=t, label_smoothing=0.1)
    out, grads = _run(kernels.linear_cross_entropy, h, w, bb, target=t, label_smoothing=0.1, impl="chunked", chunk_bytes=4096)
    _close(out, ref)
    for a, r in zip(grads, ref_grads):
        _close(a, r)


def test_chunked_peak_memory_under_setting():
    b, d, e, limit = 64, 8, 3000, 64 * 1024
    h, w, bb, t = _data(b=b, d=d, e=e)
    io_bytes = 4 * (b * d + e * d + e) + 8 * 16 * b + 16384  # the gradients, per-row vectors, small slack

    def step(fn, **kw):
        def go():
            loss = fn(h, w, t, bb, label_smoothing=0.1, **kw)
            return torch.autograd.grad(loss, (h, w, bb))
        return go

    _, naive = peak_cpu_bytes(step(kernels.linear_cross_entropy_ref))
    _, chunked = peak_cpu_bytes(step(kernels.linear_cross_entropy, impl="chunked", chunk_bytes=limit))
    assert naive > 4 * b * e  # the dense logits
    assert chunked - io_bytes <= limit, (chunked, io_bytes, limit)
    assert chunked < naive / 2


def test_overrides_and_errors(monkeypatch):
    h, w, bb, t = _data()
    with kernels.use_impl("ref"):
        a = kernels.linear_cross_entropy(h, w, t, bb)
    kernels.set_impl("chunked")
    try:
        b = kernels.linear_cross_entropy(h, w, t, bb)
    finally:
        kernels.set_impl(None)
    _close(a, b)
    monkeypatch.setenv("KGC_KERNEL_CHUNK_BYTES", "8K")
    assert kernels.get_chunk_bytes() == 8192
    with kernels.use_impl(chunk_bytes=16384):
        assert kernels.get_chunk_bytes() == 16384
    with pytest.raises(KGCError):
        kernels.linear_cross_entropy(h, w, t, bb, impl="bogus")
    with pytest.raises(KGCError, match="out of range"):
        kernels.linear_cross_entropy(h, w, torch.full((B,), E), bb)
    with pytest.raises(KGCError, match="either target"):
        kernels.linear_cross_entropy(h, w, None, bb)
    with pytest.raises(KGCError):
        kernels.linear_cross_entropy(h, w[:, :3], t, bb)
    with pytest.raises(KGCError):
        kernels.linear_cross_entropy(h.double(), w.double(), t, impl="triton")


# --------------------------------------------------------------------------- CUDA (skipped here)


def _err(x, ref):
    return (x.double() - ref).abs().max().item()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("e", [1000, 14541])
def test_cuda_error_at_most_twice_pytorch(dtype, e):
    """Kernel error vs an fp64 reference <= 2x PyTorch's own error in the same dtype."""
    h, w, bb, t = _data(b=256, d=256, e=e, dtype=dtype, device="cuda")
    h64, w64, b64 = (x.detach().double().requires_grad_() for x in (h, w, bb))
    ref, ref_grads = _run(kernels.linear_cross_entropy_ref, h64, w64, b64, target=t, label_smoothing=0.1)
    torch_out, torch_grads = _run(kernels.linear_cross_entropy_ref, h, w, bb, target=t, label_smoothing=0.1)
    out, grads = _run(kernels.linear_cross_entropy, h, w, bb, target=t, label_smoothing=0.1, impl="triton")
    floor = 1e-6 if dtype == torch.float32 else 1e-4
    assert _err(out, ref) <= 2 * _err(torch_out, ref) + floor
    for g, tg, rg in zip(grads, torch_grads, ref_grads):
        assert _err(g, rg) <= 2 * _err(tg, rg) + floor * rg.abs().max().item()
    if dtype == torch.float32:
        _close(out, ref, rtol=1e-5, atol=1e-5)
    else:
        _close(out, ref, rtol=1e-2, atol=1e-2)


@pytest.mark.cuda
def test_cuda_multilabel_and_chunked_agree():
    h, w, bb, t = _data(b=128, d=64, e=3000, device="cuda")
    a, ga = _run(kernels.linear_cross_entropy, h, w, bb, target=t, label_smoothing=0.1, impl="triton")
    b_, gb = _run(kernels.linear_cross_entropy, h, w, bb, target=t, label_smoothing=0.1, impl="chunked")
    _close(a, b_, rtol=1e-4, atol=1e-5)
    for x, y in zip(ga, gb):
        _close(x, y, rtol=1e-4, atol=1e-5)
