"""The whole Mamba2 mixer against an independent float64 reference written one timestep at a time.

The reference shares no code with :mod:`kgc.models.mamba2` or :mod:`kgc.models.ssd`: the input
projection, the causal depthwise convolution (an explicit window over the last ``d_conv`` inputs),
SiLU, the softplus step size, the SSM recurrence ``state = exp(dt A) state + dt x B^T``,
``y = state C + D x``, the gated RMSNorm and the output projection are spelled out with Python loops
over time and plain matrix products. Padding follows the documented rule: a pad enters the
convolution as zeros and has ``dt = 0`` (no decay, no write).
"""

from __future__ import annotations

import pytest
import torch

from kgc.models.mamba2 import Mamba2


def mamba2_step_ref(m: Mamba2, u: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """u (b, l, d_model) float64 -> (b, l, d_model), timestep by timestep."""
    b, l, _ = u.shape
    di, n, h, p, K = m.d_inner, m.d_state, m.nheads, m.headdim, m.d_conv
    W_in = m.in_proj.weight  # (2 di + 2 n + h, d_model)
    conv_w = m.conv1d.weight[:, 0, :]  # (conv_dim, K): tap K-1 multiplies the current input
    conv_b = m.conv1d.bias
    A = -torch.exp(m.A_log)  # (h,)
    rows = []
    for s in range(b):
        states = [torch.zeros(p, n, dtype=u.dtype) for _ in range(h)]  # one (P, N) state per head
        window = [torch.zeros(di + 2 * n, dtype=u.dtype) for _ in range(K)]  # the last K conv inputs
        outs = []
        for t in range(l):
            real = keep is None or bool(keep[s, t])
            proj = W_in @ u[s, t]  # (2 di + 2 n + h,)
            z, xBC, dt_raw = proj[:di], proj[di: 2 * di + 2 * n], proj[2 * di + 2 * n:]
            window = window[1:] + [xBC if real else torch.zeros_like(xBC)]
            conv = conv_b + sum(conv_w[:, k] * window[k] for k in range(K))  # (conv_dim,)
            act = conv * torch.sigmoid(conv)  # SiLU
            x, B, C = act[:di].reshape(h, p), act[di: di + n], act[di + n:]
            dt = torch.log1p(torch.exp(dt_raw + m.dt_bias)) if real else torch.zeros(h, dtype=u.dtype)
            ys = []
            for j in range(h):
                states[j] = torch.exp(dt[j] * A[j]) * states[j] + dt[j] * torch.outer(x[j], B)
                ys.append(states[j] @ C + m.D[j] * x[j])  # (P,)
            g = torch.cat(ys) * (z * torch.sigmoid(z))  # gate with SiLU(z)
            g = g / torch.sqrt((g * g).mean() + m.norm.eps) * m.norm.weight
            outs.append(m.out_proj.weight @ g)
        rows.append(torch.stack(outs))  # (l, d_model)
    return torch.stack(rows)  # (b, l, d_model)


def make_block(seed: int, **kw) -> Mamba2:
    torch.manual_seed(seed)
    m = Mamba2(16, use_mamba_ssm="never", **kw).double()
    with torch.no_grad():  # move the parameters that start at constants, so each one matters
        m.D.uniform_(0.5, 1.5)
        m.norm.weight.uniform_(0.5, 1.5)
        m.conv1d.bias.normal_(0.0, 0.3)
    return m


@pytest.mark.parametrize("chunk_size, length", [(4, 11), (8, 8), (64, 13)])
@pytest.mark.parametrize("d_conv", [2, 4])
def test_mamba2_block_equals_timestep_reference(chunk_size, length, d_conv):
    m = make_block(0, d_state=8, d_conv=d_conv, expand=2, headdim=8, chunk_size=chunk_size)
    u = torch.randn(3, length, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    keep = torch.ones(3, length, dtype=torch.bool)
    keep[1, :3] = False  # left padding
    keep[2, length - 2:] = False  # right padding
    keep[0, length // 2] = False  # a pad in the middle
    for k in (None, keep):
        torch.testing.assert_close(m(u, k), mamba2_step_ref(m, u, k), rtol=1e-10, atol=1e-12)


def test_mamba2_block_gradients_equal_reference():
    m = make_block(2, d_state=4, d_conv=3, expand=2, headdim=4, chunk_size=4)
    u = torch.randn(2, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    keep = torch.ones(2, 7, dtype=torch.bool)
    keep[1, :2] = False
    w = torch.randn(2, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    params = list(m.parameters())
    g_fast = torch.autograd.grad((m(u, keep) * w).sum(), params)
    g_ref = torch.autograd.grad((mamba2_step_ref(m, u, keep) * w).sum(), params)
    for (name, _), a, b in zip(m.named_parameters(), g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=name)


def test_left_padding_gives_the_unpadded_outputs():
    m = make_block(5, d_state=8, d_conv=4, expand=2, headdim=8, chunk_size=4)
    u = torch.randn(1, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    padded = torch.cat([torch.randn(1, 3, 16, dtype=torch.float64), u], dim=1)
    keep = torch.tensor([[False] * 3 + [True] * 6])
    torch.testing.assert_close(m(padded, keep)[:, 3:], m(u, None), rtol=1e-10, atol=1e-12)
