"""A Mamba2 mixer in pure PyTorch, with mamba-ssm kernels on CUDA when available.

Data flow (Dao & Gu 2024; parameter names and shapes as ``mamba_ssm.Mamba2``
with ``ngroups=1, bias=False, conv_bias=True, rmsnorm=True,
norm_before_gate=False, D_has_hdim=False``, so ``load_state_dict`` works both ways)::

    u (b, l, d_model)
    in_proj  -> z (b, l, d_inner) | xBC (b, l, d_inner + 2 g n) | dt (b, l, h)
    xBC      -> causal depthwise conv1d (width d_conv) -> SiLU -> x (b,l,h,p), B (b,l,g,n), C (b,l,g,n)
    dt       -> softplus(dt + dt_bias);  A = -exp(A_log) (h,)
    y        =  SSD(x, dt, A, B, C) + D * x                     (b, l, h, p) -> (b, l, d_inner)
    y        =  RMSNorm(y * SiLU(z)) * norm.weight              gated RMSNorm
    out_proj -> (b, l, d_model)

Padding (``keep`` (b, l) bool, False at pads): the conv input is zeroed at pads
and ``dt`` is set to 0 there, so a pad neither decays nor writes the SSM state
and contributes zeros to the conv window. A left-padded sequence therefore
gives exactly the outputs of the unpadded one (its state is still zero when the
first real token arrives); right pads come after every real token (causal).

Fast path: the SSD scan runs through ``mamba_ssm``'s Triton
``mamba_chunk_scan_combined`` (and the conv through ``causal_conv1d_fn``
when installed) when the input is on CUDA and mamba-ssm imports. We dispatch
at the kernel level, not to the ``mamba_ssm.Mamba2`` module, because that
module takes no padding mask; the parameters are the same either way, and the
CUDA test also checks that ``mamba_ssm.Mamba2`` loaded with our state dict
gives our outputs. Detection happens once (:func:`mamba_ssm_kernels`);
``use_mamba_ssm`` = ``auto`` | ``never`` | ``always`` overrides it.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from kgc.errors import KGCError
from kgc.models.ssd import ssd_chunked


@functools.lru_cache(maxsize=None)
def mamba_ssm_kernels() -> SimpleNamespace | None:
    """mamba-ssm's fused ops, or None. Imported lazily and only with CUDA: mamba_ssm's package
    ``__init__`` loads a CUDA extension and fails on CPU-only machines. Cached: detect once."""
    if not torch.cuda.is_available():
        return None
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # ImportError, OSError from the extension, ...
        return None
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    return SimpleNamespace(scan=mamba_chunk_scan_combined, conv=causal_conv1d_fn)


class RMSNormGated(nn.Module):
    """``RMSNorm(y * SiLU(z)) * weight`` over the last dim (mamba-ssm's ``norm_before_gate=False``)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y, z (..., dim) -> (..., dim)."""
        y = y * F.silu(z)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mamba2(nn.Module):
    """Mamba2 mixer: u (b, l, d_model), keep (b, l) | None -> (b, l, d_model)."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 32,
        chunk_size: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        use_mamba_ssm: str = "auto",
    ):
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise KGCError(f"expand * d_model ({self.d_inner}) must be divisible by headdim ({headdim})")
        self.headdim, self.nheads, self.ngroups, self.chunk_size = headdim, self.d_inner // headdim, ngroups, chunk_size
        self.use_mamba_ssm = use_mamba_ssm
        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=True)
        # dt initialised log-uniform in [dt_min, dt_max]; dt_bias = softplus^-1(dt)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp_min(dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # (h,)
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))  # (h,)
        self.D = nn.Parameter(torch.ones(self.nheads))  # (h,) skip connection
        self.norm = RMSNormGated(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.out_proj._residual_proj = True

    def _kernels(self, u: torch.Tensor) -> SimpleNamespace | None:
        if self.use_mamba_ssm == "never" or not u.is_cuda:
            if self.use_mamba_ssm == "always":
                raise KGCError("use_mamba_ssm=always needs CUDA inputs (got a CPU tensor)")
            return None
        kern = mamba_ssm_kernels()
        if kern is None and self.use_mamba_ssm == "always":
            raise KGCError("use_mamba_ssm=always but mamba_ssm is not importable (pip install 'kgc[gpu]')")
        return kern

    def forward(self, u: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        b, l, _ = u.shape
        h, p, g, n = self.nheads, self.headdim, self.ngroups, self.d_state
        kern = self._kernels(u)
        z, xBC, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * g * n, h], dim=-1)
        if keep is not None:
            xBC = xBC * keep[..., None].to(xBC.dtype)  # pads enter the conv as zeros
        if kern is not None and kern.conv is not None:
            xBC = kern.conv(
                xBC.transpose(1, 2), self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu"
            ).transpose(1, 2)  # (b, l, conv_dim)
        else:
            xBC = F.silu(self.conv1d(xBC.transpose(1, 2))[..., :l].transpose(1, 2))  # causal: drop right overhang
        x, B, C = xBC.split([self.d_inner, g * n, g * n], dim=-1)
        dt = F.softplus(dt + self.dt_bias)  # (b, l, h)
        if keep is not None:
            dt = dt * keep[..., None].to(dt.dtype)  # pads: no decay, no write
        A = -torch.exp(self.A_log.float() if kern is not None else self.A_log)  # (h,)
        x = x.reshape(b, l, h, p)
        B = B.reshape(b, l, g, n)
        C = C.reshape(b, l, g, n)
        if kern is not None:
            y = kern.scan(x, dt, A, B, C, chunk_size=self.chunk_size, D=self.D, dt_bias=None, dt_softplus=False)
        else:
            y, _ = ssd_chunked(x, dt, A, B, C, self.chunk_size, D=self.D, return_final_state=False)  # (b, l, h, p)
        y = self.norm(y.reshape(b, l, self.d_inner), z)  # (b, l, d_inner)
        return self.out_proj(y)
