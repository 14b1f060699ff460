"""GPU checks (skipped without CUDA; run by benchmarks/gpu_check.sh when a GPU is lent).

1. The pure-PyTorch path gives the same outputs on CUDA as on CPU (float64).
2. With mamba-ssm installed: its Triton SSD/conv kernels (our dispatch) match the
   pure-PyTorch reference, with padding, for the Mamba2 mixer and the whole hybrid.
3. ``mamba_ssm.Mamba2`` loaded with our state dict gives our outputs (weight compatibility).
"""

from __future__ import annotations

import pytest
import torch

from kgc.models import build_model, load_model_config
from kgc.models.mamba2 import Mamba2, mamba_ssm_kernels

pytestmark = pytest.mark.cuda

V, E, OFF = 300, 200, 90
BIG = ["dim=64", "headdim=32", "d_state=64", "chunk_size=64", "max_len=256"]


def _needs_mamba_ssm():
    if mamba_ssm_kernels() is None:
        pytest.skip("mamba_ssm not importable (pip install 'kgc[gpu]')")


def _batch(device, L=100):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, V, (3, L), generator=g)
    tokens[1, 70:] = 0  # right padding
    tokens[2, :30] = 0  # left padding
    return tokens.to(device)


@pytest.mark.parametrize("preset", ["transformer-tiny", "hybrid-tiny"])
def test_pure_path_cuda_matches_cpu(preset):
    torch.manual_seed(0)
    m = build_model(load_model_config(preset, ["use_mamba_ssm=never"] if "hybrid" in preset else []), V, E, OFF)
    m = m.double().eval()
    tokens = _batch("cpu", L=40)
    ref = m.encode(tokens, torch.tensor([3, 3, 3]))
    out = m.cuda().encode(tokens.cuda(), torch.tensor([3, 3, 3], device="cuda"))
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-9)


def test_mamba_ssm_kernels_match_pure_mixer():
    _needs_mamba_ssm()
    torch.manual_seed(0)
    fast = Mamba2(64, d_state=64, headdim=32, chunk_size=64, use_mamba_ssm="always").cuda()
    ref = Mamba2(64, d_state=64, headdim=32, chunk_size=64, use_mamba_ssm="never").cuda()
    ref.load_state_dict(fast.state_dict())
    u = torch.randn(3, 100, 64, device="cuda", requires_grad=True)
    keep = _batch("cuda") != 0
    y_fast = fast(u, keep)
    y_ref = ref(u, keep)
    torch.testing.assert_close(y_fast, y_ref, rtol=2e-3, atol=2e-3)
    g_fast = torch.autograd.grad(y_fast.square().sum(), [u, *fast.parameters()])
    g_ref = torch.autograd.grad(y_ref.square().sum(), [u, *ref.parameters()])
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


def test_mamba_ssm_module_accepts_our_weights():
    _needs_mamba_ssm()
    from mamba_ssm import Mamba2 as RefMamba2

    torch.manual_seed(0)
    ours = Mamba2(64, d_state=64, d_conv=4, expand=2, headdim=32, chunk_size=64, use_mamba_ssm="never").cuda()
    theirs = RefMamba2(64, d_state=64, d_conv=4, expand=2, headdim=32, chunk_size=64).cuda()
    theirs.load_state_dict(ours.state_dict())
    u = torch.randn(2, 100, 64, device="cuda")
    torch.testing.assert_close(theirs(u), ours(u), rtol=2e-3, atol=2e-3)


def test_hybrid_mamba_ssm_path_matches_pure_reference():
    _needs_mamba_ssm()
    torch.manual_seed(0)
    fast = build_model(load_model_config("hybrid-tiny", BIG + ["use_mamba_ssm=always"]), V, E, OFF).cuda().eval()
    ref = build_model(load_model_config("hybrid-tiny", BIG + ["use_mamba_ssm=never"]), V, E, OFF).cuda().eval()
    ref.load_state_dict(fast.state_dict())
    tokens = _batch("cuda")
    torch.testing.assert_close(fast.encode(tokens), ref.encode(tokens), rtol=2e-3, atol=2e-3)
