"""Triton STLNet QCO (1-D counts, 2-D co-occurrence) and the TEM product.

``texstat_qco_triton`` and ``texstat_qco_tem_triton`` have the signatures and outputs of the
compiled ``texstat_qco`` / ``texstat_qco_tem`` (``csrc/texture_stats.cpp``) and the same
per-value rules (``csrc/texture_stats_math.h``): a value's candidate levels are the five
around its nearest level, a level is a code where ``1 - |q_k - s| > 1 - delta``, at most four
codes (two in exact arithmetic).

A block of pixels is encoded as a dense ``(pixels, levels)`` tile in registers, never in memory:
1-D counts are column sums of it, the 2-D co-occurrence is ``tl.dot(A^T, B)`` of the tiles of
pixel and neighbour, and the TEM product is ``f @ E^T``. Reductions over pixels write per-program
partial sums reduced afterwards in a fixed order: no atomics, bitwise reproducible. Extra memory
is O(G*P + G*N*N*NPROG) for G groups of P pixels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.texture_stats import QCO2D_EPS, level_fractions
from ..texture_stats_ops import wire
from ._common import check_finite, np2, nprog_for, row_tile, tile_block, tile_warps

CB = 32  # channels per tl.dot tile of the TEM kernels


@triton.jit
def _code_tile(qg_ptr, lanes, s, live, q0, delta, L):
    """STLNet codes of a block of values ``s`` at levels ``lanes``: (take, r), (BLOCK, lanes).

    ``qg_ptr``: the group's L levels; ``lanes``: any range of level indices (the full
    arange(NP), or a sub-range for one tile of an N x N product); ``live`` (BLOCK,) pixel mask.
    """
    d = (s - q0).to(tl.float64) / tl.where(delta > 0, delta, 1.0).to(tl.float64) + 0.5
    kc = tl.minimum(tl.maximum(tl.floor(d), 0.0), L - 1.0).to(tl.int32)  # nearest level
    qrow = tl.load(qg_ptr + lanes, mask=lanes < L, other=0.0)
    r = 1.0 - tl.abs(qrow[None, :] - s[:, None])
    take = (tl.abs(lanes[None, :] - kc[:, None]) <= 2) & (lanes[None, :] < L)
    take = take & live[:, None]
    take = take & (r > 1.0 - delta)  # never true for delta <= 0 (r <= 1)
    # at most four codes: a fifth (all five candidates pass) is dropped, as in C++/CUDA
    n = tl.zeros_like(kc)
    for j in tl.static_range(5):
        k = kc + (j - 2)
        ok = live & (k >= 0) & (k < L)
        qk = tl.load(qg_ptr + k, mask=ok, other=0.0)
        n += (ok & (1.0 - tl.abs(qk - s) > 1.0 - delta)).to(tl.int32)
    take = take & ((lanes[None, :] != kc[:, None] + 2) | (n < 5)[:, None])
    return take, r


@triton.jit
def _sign(v):
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, 0.0)).to(tl.float64)


@triton.jit
def _group_levels(q_ptr, d_ptr, g, L, NP: tl.constexpr):
    """Levels of group g on NP lanes: (lanes, lane mask, levels (NP,), q_0, mask width)."""
    lanes = tl.arange(0, NP)
    lm = lanes < L
    qrow = tl.load(q_ptr + g * L + lanes, mask=lm, other=0.0)
    return lanes, lm, qrow, tl.load(q_ptr + g * L), tl.load(d_ptr + g)


@triton.jit
def _pixel_codes(s_ptr, g, offs, P, qg_ptr, lanes, q0, delta, L):
    """Codes of pixels ``offs`` of group g: (pixel mask, s, take, r)."""
    m = offs < P
    s = tl.load(s_ptr + g * P + offs, mask=m, other=0.0)
    take, r = _code_tile(qg_ptr, lanes, s, m, q0, delta, L)
    return m, s, take, r


@triton.jit
def _qco_count_kernel(s_ptr, q_ptr, d_ptr, out_ptr, P, L, nprog, BLOCK: tl.constexpr,
                      NP: tl.constexpr):
    """Partial 1-D counts: out[g, j, k] = sum over program j's pixels of E_k(p), float64."""
    g = tl.program_id(0)
    j = tl.program_id(1)
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, g, L, NP)
    acc = tl.zeros([NP], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m, s, take, r = _pixel_codes(s_ptr, g, offs, P, q_ptr + g * L, lanes, q0, delta, L)
        acc += tl.sum(tl.where(take, r.to(tl.float64), 0.0), 0)
    tl.store(out_ptr + (g * nprog + j) * NP + lanes, acc)


@triton.jit
def _qco_cooc_kernel(s_ptr, q_ptr, d_ptr, out_ptr, h, w, L, nprog, BLOCK: tl.constexpr,
                     NP: tl.constexpr, TI: tl.constexpr):
    """Partial co-occurrence with the (+1, +1) neighbour, rows program_id(2) * TI + [0, TI):
    out[g, j, rows] = sum over program j's pairs of E(p)[rows]^T E(p + w + 1)."""
    g = tl.program_id(0)
    j = tl.program_id(1)
    P = h * w
    wp = w - 1
    npairs = (h - 1) * wp
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, g, L, NP)
    rows = tl.program_id(2) * TI + tl.arange(0, TI)
    acc = tl.zeros([TI, NP], dtype=s_ptr.dtype.element_ty)
    for t0 in range(j * BLOCK, npairs, nprog * BLOCK):
        t = t0 + tl.arange(0, BLOCK)
        m = t < npairs
        p = (t // wp) * w + t % wp
        sa = tl.load(s_ptr + g * P + p, mask=m, other=0.0)
        sb = tl.load(s_ptr + g * P + p + w + 1, mask=m, other=0.0)
        ta, ra = _code_tile(q_ptr + g * L, rows, sa, m, q0, delta, L)
        tb, rb = _code_tile(q_ptr + g * L, lanes, sb, m, q0, delta, L)
        acc += tl.dot(tl.trans(tl.where(ta, ra, 0.0)), tl.where(tb, rb, 0.0),
                      input_precision="ieee")
    tl.store(out_ptr + ((g * nprog + j) * NP + rows[:, None]) * NP + lanes[None, :], acc)


@triton.jit
def _qco_grad_kernel(s_ptr, q_ptr, d_ptr, dc_ptr, ds_ptr, dq_ptr, h, w, L, nprog,
                     COOC: tl.constexpr, BLOCK: tl.constexpr, NP: tl.constexpr,
                     TK: tl.constexpr):
    """d loss / d s_p through the codes, and partial d loss / d q_k (float64).

    ``dc`` = d loss / d counts: (G, L) float64, or (G, L, L) in the dtype of s with COOC.
    """
    g = tl.program_id(0)
    j = tl.program_id(1)
    P = h * w
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, g, L, NP)
    if not COOC:
        dcv = tl.load(dc_ptr + g * L + lanes, mask=lm, other=0.0)
    acc = tl.zeros([NP], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m, s, take, r = _pixel_codes(s_ptr, g, offs, P, q_ptr + g * L, lanes, q0, delta, L)
        if COOC:
            y = offs // w
            x = offs % w
            vb = m & (y + 1 < h) & (x + 1 < w)  # pairs (p, p + (1, 1)): dE_i += dc[i, j] E_j
            sb = tl.load(s_ptr + g * P + offs + w + 1, mask=vb, other=0.0)
            va = m & (y > 0) & (x > 0)  # pairs (p - (1, 1), p): dE_j += E_i dc[i, j]
            sa = tl.load(s_ptr + g * P + offs - w - 1, mask=va, other=0.0)
            dcg = dc_ptr + g * L * L
            de = tl.zeros([BLOCK, NP], dtype=s_ptr.dtype.element_ty)
            for k0 in range(0, NP, TK):  # TK neighbour levels at a time: no N x N tile
                ks = k0 + tl.arange(0, TK)
                km = ks < L
                tb, rb = _code_tile(q_ptr + g * L, ks, sb, vb, q0, delta, L)
                dcb = tl.load(dcg + lanes[:, None] * L + ks[None, :],
                              mask=lm[:, None] & km[None, :], other=0.0)  # dc[i, k]
                de += tl.dot(tl.where(tb, rb, 0.0), tl.trans(dcb), input_precision="ieee")
                ta, ra = _code_tile(q_ptr + g * L, ks, sa, va, q0, delta, L)
                dca = tl.load(dcg + ks[:, None] * L + lanes[None, :],
                              mask=km[:, None] & lm[None, :], other=0.0)  # dc[k, j]
                de += tl.dot(tl.where(ta, ra, 0.0), dca, input_precision="ieee")
            de = de.to(tl.float64)
        else:
            de = dcv[None, :]
        contrib = tl.where(take, de * _sign(qrow[None, :] - s[:, None]), 0.0)
        tl.store(ds_ptr + g * P + offs, tl.sum(contrib, 1).to(ds_ptr.dtype.element_ty), mask=m)
        acc -= tl.sum(contrib, 0)
    tl.store(dq_ptr + (g * nprog + j) * NP + lanes, acc)


def _delta(sf: torch.Tensor, levels: torch.Tensor, extrema: torch.Tensor) -> torch.Tensor:
    """Mask width per group: q_1 - q_0, or max - min for one level."""
    if levels.shape[1] > 1:
        return (levels[:, 1] - levels[:, 0]).contiguous()
    return (sf.gather(1, extrema[:, 1:]) - sf.gather(1, extrema[:, :1])).reshape(-1).contiguous()


@torch.library.custom_op("sstkd_ops::texstat_qco_triton", mutates_args=())
def texstat_qco(s: torch.Tensor, num_levels: int, cooc: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                       torch.Tensor, torch.Tensor]:
    """Triton ``texstat_qco``: ``(levels, sta, counts, extrema)`` per group of ``s (G, h, w)``."""
    G, h, w = s.shape
    P, L = h * w, num_levels
    if L < 1 or P == 0:
        raise ValueError(f"texstat_qco_triton: num_levels >= 1 and non-empty groups expected, "
                         f"got num_levels={L}, s {tuple(s.shape)}")
    sf = s.reshape(G, P).contiguous()
    check_finite(sf, "texstat_qco_triton")
    extrema = torch.stack([sf.argmin(1), sf.argmax(1)], 1)  # first extremal pixels
    lo, hi = sf.gather(1, extrema[:, :1]), sf.gather(1, extrema[:, 1:])
    levels = (level_fractions(L, s) * (hi - lo) + lo).contiguous()
    delta = _delta(sf, levels, extrema)
    NP = np2(L)
    blk = tile_block(NP)
    if not cooc:
        nprog = nprog_for(P, blk)
        part = torch.empty(G, nprog, NP, dtype=torch.float64, device=s.device)
        _qco_count_kernel[(G, nprog)](sf, levels, delta, part, P, L, nprog, BLOCK=blk, NP=NP,
                                      num_warps=tile_warps(NP))
        acc = part.sum(1)[:, :L]
        total = acc.sum(-1, keepdim=True)  # 0 for a constant group: sta = 0/0 = NaN
    else:
        npairs = (h - 1) * (w - 1)
        acc = torch.zeros(G, L, L, dtype=torch.float64, device=s.device)
        if npairs > 0:
            nprog = nprog_for(npairs, blk)
            part = torch.empty(G, nprog, NP, NP, dtype=s.dtype, device=s.device)
            ti = row_tile(NP)
            _qco_cooc_kernel[(G, nprog, NP // ti)](sf, levels, delta, part, h, w, L, nprog,
                                                   BLOCK=blk, NP=NP, TI=ti,
                                                   num_warps=tile_warps(NP))
            acc = part.double().sum(1)[:, :L, :L]
        total = acc.sum((-1, -2), keepdim=True) + QCO2D_EPS
    sta = (acc / total).to(s.dtype).contiguous()
    return levels, sta, acc.to(s.dtype).contiguous().clone(), extrema


@torch.library.custom_op("sstkd_ops::texstat_qco_backward_triton", mutates_args=())
def texstat_qco_backward(grad_levels: torch.Tensor, grad_sta: torch.Tensor, s: torch.Tensor,
                         levels: torch.Tensor, counts: torch.Tensor, extrema: torch.Tensor,
                         cooc: bool) -> torch.Tensor:
    """Triton ``texstat_qco_backward``: the gradient w.r.t. ``s``."""
    G, h, w = s.shape
    P, L = h * w, levels.shape[1]
    K = L * L if cooc else L
    sf = s.reshape(G, P).contiguous()
    lv = levels.contiguous()
    cn = counts.reshape(G, K).double()
    gs = grad_sta.reshape(G, K).double()
    total = cn.sum(-1, keepdim=True) + (QCO2D_EPS if cooc else 0.0)
    anyg = (gs != 0).any(-1, keepdim=True)
    nan_rows = anyg & (total == 0)  # 1-D only (2-D adds eps): sta = 0/0, gradient NaN
    dot = (gs * (cn / total)).sum(-1, keepdim=True)
    dc = torch.where(anyg & ~nan_rows, (gs - dot) / total, 0.0)  # d loss / d counts
    dc = dc.to(s.dtype) if cooc else dc
    NP = np2(L)
    blk = tile_block(NP)
    nprog = nprog_for(P, blk)
    ds = torch.empty_like(sf)
    part = torch.empty(G, nprog, NP, dtype=torch.float64, device=s.device)
    _qco_grad_kernel[(G, nprog)](sf, lv, _delta(sf, lv, extrema), dc.contiguous(), ds, part,
                                 h, w, L, nprog, COOC=cooc, BLOCK=blk, NP=NP,
                                 TK=row_tile(NP), num_warps=tile_warps(NP))
    # levels q_k = frac_k (max - min) + min: their gradient goes to the first extremal pixels
    dq = part.sum(1)[:, :L] + grad_levels.double()
    frac = level_fractions(L, s).double()
    dhi = (dq * frac).sum(-1, keepdim=True).to(s.dtype)
    dlo = (dq - dq * frac).sum(-1, keepdim=True).to(s.dtype)
    idx = torch.arange(P, device=s.device)
    ds = ds + torch.where(idx == extrema[:, :1], dlo, 0)
    ds = ds + torch.where(idx == extrema[:, 1:], dhi, 0)
    ds = torch.where(nan_rows, torch.full_like(ds, float("nan")), ds)
    return ds.reshape(G, h, w)


wire("qco", texstat_qco, texstat_qco_backward)

# ---------------------------------------------------------------------------- TEM product


@triton.jit
def _tem_kernel(f_ptr, s_ptr, q_ptr, d_ptr, out_ptr, C, P, L, BLOCK: tl.constexpr,
                NP: tl.constexpr, CB: tl.constexpr):
    """out[b, c, p] = sum_k f[b, c, k] E_k(p): one pixel block, all channels."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, b, L, NP)
    m, s, take, r = _pixel_codes(s_ptr, b, offs, P, q_ptr + b * L, lanes, q0, delta, L)
    e = tl.where(take, r, 0.0)
    crow = tl.arange(0, CB)
    for c0 in range(0, C, CB):
        cm = c0 + crow < C
        rows = b * C + c0 + crow
        ft = tl.load(f_ptr + rows[:, None] * L + lanes[None, :], mask=cm[:, None] & lm[None, :],
                     other=0.0)
        o = tl.dot(ft, tl.trans(e), input_precision="ieee")
        tl.store(out_ptr + rows[:, None] * P + offs[None, :], o, mask=cm[:, None] & m[None, :])


@triton.jit
def _tem_grad_f_kernel(go_ptr, s_ptr, q_ptr, d_ptr, gf_ptr, C, P, L, BLOCK: tl.constexpr,
                       NP: tl.constexpr, CB: tl.constexpr):
    """grad f[b, c, k] = sum_p grad_out[b, c, p] E_k(p) for a block of channels (float64 sum)."""
    b = tl.program_id(0)
    crow = tl.program_id(1) * CB + tl.arange(0, CB)
    cm = crow < C
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, b, L, NP)
    acc = tl.zeros([CB, NP], dtype=tl.float64)
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m, s, take, r = _pixel_codes(s_ptr, b, offs, P, q_ptr + b * L, lanes, q0, delta, L)
        go = tl.load(go_ptr + (b * C + crow[:, None]) * P + offs[None, :],
                     mask=cm[:, None] & m[None, :], other=0.0)
        acc += tl.dot(go, tl.where(take, r, 0.0), input_precision="ieee").to(tl.float64)
    tl.store(gf_ptr + (b * C + crow[:, None]) * L + lanes[None, :],
             acc.to(gf_ptr.dtype.element_ty), mask=cm[:, None] & lm[None, :])


@triton.jit
def _tem_grad_s_kernel(go_ptr, f_ptr, s_ptr, q_ptr, d_ptr, gs_ptr, dq_ptr, C, P, L, nprog,
                       BLOCK: tl.constexpr, NP: tl.constexpr, CB: tl.constexpr):
    """grad s_p = sum_k sign(q_k - s_p) (f^T grad_out)[k, p] over codes; partial grad q."""
    b = tl.program_id(0)
    j = tl.program_id(1)
    lanes, lm, qrow, q0, delta = _group_levels(q_ptr, d_ptr, b, L, NP)
    crow = tl.arange(0, CB)
    acc = tl.zeros([NP], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m, s, take, r = _pixel_codes(s_ptr, b, offs, P, q_ptr + b * L, lanes, q0, delta, L)
        gsum = tl.zeros([BLOCK, NP], dtype=s_ptr.dtype.element_ty)
        for c0 in range(0, C, CB):
            cm = c0 + crow < C
            rows = b * C + c0 + crow
            go = tl.load(go_ptr + rows[None, :] * P + offs[:, None], mask=m[:, None] & cm[None, :],
                         other=0.0)
            ft = tl.load(f_ptr + rows[:, None] * L + lanes[None, :],
                         mask=cm[:, None] & lm[None, :], other=0.0)
            gsum += tl.dot(go, ft, input_precision="ieee")
        contrib = tl.where(take, gsum.to(tl.float64) * _sign(qrow[None, :] - s[:, None]), 0.0)
        tl.store(gs_ptr + b * P + offs, tl.sum(contrib, 1).to(gs_ptr.dtype.element_ty), mask=m)
        acc -= tl.sum(contrib, 0)
    tl.store(dq_ptr + (b * nprog + j) * NP + lanes, acc)


def _tem_inputs(f, s, levels, delta, op):
    f = f.contiguous()
    s = s.to(f.dtype).contiguous()
    check_finite(s, op)
    return f, s, levels.to(f.dtype).contiguous(), delta.to(f.dtype).contiguous()


@torch.library.custom_op("sstkd_ops::texstat_qco_tem_triton", mutates_args=())
def texstat_qco_tem(f: torch.Tensor, s: torch.Tensor, levels: torch.Tensor,
                    delta: torch.Tensor) -> torch.Tensor:
    """Triton ``texstat_qco_tem``: ``f (B, C, L)``, ``s (B, P)`` -> ``(B, C, P)``."""
    f, s, levels, delta = _tem_inputs(f, s, levels, delta, "texstat_qco_tem_triton")
    B, C, L = f.shape
    P = s.shape[1]
    NP = np2(L)
    blk = tile_block(NP)
    out = torch.empty(B, C, P, dtype=f.dtype, device=f.device)
    _tem_kernel[(B, triton.cdiv(P, blk))](f, s, levels, delta, out, C, P, L, BLOCK=blk, NP=NP,
                                          CB=CB, num_warps=tile_warps(NP))
    return out


@torch.library.custom_op("sstkd_ops::texstat_qco_tem_backward_triton", mutates_args=())
def texstat_qco_tem_backward(grad_out: torch.Tensor, f: torch.Tensor, s: torch.Tensor,
                             levels: torch.Tensor, delta: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton ``texstat_qco_tem_backward``: gradients w.r.t. ``f``, ``s`` and ``levels``."""
    f, s, levels, delta = _tem_inputs(f, s, levels, delta, "texstat_qco_tem_backward_triton")
    go = grad_out.to(f.dtype).contiguous()
    B, C, L = f.shape
    P = s.shape[1]
    NP = np2(L)
    blk = tile_block(NP)
    grad_f = torch.empty_like(f)
    _tem_grad_f_kernel[(B, triton.cdiv(C, CB))](go, s, levels, delta, grad_f, C, P, L,
                                                BLOCK=blk, NP=NP, CB=CB, num_warps=tile_warps(NP))
    nprog = nprog_for(P, blk)
    grad_s = torch.empty_like(s)
    part = torch.empty(B, nprog, NP, dtype=torch.float64, device=f.device)
    _tem_grad_s_kernel[(B, nprog)](go, f, s, levels, delta, grad_s, part, C, P, L, nprog,
                                   BLOCK=blk, NP=NP, CB=CB, num_warps=tile_warps(NP))
    return grad_f, grad_s, part.sum(1)[:, :L].to(f.dtype).contiguous()


wire("qco_tem", texstat_qco_tem, texstat_qco_tem_backward)
