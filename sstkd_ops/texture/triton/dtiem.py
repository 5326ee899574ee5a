"""Triton DTIEM (``texture_equalize(..., backend='triton')``): ``texstat_dtiem_triton``.

Same signature and outputs as the compiled ``texstat_dtiem`` (``csrc/texture/texture_stats.cpp``).
Every pass is a per-pixel kernel; reductions over pixels use at most ``NPROG`` persistent
programs per image (a number set by the image size) that write partial sums (one-hot
accumulation of the at most two codes of a pixel over one lane tile of at most ``LANES``
levels, ``tl.dot`` for one lanes x lanes tile of the N x N co-occurrence; more levels, more
programs), reduced afterwards in a fixed order: no atomics, bitwise reproducible. Extra memory
is O(B*H*W + B*N*N*NPROG). Small (B, N)-sized steps (denoising, CDF, level updates) run as
torch ops.

Importance weights (optional, as the compiled kernels): ``weights`` ``(B, H, W)`` weight each
pixel's codes in the histogram and each pair's first pixel in the co-occurrence
(``HAS_W`` variants of the kernels); an image whose weights sum to zero is counted with
uniform weights; the weight sums are torch reductions. Without weights the unweighted kernels
run unchanged.

Non-finite input, as the CUDA kernels and without a host read: an image whose texture
intensity holds NaN or Inf is flagged on the device, reaches the kernels as a constant zero
image, and gets NaN in every output and in its gradient; the other images are untouched.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import denoise_histogram, stlnet_levels
from .common import (
    BLOCK,
    DOT_BLOCK,
    div_rn,
    dot_warps,
    lane_tiles,
    nan_rows,
    nonfinite_rows,
    nprog_for,
    tile_block,
    zero_rows,
)


@triton.jit
def _last_le(lv_ptr, s, N, steps):
    """Index of the last level <= s (-1 if none), binary search over sorted levels."""
    lo = tl.zeros(s.shape, dtype=tl.int32)
    hi = lo + N
    for _ in range(0, steps):  # a loop: one compiled kernel for every level count
        active = lo < hi
        mid = (lo + hi) // 2
        val = tl.load(lv_ptr + tl.minimum(mid, N - 1), mask=active, other=0.0)
        right = active & (val <= s)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & (val > s), mid, hi)
    return lo - 1


@triton.jit
def _hat(lv_ptr, s, j, N):
    """Hat code of ``s`` given ``j``, the index of its last level <= s (:func:`_last_le`):
    weight 1 - w on level k, w on k + 1; inside: w depends on s."""
    inside = (j >= 0) & (j <= N - 2)
    k = tl.minimum(tl.maximum(j, 0), N - 2)
    l0 = tl.load(lv_ptr + k)
    l1 = tl.load(lv_ptr + k + 1)
    den = tl.where(inside, l1 - l0, 1.0)
    w = tl.where(inside, div_rn(s - l0, den), tl.where(j < 0, 0.0, 1.0))
    return k, w, inside, den


@triton.jit
def _lloyd_partial_kernel(s_ptr, lv_ptr, first_ptr, sum_ptr, cnt_ptr, P, N, NL, nprog,
                          steps, BLOCK: tl.constexpr, TL: tl.constexpr):
    """Partial sums and counts of the pixels nearest to each level of lane tile
    program_id(2)."""
    b = tl.program_id(0)
    g = tl.program_id(1)
    lv = lv_ptr + b * N
    lanes = tl.program_id(2) * TL + tl.arange(0, TL)
    acc_s = tl.zeros([TL], dtype=tl.float64)
    acc_c = tl.zeros([TL], dtype=tl.float64)
    for p0 in range(g * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
        a = _last_le(lv, s, N, steps)
        a1 = tl.minimum(tl.maximum(a, 0), N - 1)
        a2 = tl.minimum(a + 1, N - 1)
        da = tl.abs(s - tl.load(lv + a1))
        db = tl.abs(s - tl.load(lv + a2))
        k = tl.where(a < 0, 0, tl.where(a >= N - 1, N - 1, tl.where(da <= db, a1, a2)))
        k = tl.load(first_ptr + b * N + k)  # first index among equal levels (argmin rule)
        hit = (k[:, None] == lanes[None, :]) & m[:, None]
        acc_s += tl.sum(tl.where(hit, s.to(tl.float64)[:, None], 0.0), 0)
        acc_c += tl.sum(tl.where(hit, 1.0, 0.0).to(tl.float64), 0)
    out = (b * nprog + g) * NL + lanes
    tl.store(sum_ptr + out, acc_s)
    tl.store(cnt_ptr + out, acc_c)


@triton.jit
def _level_index_kernel(s_ptr, lv_ptr, j_ptr, P, N, steps, BLOCK: tl.constexpr):
    """j_p = index of the last level <= s_p, once per pixel for every later pass."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
    tl.store(j_ptr + b * P + offs, _last_le(lv_ptr + b * N, s, N, steps), mask=m)


