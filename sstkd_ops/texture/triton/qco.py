"""Triton STLNet QCO (1-D counts, 2-D co-occurrence) and the TEM product.

``texstat_qco_triton`` and ``texstat_qco_tem_triton`` have the signatures and outputs of the
compiled ``texstat_qco`` / ``texstat_qco_tem`` (``csrc/texture/texture_stats.cpp``) and the same
per-value rules (``csrc/texture/texture_stats_math.h``): a value's candidate levels are the five
around its nearest level, a level is a code where ``1 - |q_k - s| > 1 - delta``, at most four
codes (two in exact arithmetic).

Sums over pixels into levels (1-D counts, level gradients, d loss / d f) encode a block of
pixels as a dense ``(pixels, lanes)`` tile in registers for one lane tile of at most
``LANES`` levels (more levels: more programs); the 2-D co-occurrence is ``tl.dot(A^T, B)`` of
the tiles of pixel and neighbour, one ``lanes x lanes`` tile of the ``L x L`` matrix per
program. Per-pixel sums over levels (the TEM product, d loss / d s) read only the five
candidate levels of each pixel. Reductions over pixels write per-program partial sums reduced
afterwards in a fixed order: no atomics, bitwise reproducible. Extra memory is
O(G*P + G*L*L*NPROG) for G groups of P pixels.

Non-finite input, as the CUDA kernels and without a host read: a group (TEM: an image) whose
texture intensity holds NaN or Inf is flagged on the device, reaches the kernels as a constant
zero group, and gets NaN in every output and gradient; the other groups are untouched.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...constants import QCO2D_EPS
from ..reference import level_fractions
from .common import (
    DOT_BLOCK,
    dot_warps,
    lane_tiles,
    nan_rows,
    nonfinite_rows,
    nprog_for,
    tile_block,
    zero_rows,
)

CB = 16  # channels per step of the TEM kernels
PIX = 64  # pixels per step of the kernels that read the five candidates of each pixel


@triton.jit
def _nearest(qg_ptr, s, live, q0, delta, L):
    """Nearest level ``kc`` of values ``s`` and ``n``, how many of the five candidate levels
    ``kc - 2 .. kc + 2`` pass the mask (a fifth code is dropped, as in C++/CUDA)."""
    d = (s - q0).to(tl.float64) / tl.where(delta > 0, delta, 1.0).to(tl.float64) + 0.5
    kc = tl.minimum(tl.maximum(tl.floor(d), 0.0), L - 1.0).to(tl.int32)
    n = tl.zeros_like(kc)
    for j in tl.static_range(5):
        k = kc + (j - 2)
        ok = live & (k >= 0) & (k < L)
        qk = tl.load(qg_ptr + k, mask=ok, other=0.0)
        n += (ok & (1.0 - tl.abs(qk - s) > 1.0 - delta)).to(tl.int32)
    return kc, n


@triton.jit
def _candidate(qg_ptr, s, live, kc, n, J, delta, L):
    """Candidate ``J`` in [0, 5) (level ``kc + J - 2``) of values ``s``: (level, is a code, r,
    q_level)."""
    k = kc + (J - 2)
    ok = live & (k >= 0) & (k < L)
    qk = tl.load(qg_ptr + k, mask=ok, other=0.0)
    r = 1.0 - tl.abs(qk - s)
    take = ok & (r > 1.0 - delta) & ((J != 4) | (n < 5))  # never for delta <= 0 (r <= 1)
    return k, take, r, qk


@triton.jit
def _code_tile(qg_ptr, lanes, s, live, q0, delta, L):
    """Dense codes of a block of values ``s`` at levels ``lanes`` (any lane tile): (BLOCK, lanes),
    ``r`` where a level is a code of the value, else 0."""
    kc, n = _nearest(qg_ptr, s, live, q0, delta, L)
    qrow = tl.load(qg_ptr + lanes, mask=lanes < L, other=0.0)
    r = 1.0 - tl.abs(qrow[None, :] - s[:, None])
    take = (tl.abs(lanes[None, :] - kc[:, None]) <= 2) & (lanes[None, :] < L)
    take = take & live[:, None] & (r > 1.0 - delta)
    take = take & ((lanes[None, :] != kc[:, None] + 2) | (n < 5)[:, None])
    return tl.where(take, r, 0.0)


@triton.jit
def _sign(v):
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, 0.0)).to(tl.float64)


@triton.jit
def _lane_hits(k, c, lanes):
    """(BLOCK, lanes) tile holding ``c`` at level ``k`` of every pixel, 0 elsewhere."""
    return tl.where(k[:, None] == lanes[None, :], c[:, None], 0.0)


@triton.jit
def _qco_count_kernel(s_ptr, q_ptr, d_ptr, out_ptr, P, L, nprog, NL, BLOCK: tl.constexpr,
                      TL: tl.constexpr):
    """Partial 1-D counts of lane tile program_id(2): out[g, j, k] = sum over program j's
    pixels of E_k(p), float64."""
    g = tl.program_id(0)
    j = tl.program_id(1)
    lanes = tl.program_id(2) * TL + tl.arange(0, TL)
    qg = q_ptr + g * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + g)
    acc = tl.zeros([TL], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + g * P + offs, mask=m, other=0.0)
        acc += tl.sum(_code_tile(qg, lanes, s, m, q0, delta, L).to(tl.float64), 0)
    tl.store(out_ptr + (g * nprog + j) * NL + lanes, acc)


@triton.jit
def _qco_cooc_kernel(s_ptr, q_ptr, d_ptr, out_ptr, h, w, L, nprog, NT, BLOCK: tl.constexpr,
                     TL: tl.constexpr):
    """Partial co-occurrence with the (+1, +1) neighbour, tile program_id(2) = (row tile, column
    tile) of NT x NT lane tiles: out[g, j, rows, cols] = sum over program j's pairs of
    E(p)[rows]^T E(p + w + 1)[cols]."""
    g = tl.program_id(0)
    j = tl.program_id(1)
    rows = (tl.program_id(2) // NT) * TL + tl.arange(0, TL)
    cols = (tl.program_id(2) % NT) * TL + tl.arange(0, TL)
    NL = NT * TL
    P = h * w
    wp = w - 1
    npairs = (h - 1) * wp
    qg = q_ptr + g * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + g)
    acc = tl.zeros([TL, TL], dtype=s_ptr.dtype.element_ty)
    for t0 in range(j * BLOCK, npairs, nprog * BLOCK):
        t = t0 + tl.arange(0, BLOCK)
        m = t < npairs
        p = (t // wp) * w + t % wp
        sa = tl.load(s_ptr + g * P + p, mask=m, other=0.0)
        sb = tl.load(s_ptr + g * P + p + w + 1, mask=m, other=0.0)
        ea = _code_tile(qg, rows, sa, m, q0, delta, L)
        eb = _code_tile(qg, cols, sb, m, q0, delta, L)
        acc += tl.dot(tl.trans(ea), eb, input_precision="ieee")
    tl.store(out_ptr + ((g * nprog + j) * NL + rows[:, None]) * NL + cols[None, :], acc)


@triton.jit
def _qco_grad_kernel(s_ptr, q_ptr, d_ptr, dc_ptr, ds_ptr, dq_ptr, h, w, L, nprog, NL,
                     COOC: tl.constexpr, BLOCK: tl.constexpr, TL: tl.constexpr):
    """d loss / d s_p through the codes (stored by lane tile 0), and the partial d loss / d q_k
    of lane tile program_id(2) (float64). Reads the five candidate levels of each pixel (and of
    its two diagonal neighbours with COOC), never a (pixels, L) or (L, L) tile.

    ``dc`` = d loss / d counts: (G, L) float64, or (G, L, L) in the dtype of s with COOC.
    """
    g = tl.program_id(0)
    j = tl.program_id(1)
    lt = tl.program_id(2)
    lanes = lt * TL + tl.arange(0, TL)
    P = h * w
    qg = q_ptr + g * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + g)
    acc = tl.zeros([TL], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + g * P + offs, mask=m, other=0.0)
        kc, n = _nearest(qg, s, m, q0, delta, L)
        if COOC:
            y = offs // w
            x = offs % w
            vb = m & (y + 1 < h) & (x + 1 < w)  # pairs (p, p + (1, 1)): dE_i += dc[i, j] E_j
            sb = tl.load(s_ptr + g * P + offs + w + 1, mask=vb, other=0.0)
            va = m & (y > 0) & (x > 0)  # pairs (p - (1, 1), p): dE_j += E_i dc[i, j]
            sa = tl.load(s_ptr + g * P + offs - w - 1, mask=va, other=0.0)
            kcb, nb = _nearest(qg, sb, vb, q0, delta, L)
            kca, na = _nearest(qg, sa, va, q0, delta, L)
        dsum = tl.zeros([BLOCK], dtype=tl.float64)
        for i in range(0, 5):  # loops, not unrolled: 50 unrolled candidates spill KBs
            k, take, r, qk = _candidate(qg, s, m, kc, n, i, delta, L)
            if COOC:
                dcg = dc_ptr + g * L * L
                de = tl.zeros([BLOCK], dtype=tl.float64)
                for jj in range(0, 5):
                    kb, tb, rb, qb = _candidate(qg, sb, vb, kcb, nb, jj, delta, L)
                    dcb = tl.load(dcg + k * L + kb, mask=take & tb, other=0.0)  # dc[k, kb]
                    de += (dcb * rb).to(tl.float64)
                    ka, ta, ra, qa = _candidate(qg, sa, va, kca, na, jj, delta, L)
                    dca = tl.load(dcg + ka * L + k, mask=take & ta, other=0.0)  # dc[ka, k]
                    de += (ra * dca).to(tl.float64)
            else:
                de = tl.load(dc_ptr + g * L + k, mask=take, other=0.0)
            c = tl.where(take, de * _sign(qk - s), 0.0)
            dsum += c
            acc -= tl.sum(_lane_hits(k, c, lanes), 0)
        tl.store(ds_ptr + g * P + offs, dsum.to(ds_ptr.dtype.element_ty), mask=m & (lt == 0))
    tl.store(dq_ptr + (g * nprog + j) * NL + lanes, acc)


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
    bad = nonfinite_rows(sf)
    sf = zero_rows(sf, bad)
    extrema = torch.stack([sf.argmin(1), sf.argmax(1)], 1)  # first extremal pixels
    lo, hi = sf.gather(1, extrema[:, :1]), sf.gather(1, extrema[:, 1:])
    levels = (level_fractions(L, s) * (hi - lo) + lo).contiguous()
    delta = _delta(sf, levels, extrema)
    TL, NT = lane_tiles(L)
    NL, blk = TL * NT, tile_block(TL)
    if not cooc:
        nprog = nprog_for(P, blk)
        part = torch.empty(G, nprog, NL, dtype=torch.float64, device=s.device)
        _qco_count_kernel[(G, nprog, NT)](sf, levels, delta, part, P, L, nprog, NL, BLOCK=blk,
                                          TL=TL)
        acc = part.sum(1)[:, :L]
        total = acc.sum(-1, keepdim=True)  # 0 for a constant group: sta = 0/0 = NaN
    else:
        npairs = (h - 1) * (w - 1)
        acc = torch.zeros(G, L, L, dtype=torch.float64, device=s.device)
        if npairs > 0:
            nprog = nprog_for(npairs, DOT_BLOCK)
            part = torch.empty(G, nprog, NL, NL, dtype=s.dtype, device=s.device)
            warps = 2 if TL <= 16 else dot_warps(TL)  # two code tiles: 4 warps spill at 16
            _qco_cooc_kernel[(G, nprog, NT * NT)](sf, levels, delta, part, h, w, L, nprog, NT,
                                                  BLOCK=DOT_BLOCK, TL=TL, num_warps=warps)
            acc = part.double().sum(1)[:, :L, :L]
        total = acc.sum((-1, -2), keepdim=True) + QCO2D_EPS
    sta = nan_rows((acc / total).to(s.dtype), bad).contiguous()
    counts = nan_rows(acc.to(s.dtype), bad).contiguous()
    return nan_rows(levels, bad).contiguous(), sta, counts, extrema


@torch.library.custom_op("sstkd_ops::texstat_qco_backward_triton", mutates_args=())
def texstat_qco_backward(grad_levels: torch.Tensor, grad_sta: torch.Tensor, s: torch.Tensor,
                         levels: torch.Tensor, counts: torch.Tensor, extrema: torch.Tensor,
                         cooc: bool) -> torch.Tensor:
    """Triton ``texstat_qco_backward``: the gradient w.r.t. ``s``."""
    G, h, w = s.shape
    P, L = h * w, levels.shape[1]
    K = L * L if cooc else L
    sf = s.reshape(G, P).contiguous()
    bad = nonfinite_rows(sf, levels)  # NaN levels: flagged in the forward
    sf, lv = zero_rows(sf, bad), zero_rows(levels, bad).contiguous()
    cn = counts.reshape(G, K).double()
    gs = grad_sta.reshape(G, K).double()
    total = cn.sum(-1, keepdim=True) + (QCO2D_EPS if cooc else 0.0)
    anyg = (gs != 0).any(-1, keepdim=True)
    zero_total = anyg & (total == 0)  # 1-D only (2-D adds eps): sta = 0/0, gradient NaN
    dot = (gs * (cn / total)).sum(-1, keepdim=True)
    dc = torch.where(anyg & ~zero_total, (gs - dot) / total, 0.0)  # d loss / d counts
    dc = zero_rows(dc.to(s.dtype) if cooc else dc, bad)
    TL, NT = lane_tiles(L)
    NL, blk = TL * NT, tile_block(TL)
    nprog = nprog_for(P, blk)
    ds = torch.empty_like(sf)
    part = torch.empty(G, nprog, NL, dtype=torch.float64, device=s.device)
    _qco_grad_kernel[(G, nprog, NT)](sf, lv, _delta(sf, lv, extrema), dc.contiguous(), ds, part,
                                     h, w, L, nprog, NL, COOC=cooc, BLOCK=blk, TL=TL)
    # levels q_k = frac_k (max - min) + min: their gradient goes to the first extremal pixels
    dq = part.sum(1)[:, :L] + grad_levels.double()
    frac = level_fractions(L, s).double()
    dhi = (dq * frac).sum(-1, keepdim=True).to(s.dtype)
    dlo = (dq - dq * frac).sum(-1, keepdim=True).to(s.dtype)
    idx = torch.arange(P, device=s.device)
    ds = ds + torch.where(idx == extrema[:, :1], dlo, 0)
    ds = ds + torch.where(idx == extrema[:, 1:], dhi, 0)
    return nan_rows(ds, zero_total[:, 0] | bad).reshape(G, h, w)


# ---------------------------------------------------------------------------- TEM product


@triton.jit
def _tem_kernel(f_ptr, s_ptr, q_ptr, d_ptr, out_ptr, C, P, L, BLOCK: tl.constexpr,
                CB: tl.constexpr):
    """out[b, c, p] = sum over the codes k of pixel p of f[b, c, k] E_k(p): one pixel block,
    all channels, CB at a time."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    qg = q_ptr + b * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + b)
    s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
    kc, n = _nearest(qg, s, m, q0, delta, L)
    crow = tl.arange(0, CB)
    for c0 in range(0, C, CB):
        cm = c0 + crow < C
        rows = b * C + c0 + crow
        o = tl.zeros([CB, BLOCK], dtype=f_ptr.dtype.element_ty)
        for i in tl.static_range(5):
            k, take, r, qk = _candidate(qg, s, m, kc, n, i, delta, L)
            fk = tl.load(f_ptr + rows[:, None] * L + k[None, :], mask=cm[:, None] & take[None, :],
                         other=0.0)
            o += fk * tl.where(take, r, 0.0)[None, :]
        tl.store(out_ptr + rows[:, None] * P + offs[None, :], o, mask=cm[:, None] & m[None, :])


