"""Triton texture intensity: cosine of every pixel vector with its cell's mean vector.

``texstat_cos_sim_triton(x, cells)`` has the signature and outputs of the compiled
``texstat_cos_sim`` (``csrc/texture/texture_stats.cpp``): ``s``, pixel norms, unit cell means and
cell-mean norms. Forward: one reduction pass over x (per-cell channel sums, float64) and one
per-pixel pass; backward: the same two passes with the incoming gradient. No atomics.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...constants import NORM_EPS
from .common import BLOCK, div_rn, sqrt_rn


@triton.jit
def _cell_of(offs, W, h, w, S):
    """Row-major cell index of flat pixel indices ``offs`` (cells of h x w pixels)."""
    return ((offs // W) // h) * S + (offs % W) // w


@triton.jit
def _cell_sum_kernel(x_ptr, wt_ptr, out_ptr, C, W, h, w, S, HAS_W: tl.constexpr,
                     BLOCK: tl.constexpr):
    """out[r, g] = sum over cell g of x[r, p] (* wt[r // C, p]), float64, r = b * C + c."""
    r = tl.program_id(0)
    g = tl.program_id(1)
    b = r // C
    P = h * w * S * S
    y0 = (g // S) * h
    x0 = (g % S) * w
    acc = tl.zeros([BLOCK], dtype=tl.float64)
    for t0 in range(0, h * w, BLOCK):
        t = t0 + tl.arange(0, BLOCK)
        m = t < h * w
        p = (y0 + t // w) * W + x0 + t % w
        v = tl.load(x_ptr + r * P + p, mask=m, other=0.0).to(tl.float64)
        if HAS_W:
            v = v * tl.load(wt_ptr + b * P + p, mask=m, other=0.0).to(tl.float64)
        acc += v
    tl.store(out_ptr + r * S * S + g, tl.sum(acc, 0))


@triton.jit
def _pixel_dot_kernel(x_ptr, gu_ptr, s_ptr, pn_ptr, C, W, h, w, S, eps, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    P = h * w * S * S
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    gbase = (b * S * S + _cell_of(offs, W, h, w, S)) * C
    dot = tl.zeros([BLOCK], dtype=s_ptr.dtype.element_ty)
    nrm = tl.zeros([BLOCK], dtype=s_ptr.dtype.element_ty)
    for c in range(0, C):
        v = tl.load(x_ptr + (b * C + c) * P + offs, mask=m, other=0.0)
        dot += v * tl.load(gu_ptr + gbase + c, mask=m, other=0.0)
        nrm += v * v
    nv = sqrt_rn(nrm)  # s decides every code downstream: correctly rounded, as the reference
    tl.store(pn_ptr + b * P + offs, nv, mask=m)
    tl.store(s_ptr + b * P + offs, div_rn(dot, tl.maximum(nv, eps)), mask=m)


@triton.jit
def _grad_x_kernel(x_ptr, a_ptr, bc_ptr, gu_ptr, dg_ptr, gx_ptr, C, W, h, w, S,
                   BLOCK: tl.constexpr):
    r = tl.program_id(0)
    b = r // C
    c = r % C
    P = h * w * S * S
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    gi = (b * S * S + _cell_of(offs, W, h, w, S)) * C + c
    v = tl.load(x_ptr + r * P + offs, mask=m, other=0.0)
    a = tl.load(a_ptr + b * P + offs, mask=m, other=0.0)
    bc = tl.load(bc_ptr + b * P + offs, mask=m, other=0.0)
    gu = tl.load(gu_ptr + gi, mask=m, other=0.0)
    dg = tl.load(dg_ptr + gi, mask=m, other=0.0)
    tl.store(gx_ptr + r * P + offs, a * gu - bc * v + dg, mask=m)


def _cells(x: torch.Tensor, cells: int, op: str) -> tuple[int, int, int, int, int, int]:
    B, C, H, W = x.shape
    if cells < 1 or H % cells or W % cells:
        raise ValueError(f"{op}: H, W must be positive multiples of cells, got {tuple(x.shape)} "
                         f"and cells={cells}")
    return B, C, H, W, H // cells, W // cells


@torch.library.custom_op("sstkd_ops::texstat_cos_sim_triton", mutates_args=())
def texstat_cos_sim(x: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor, torch.Tensor]:
    """Triton ``texstat_cos_sim``: ``(s, pixel norms, unit cell means, cell-mean norms)``."""
    B, C, H, W, h, w = _cells(x, cells, "texstat_cos_sim_triton")
    x = x.contiguous()
    S, G, P = cells, cells * cells, H * W
    sums = torch.empty(B * C, G, dtype=torch.float64, device=x.device)
    _cell_sum_kernel[(B * C, G)](x, x, sums, C, W, h, w, S, HAS_W=False, BLOCK=BLOCK)
    mean = sums.view(B, C, G).transpose(1, 2) / (h * w)  # (B, G, C)
    gnorm = mean.norm(dim=2)
    gunit = (mean / gnorm.clamp_min(NORM_EPS).unsqueeze(2)).to(x.dtype).contiguous()
    s = torch.empty(B, H, W, dtype=x.dtype, device=x.device)
    pnorm = torch.empty_like(s)
    _pixel_dot_kernel[(B, triton.cdiv(P, BLOCK))](x, gunit, s, pnorm, C, W, h, w, S, NORM_EPS,
                                                  BLOCK=BLOCK)
    return s, pnorm, gunit, gnorm.to(x.dtype)


@torch.library.custom_op("sstkd_ops::texstat_cos_sim_backward_triton", mutates_args=())
def texstat_cos_sim_backward(grad_s: torch.Tensor, x: torch.Tensor, s: torch.Tensor,
                             pnorm: torch.Tensor, gunit: torch.Tensor, gnorm: torch.Tensor,
                             cells: int) -> torch.Tensor:
    """Triton ``texstat_cos_sim_backward``: the gradient w.r.t. ``x``."""
    B, C, H, W, h, w = _cells(x, cells, "texstat_cos_sim_backward_triton")
    x = x.contiguous()
    S, G, P = cells, cells * cells, H * W
    ds, sv, pn = grad_s.reshape(B, P).to(x.dtype), s.reshape(B, P), pnorm.reshape(B, P)
    n = pn.clamp_min(NORM_EPS)
    a = (ds / n).contiguous()  # ds / max(|x|, eps)
    bc = torch.where(pn >= NORM_EPS, ds * sv / (n * n), torch.zeros_like(ds)).contiguous()
    dgu = torch.empty(B * C, G, dtype=torch.float64, device=x.device)
    _cell_sum_kernel[(B * C, G)](x, a, dgu, C, W, h, w, S, HAS_W=True, BLOCK=BLOCK)
    dgu = dgu.view(B, C, G).transpose(1, 2)  # (B, G, C): d loss / d unit mean
    gu, gn = gunit.double(), gnorm.double().unsqueeze(2)
    dg = torch.where(gn >= NORM_EPS, (dgu - gu * (gu * dgu).sum(2, keepdim=True)) / gn,
                     dgu / NORM_EPS) / (h * w)
    gx = torch.empty_like(x)
    _grad_x_kernel[(B * C, triton.cdiv(P, BLOCK))](x, a, bc, gunit.contiguous(),
                                                   dg.to(x.dtype).contiguous(), gx, C, W, h,
                                                   w, S, BLOCK=BLOCK)
    return gx