@triton.jit
def _weighted_hist_partial_kernel(s_ptr, j_ptr, lv_ptr, v_ptr, out_ptr, P, N, NL, nprog,
                                  HAS_V: tl.constexpr, BLOCK: tl.constexpr, TL: tl.constexpr):
    """Partial sums over pixels of v_p * E_n(p) (v = 1 without HAS_V), float64, for the levels
    n of lane tile program_id(2)."""
    b = tl.program_id(0)
    g = tl.program_id(1)
    lanes = tl.program_id(2) * TL + tl.arange(0, TL)
    acc = tl.zeros([TL], dtype=tl.float64)
    for p0 in range(g * BLOCK, P, nprog * BLOCK):
        offs = p0 + tl.arange(0, BLOCK)
        m = offs < P
        s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
        j = tl.load(j_ptr + b * P + offs, mask=m, other=0)
        k, w, inside, den = _hat(lv_ptr + b * N, s, j, N)
        w0 = (1.0 - w).to(tl.float64)
        w1 = w.to(tl.float64)
        if HAS_V:
            v = tl.load(v_ptr + b * P + offs, mask=m, other=0.0).to(tl.float64)
            w0 = w0 * v
            w1 = w1 * v
        e = tl.where(k[:, None] == lanes[None, :], w0[:, None], 0.0)
        e += tl.where((k + 1)[:, None] == lanes[None, :], w1[:, None], 0.0)
        acc += tl.sum(tl.where(m[:, None], e, 0.0), 0)
    tl.store(out_ptr + (b * nprog + g) * NL + lanes, acc)


@triton.jit
def _equalize_kernel(s_ptr, j_ptr, lv_ptr, cdf_ptr, q_ptr, P, N, BLOCK: tl.constexpr):
    """Q_p = sum_n E_n(p) CDF_n."""
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
    j = tl.load(j_ptr + b * P + offs, mask=m, other=0)
    k, w, inside, den = _hat(lv_ptr + b * N, s, j, N)
    c0 = tl.load(cdf_ptr + b * N + k, mask=m, other=0.0)
    c1 = tl.load(cdf_ptr + b * N + k + 1, mask=m, other=0.0)
    tl.store(q_ptr + b * P + offs, (1.0 - w) * c0 + w * c1, mask=m)


@triton.jit
def _code_matrix(lv_ptr, s, j, valid, N, lanes):
    """(BLOCK, len(lanes)) dense code of a block of pixels at levels ``lanes`` (zero rows where
    not valid), from the stored last-level indices ``j``."""
    k, w, inside, den = _hat(lv_ptr, s, j, N)
    e = tl.where(k[:, None] == lanes[None, :], (1.0 - w)[:, None], 0.0)
    e += tl.where((k + 1)[:, None] == lanes[None, :], w[:, None], 0.0)
    return tl.where(valid[:, None], e, 0.0)


