"""Chunked SSD == naive recurrent scan (outputs and gradients, float64)."""

from __future__ import annotations

import pytest
import torch

from kgc.models.ssd import segsum, ssd_chunked, ssd_recurrent_ref


def _inputs(b=2, l=13, h=4, p=3, g=2, n=5, seed=0, init_state=True):
    gen = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, generator=gen)
    x = torch.randn(b, l, h, p, **kw)
    dt = torch.rand(b, l, h, **kw) * 0.5 + 0.01
    A = -(torch.rand(h, **kw) * 2 + 0.1)
    B = torch.randn(b, l, g, n, **kw)
    C = torch.randn(b, l, g, n, **kw)
    D = torch.randn(h, **kw)
    s0 = torch.randn(b, h, p, n, **kw) if init_state else None
    return [x, dt, A, B, C, D, s0]


@pytest.mark.parametrize("length", [1, 7, 13, 32])
@pytest.mark.parametrize("chunk", [1, 4, 5, 16])
def test_chunked_matches_recurrent_outputs(length, chunk):
    x, dt, A, B, C, D, s0 = _inputs(l=length, seed=length * 31 + chunk)
    y, final = ssd_chunked(x, dt, A, B, C, chunk, D=D, initial_states=s0)
    y_ref, final_ref = ssd_recurrent_ref(x, dt, A, B, C, D=D, initial_states=s0)
    assert y.shape == (2, length, 4, 3) and final.shape == (2, 4, 3, 5)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final, final_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("length,chunk", [(11, 4), (9, 3), (6, 8)])
def test_chunked_matches_recurrent_gradients(length, chunk):
    args = [t.requires_grad_() for t in _inputs(l=length, seed=length)]
    x, dt, A, B, C, D, s0 = args
    gen = torch.Generator().manual_seed(1)
    wy = torch.randn(2, length, 4, 3, dtype=torch.float64, generator=gen)
    wf = torch.randn(2, 4, 3, 5, dtype=torch.float64, generator=gen)

    def loss(fn, *extra):
        y, final = fn(x, dt, A, B, C, *extra, D=D, initial_states=s0)
        return (y * wy).sum() + (final * wf).sum()

    g_chunk = torch.autograd.grad(loss(ssd_chunked, chunk), args)
    g_ref = torch.autograd.grad(loss(ssd_recurrent_ref), args)
    for name, a, b in zip("x dt A B C D s0".split(), g_chunk, g_ref):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


def test_gradcheck_small():
    args = [t.requires_grad_() for t in _inputs(b=1, l=5, h=2, p=2, g=1, n=3, seed=3)]
    x, dt, A, B, C, D, s0 = args
    assert torch.autograd.gradcheck(
        lambda *a: ssd_chunked(*a[:5], 2, D=a[5], initial_states=a[6])[0], tuple(args)
    )


def test_head_dim_skip_and_no_initial_state():
    x, dt, A, B, C, _, _ = _inputs(init_state=False)
    Dhp = torch.randn(4, 3, dtype=torch.float64)
    y, f = ssd_chunked(x, dt, A, B, C, 4, D=Dhp)
    y_ref, f_ref = ssd_recurrent_ref(x, dt, A, B, C, D=Dhp)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(f, f_ref)


def test_zero_dt_steps_are_transparent():
    """dt = 0 neither decays nor writes the state: inserting such steps changes nothing else."""
    x, dt, A, B, C, D, s0 = _inputs(l=6, seed=5)
    y, f = ssd_chunked(x, dt, A, B, C, 4, D=None, initial_states=s0)
    ins = lambda t: torch.cat([t[:, :3], torch.randn_like(t[:, :2]), t[:, 3:]], dim=1)  # noqa: E731
    dt2 = torch.cat([dt[:, :3], torch.zeros_like(dt[:, :2]), dt[:, 3:]], dim=1)
    y2, f2 = ssd_chunked(ins(x), dt2, A, ins(B), ins(C), 4, D=None, initial_states=s0)
    torch.testing.assert_close(y2[:, [0, 1, 2, 5, 6, 7]], y)
    torch.testing.assert_close(f2, f)


@pytest.mark.parametrize("length,chunk", [(5, 8), (12, 4)])
def test_without_final_state(length, chunk):
    x, dt, A, B, C, D, _ = _inputs(l=length, init_state=False)
    y, f = ssd_chunked(x, dt, A, B, C, chunk, D=D, return_final_state=False)
    assert f is None
    torch.testing.assert_close(y, ssd_recurrent_ref(x, dt, A, B, C, D=D)[0])


def test_segsum():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    s = segsum(a)
    assert s[2, 0] == 5.0 and s[1, 1] == 0.0 and s[0, 1] == float("-inf")