@triton.jit
def _tem_grad_f_kernel(go_ptr, s_ptr, q_ptr, d_ptr, gf_ptr, C, P, L, BLOCK: tl.constexpr,
                       TL: tl.constexpr, CB: tl.constexpr):
    """grad f[b, c, k] = sum_p grad_out[b, c, p] E_k(p), channels program_id(1) * CB + [0, CB),
    levels of lane tile program_id(2) (float64 sum)."""
    b = tl.program_id(0)
    crow = tl.program_id(1) * CB + tl.arange(0, CB)
    cm = crow < C
    lanes = tl.program_id(2) * TL + tl.arange(0, TL)
    qg = q_ptr + b * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + b)
    acc = tl.zeros([CB, TL], dtype=tl.float64)
    for p0 in range(0, P, BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
        go = tl.load(go_ptr + (b * C + crow[:, None]) * P + offs[None, :],
                     mask=cm[:, None] & m[None, :], other=0.0)
        e = _code_tile(qg, lanes, s, m, q0, delta, L)
        acc += tl.dot(go, e, input_precision="ieee").to(tl.float64)
    tl.store(gf_ptr + (b * C + crow[:, None]) * L + lanes[None, :],
             acc.to(gf_ptr.dtype.element_ty), mask=cm[:, None] & (lanes < L)[None, :])


@triton.jit
def _tem_grad_s_kernel(go_ptr, f_ptr, s_ptr, q_ptr, d_ptr, gs_ptr, dq_ptr, C, P, L, nprog, NL,
                       BLOCK: tl.constexpr, TL: tl.constexpr, CB: tl.constexpr):
    """grad s_p = sum over the codes k of p of sign(q_k - s_p) (f^T grad_out)[k, p] (stored by
    lane tile 0); partial grad q of lane tile program_id(2)."""
    b = tl.program_id(0)
    j = tl.program_id(1)
    lt = tl.program_id(2)
    lanes = lt * TL + tl.arange(0, TL)
    qg = q_ptr + b * L
    q0 = tl.load(qg)
    delta = tl.load(d_ptr + b)
    crow = tl.arange(0, CB)
    acc = tl.zeros([TL], dtype=tl.float64)
    for p0 in range(j * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
        kc, n = _nearest(qg, s, m, q0, delta, L)
        dsum = tl.zeros([BLOCK], dtype=tl.float64)
        for i in range(0, 5):
            k, take, r, qk = _candidate(qg, s, m, kc, n, i, delta, L)
            gk = tl.zeros([BLOCK], dtype=s_ptr.dtype.element_ty)  # (f^T grad_out)[k, p]
            for c0 in range(0, C, CB):
                cm = c0 + crow < C
                rows = b * C + c0 + crow
                go = tl.load(go_ptr + rows[None, :] * P + offs[:, None],
                             mask=take[:, None] & cm[None, :], other=0.0)
                fk = tl.load(f_ptr + rows[None, :] * L + k[:, None],
                             mask=take[:, None] & cm[None, :], other=0.0)
                gk += tl.sum(go * fk, 1)
            c = tl.where(take, gk.to(tl.float64) * _sign(qk - s), 0.0)
            dsum += c
            acc -= tl.sum(_lane_hits(k, c, lanes), 0)
        tl.store(gs_ptr + b * P + offs, dsum.to(gs_ptr.dtype.element_ty), mask=m & (lt == 0))
    tl.store(dq_ptr + (b * nprog + j) * NL + lanes, acc)


def _tem_inputs(f, s, levels, delta):
    """Contiguous inputs in the dtype of ``f``, images with non-finite ``s``, ``levels`` or
    ``delta`` zeroed (they index levels), and the ``(B,)`` flag of those images."""
    s, levels, delta = (t.to(f.dtype) for t in (s, levels, delta))
    bad = nonfinite_rows(s, levels, delta)
    return (f.contiguous(), *(zero_rows(t, bad).contiguous() for t in (s, levels, delta)), bad)


@torch.library.custom_op("sstkd_ops::texstat_qco_tem_triton", mutates_args=())
def texstat_qco_tem(f: torch.Tensor, s: torch.Tensor, levels: torch.Tensor,
                    delta: torch.Tensor) -> torch.Tensor:
    """Triton ``texstat_qco_tem``: ``f (B, C, L)``, ``s (B, P)`` -> ``(B, C, P)``."""
    f, s, levels, delta, bad = _tem_inputs(f, s, levels, delta)
    B, C, L = f.shape
    P = s.shape[1]
    out = torch.empty(B, C, P, dtype=f.dtype, device=f.device)
    _tem_kernel[(B, triton.cdiv(P, PIX))](f, s, levels, delta, out, C, P, L, BLOCK=PIX, CB=CB)
    return nan_rows(out, bad)


@torch.library.custom_op("sstkd_ops::texstat_qco_tem_backward_triton", mutates_args=())
def texstat_qco_tem_backward(grad_out: torch.Tensor, f: torch.Tensor, s: torch.Tensor,
                             levels: torch.Tensor, delta: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton ``texstat_qco_tem_backward``: gradients w.r.t. ``f``, ``s`` and ``levels``."""
    f, s, levels, delta, bad = _tem_inputs(f, s, levels, delta)
    go = grad_out.to(f.dtype).contiguous()
    B, C, L = f.shape
    P = s.shape[1]
    TL, NT = lane_tiles(L)
    NL, blk = TL * NT, tile_block(TL)
    grad_f = torch.empty_like(f)
    _tem_grad_f_kernel[(B, triton.cdiv(C, CB), NT)](go, s, levels, delta, grad_f, C, P, L,
                                                    BLOCK=DOT_BLOCK, TL=TL, CB=CB,
                                                    num_warps=dot_warps(TL))
    nprog = nprog_for(P, blk)
    grad_s = torch.empty_like(s)
    part = torch.empty(B, nprog, NL, dtype=torch.float64, device=f.device)
    _tem_grad_s_kernel[(B, nprog, NT)](go, f, s, levels, delta, grad_s, part, C, P, L, nprog, NL,
                                       BLOCK=blk, TL=TL, CB=CB, num_warps=8)
    grad_levels = part.sum(1)[:, :L].to(f.dtype)
    return tuple(nan_rows(g, bad).contiguous() for g in (grad_f, grad_s, grad_levels))