@triton.jit
def _cooc_partial_kernel(s_ptr, j_ptr, lv_ptr, w_ptr, out_ptr, H, W, N, dy, dx, y0, x0, hh, ww,
                         NT, nprog, HAS_W: tl.constexpr, BLOCK: tl.constexpr,
                         TL: tl.constexpr):
    """Partial co-occurrence, tile program_id(2) = (row tile, column tile) of the NT x NT lane
    tiles of the N x N matrix; with ``HAS_W`` each pair weighted by its first pixel's weight.

    Reads the stored last-level indices: a binary search here, next to the ``tl.dot``, makes
    the GPU compiler run for minutes."""
    b = tl.program_id(0)
    g = tl.program_id(1)
    P = H * W
    npairs = hh * ww
    NL = NT * TL
    rows = (tl.program_id(2) // NT) * TL + tl.arange(0, TL)
    lanes = (tl.program_id(2) % NT) * TL + tl.arange(0, TL)
    acc = tl.zeros([TL, TL], dtype=s_ptr.dtype.element_ty)
    for t0 in range(g * BLOCK, npairs, nprog * BLOCK):
        t = t0 + tl.arange(0, BLOCK)
        m = t < npairs
        y = y0 + t // ww
        x = x0 + t % ww
        pi = b * P + y * W + x
        pj = b * P + (y + dy) * W + x + dx
        si = tl.load(s_ptr + pi, mask=m, other=0.0)
        sj = tl.load(s_ptr + pj, mask=m, other=0.0)
        a = _code_matrix(lv_ptr + b * N, si, tl.load(j_ptr + pi, mask=m, other=0), m, N, rows)
        if HAS_W:
            a = a * tl.load(w_ptr + pi, mask=m, other=0.0)[:, None]
        c = _code_matrix(lv_ptr + b * N, sj, tl.load(j_ptr + pj, mask=m, other=0), m, N, lanes)
        acc += tl.dot(tl.trans(a), c, input_precision="ieee")
    tl.store(out_ptr + ((b * nprog + g) * NL + rows[:, None]) * NL + lanes[None, :], acc)


@triton.jit
def _dtiem_grad_s_kernel(s_ptr, j_ptr, lv_ptr, dq_ptr, cdf_ptr, dh_ptr, dm_ptr, off_ptr, w_ptr,
                         hn_ptr, inv_ptr, ds_ptr, H, W, N, D, HAS_W: tl.constexpr,
                         BLOCK: tl.constexpr):
    """d loss / d s_p through the hat code; with ``HAS_W`` the histogram and co-occurrence terms
    carry the pixel's (the pair's first pixel's) weight over the weight sums ``hn (B,)`` and
    ``1 / pair weight sums inv (B, D)`` (0: no pair) instead of 1 over the counts."""
    b = tl.program_id(0)
    P = H * W
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < P
    y = offs // W
    x = offs % W
    lv = lv_ptr + b * N
    s = tl.load(s_ptr + b * P + offs, mask=m, other=0.0)
    k, w, inside, den = _hat(lv, s, tl.load(j_ptr + b * P + offs, mask=m, other=0), N)
    dq = tl.load(dq_ptr + b * P + offs, mask=m, other=0.0).to(tl.float64)
    if HAS_W:
        w_pix = tl.load(w_ptr + b * P + offs, mask=m, other=0.0).to(tl.float64)
        hs = w_pix / tl.load(hn_ptr + b)
        de0 = dq * tl.load(cdf_ptr + b * N + k).to(tl.float64) + tl.load(dh_ptr + b * N + k) * hs
        de1 = (dq * tl.load(cdf_ptr + b * N + k + 1).to(tl.float64)
               + tl.load(dh_ptr + b * N + k + 1) * hs)
    else:
        de0 = dq * tl.load(cdf_ptr + b * N + k).to(tl.float64) + tl.load(dh_ptr + b * N + k) / P
        de1 = (dq * tl.load(cdf_ptr + b * N + k + 1).to(tl.float64)
               + tl.load(dh_ptr + b * N + k + 1) / P)
    for d in range(0, D):
        dy = tl.load(off_ptr + 2 * d)
        dx = tl.load(off_ptr + 2 * d + 1)
        hh = H - tl.abs(dy)
        ww = W - tl.abs(dx)
        inv = 1.0 / tl.maximum(hh * ww, 1).to(tl.float64)
        if HAS_W:
            inv = tl.load(inv_ptr + b * D + d)
        gm = dm_ptr + (b * D + d) * N * N
        yn = y + dy
        xn = x + dx
        vn = m & (yn >= 0) & (yn < H) & (xn >= 0) & (xn < W)
        sn = tl.load(s_ptr + b * P + yn * W + xn, mask=vn, other=0.0)
        kn, wn, _i, _d = _hat(lv, sn, tl.load(j_ptr + b * P + yn * W + xn, mask=vn, other=0), N)
        a0 = (1.0 - wn).to(tl.float64)
        a1 = wn.to(tl.float64)
        t0 = tl.load(gm + k * N + kn, mask=vn, other=0.0) * a0
        t0 += tl.load(gm + k * N + kn + 1, mask=vn, other=0.0) * a1
        t1 = tl.load(gm + (k + 1) * N + kn, mask=vn, other=0.0) * a0
        t1 += tl.load(gm + (k + 1) * N + kn + 1, mask=vn, other=0.0) * a1
        if HAS_W:
            t0 = t0 * w_pix
            t1 = t1 * w_pix
        de0 += tl.where(vn, t0 * inv, 0.0)
        de1 += tl.where(vn, t1 * inv, 0.0)
        yp = y - dy
        xp = x - dx
        vp = m & (yp >= 0) & (yp < H) & (xp >= 0) & (xp < W)
        sp = tl.load(s_ptr + b * P + yp * W + xp, mask=vp, other=0.0)
        kp, wp, _i2, _d2 = _hat(lv, sp, tl.load(j_ptr + b * P + yp * W + xp, mask=vp, other=0), N)
        b0 = (1.0 - wp).to(tl.float64)
        b1 = wp.to(tl.float64)
        u0 = b0 * tl.load(gm + kp * N + k, mask=vp, other=0.0)
        u0 += b1 * tl.load(gm + (kp + 1) * N + k, mask=vp, other=0.0)
        u1 = b0 * tl.load(gm + kp * N + k + 1, mask=vp, other=0.0)
        u1 += b1 * tl.load(gm + (kp + 1) * N + k + 1, mask=vp, other=0.0)
        if HAS_W:
            w_prev = tl.load(w_ptr + b * P + yp * W + xp, mask=vp, other=0.0).to(tl.float64)
            u0 = u0 * w_prev
            u1 = u1 * w_prev
        de0 += tl.where(vp, u0 * inv, 0.0)
        de1 += tl.where(vp, u1 * inv, 0.0)
    ds = tl.where(inside, (de1 - de0) / den.to(tl.float64), 0.0)
    tl.store(ds_ptr + b * P + offs, ds.to(ds_ptr.dtype.element_ty), mask=m)


def _steps(N: int) -> int:
    return max(1, N.bit_length() + 1)


def _levels(s: torch.Tensor, N: int, iters: int) -> torch.Tensor:
    B, P = s.shape
    levels = stlnet_levels(s, N)[0].contiguous()  # STLNet's bin centres, then Lloyd steps
    TL, NT = lane_tiles(N)
    blk = tile_block(TL)
    nprog = nprog_for(P, blk)
    for _ in range(iters):
        first = torch.searchsorted(levels, levels).to(torch.int32).contiguous()
        sums = torch.empty(B, nprog, TL * NT, dtype=torch.float64, device=s.device)
        cnts = torch.empty_like(sums)
        _lloyd_partial_kernel[(B, nprog, NT)](s, levels, first, sums, cnts, P, N, TL * NT,
                                              nprog, _steps(N), BLOCK=blk, TL=TL)
        sums, cnts = sums.sum(1)[:, :N], cnts.sum(1)[:, :N]
        levels = torch.where(cnts > 0, (sums / cnts.clamp_min(1)).to(s.dtype), levels)
        levels = levels.contiguous()
    return levels


def _level_index(s: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(B, P) int32: the last level <= s of every pixel (one binary search per pixel)."""
    B, P = s.shape
    N = levels.shape[1]
    j = torch.empty(B, P, dtype=torch.int32, device=s.device)
    _level_index_kernel[(B, triton.cdiv(P, BLOCK))](s, levels, j, P, N, _steps(N), BLOCK=BLOCK)
    return j


def _hist_partial(s, j, levels, v=None):
    B, P = s.shape
    N = levels.shape[1]
    TL, NT = lane_tiles(N)
    blk = tile_block(TL)
    nprog = nprog_for(P, blk)
    out = torch.empty(B, nprog, TL * NT, dtype=torch.float64, device=s.device)
    _weighted_hist_partial_kernel[(B, nprog, NT)](s, j, levels, s if v is None else v, out, P,
                                                  N, TL * NT, nprog, HAS_V=v is not None,
                                                  BLOCK=blk, TL=TL)
    return out.sum(1)[:, :N]


def _cdf(hist: torch.Tensor) -> torch.Tensor:
    return hist.cumsum(-1) - hist / 2


def _importance(weights: torch.Tensor | None, offsets: list[int], H: int, W: int):
    """Effective weights ``(B, P)`` (ones for an image whose weights sum to zero), their float64
    sums ``(B,)`` and pair weight sums ``(B, D)``; ``None`` without weights."""
    if weights is None:
        return None
    B = weights.shape[0]
    w = weights.reshape(B, H * W)
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, 1.0).contiguous()
    w4 = w.reshape(B, H, W).double()
    pairs = []
    for d in range(len(offsets) // 2):
        dy, dx = offsets[2 * d], offsets[2 * d + 1]
        hh, ww = H - abs(dy), W - abs(dx)
        y0, x0 = max(0, -dy), max(0, -dx)
        pairs.append(w4[:, y0:y0 + max(hh, 0), x0:x0 + max(ww, 0)].sum((1, 2)))
    return w, w4.sum((1, 2)), torch.stack(pairs, 1)


def _flagged(bad: torch.Tensor, *outs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``outs`` with NaN in the rows of the images flagged in ``bad`` (new tensors: no output
    aliases another)."""
    return tuple(nan_rows(o, bad) for o in outs)


@torch.library.custom_op("sstkd_ops::texstat_dtiem_triton", mutates_args=())
def texstat_dtiem(s: torch.Tensor, num_levels: int, iters: int, theta: float,
                  offsets: list[int], weights: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                             torch.Tensor]:
    """Triton ``texstat_dtiem``: same outputs as the compiled op."""
    B, H, W = s.shape
    P, N, D = H * W, num_levels, len(offsets) // 2
    sf = s.reshape(B, P).contiguous()
    bad = nonfinite_rows(sf)
    sf = zero_rows(sf, bad)
    imp = _importance(weights, offsets, H, W)
    levels = _levels(sf, N, iters)
    if N == 1:
        raw = torch.ones(B, 1, dtype=s.dtype, device=s.device)
        q = torch.full_like(s, 0.5)
        cooc = torch.ones(B, D, 1, 1, dtype=s.dtype, device=s.device)
        for d in range(D):
            if H - abs(offsets[2 * d]) <= 0 or W - abs(offsets[2 * d + 1]) <= 0:
                cooc[:, d] = 0
        if imp is not None:  # pairs of zero weight: 0
            cooc = torch.where(imp[2][:, :, None, None] > 0, cooc, 0.0)
        return _flagged(bad, q, cooc, raw, levels, raw)
    jidx = _level_index(sf, levels)
    if imp is None:
        raw = (_hist_partial(sf, jidx, levels) / P).to(s.dtype)
    else:
        raw = (_hist_partial(sf, jidx, levels, imp[0]) / imp[1][:, None]).to(s.dtype)
    hist = denoise_histogram(raw, theta)
    cdf = _cdf(hist).contiguous()
    q = torch.empty_like(sf)
    _equalize_kernel[(B, triton.cdiv(P, BLOCK))](sf, jidx, levels, cdf, q, P, N, BLOCK=BLOCK)
    TL, NT = lane_tiles(N)
    cooc = torch.zeros(B, D, N, N, dtype=s.dtype, device=s.device)
    for d in range(D):
        dy, dx = offsets[2 * d], offsets[2 * d + 1]
        hh, ww = H - abs(dy), W - abs(dx)
        if hh <= 0 or ww <= 0:
            continue
        nprog = nprog_for(hh * ww, DOT_BLOCK)
        part = torch.empty(B, nprog, TL * NT, TL * NT, dtype=s.dtype, device=s.device)
        _cooc_partial_kernel[(B, nprog, NT * NT)](sf, jidx, levels,
                                                  sf if imp is None else imp[0], part, H, W, N,
                                                  dy, dx, max(0, -dy), max(0, -dx), hh, ww, NT,
                                                  nprog, HAS_W=imp is not None, BLOCK=DOT_BLOCK,
                                                  TL=TL, num_warps=dot_warps(TL))
        if imp is None:
            cooc[:, d] = part.sum(1)[:, :N, :N] / (hh * ww)
        else:
            pw = imp[2][:, d, None, None]
            m = part.sum(1)[:, :N, :N] / torch.where(pw > 0, pw, 1.0).to(s.dtype)
            cooc[:, d] = torch.where(pw > 0, m, 0.0)
    return _flagged(bad, q.reshape(B, H, W), cooc, hist, levels, raw)


@torch.library.custom_op("sstkd_ops::texstat_dtiem_backward_triton", mutates_args=())
def texstat_dtiem_backward(grad_q: torch.Tensor, grad_cooc: torch.Tensor, grad_hist: torch.Tensor,
                    s: torch.Tensor, levels: torch.Tensor, raw_hist: torch.Tensor, theta: float,
                    offsets: list[int], weights: torch.Tensor | None = None) -> torch.Tensor:
    B, H, W = s.shape
    P, N, D = H * W, levels.shape[1], len(offsets) // 2
    sf = s.reshape(B, P).contiguous()
    bad = nonfinite_rows(sf, levels)  # NaN levels: flagged in the forward
    if N == 1:
        return nan_rows(torch.zeros_like(sf), bad).reshape(B, H, W)
    imp = _importance(weights, offsets, H, W)
    sf, levels, raw_hist, dq, grad_cooc, grad_hist = (
        zero_rows(t, bad).contiguous()
        for t in (sf, levels, raw_hist, grad_q.reshape(B, P), grad_cooc, grad_hist))
    jidx = _level_index(sf, levels)
    dcdf = _hist_partial(sf, jidx, levels, dq)  # (B, N) float64: sum_p dQ_p E_n(p)
    # d hist' = grad_hist + d(cumsum(h') - h' / 2)
    dh = grad_hist.double() + dcdf.flip(-1).cumsum(-1).flip(-1) - dcdf / 2
    # through the clip-and-redistribute (mirrors reference.denoise_histogram)
    h = raw_hist
    amax = h.argmax(-1, keepdim=True)
    c = theta * h.gather(-1, amax)
    over = h > c
    total = dh.sum(-1, keepdim=True)
    n_over = over.sum(-1, keepdim=True).to(dh.dtype)
    dclip = torch.where(over, dh, 0).sum(-1, keepdim=True) - n_over / N * total
    dh_raw = torch.where(over, total / N, dh)
    dh_raw = dh_raw.scatter_add(-1, amax, theta * dclip)
    cdf = _cdf(denoise_histogram(h, theta)).contiguous()
    # offsets written by fills: a copy from host memory would block, and a CUDA graph capture
    # refuses it
    offs_t = torch.empty(len(offsets), dtype=torch.int32, device=s.device)
    for i, v in enumerate(offsets):
        offs_t[i] = v
    ds = torch.empty_like(sf)
    if imp is None:
        w_args = (sf, dh_raw, dh_raw)  # not read
    else:
        pw = imp[2]
        w_args = (imp[0], imp[1].contiguous(),
                  torch.where(pw > 0, 1.0 / torch.where(pw > 0, pw, 1.0), 0.0).contiguous())
    _dtiem_grad_s_kernel[(B, triton.cdiv(P, BLOCK))](sf, jidx, levels, dq, cdf,
                                                     dh_raw.contiguous(),
                                                     grad_cooc.contiguous(), offs_t, *w_args,
                                                     ds, H, W, N, D, HAS_W=imp is not None,
                                                     BLOCK=BLOCK)
    return nan_rows(ds, bad).reshape(B, H, W)

