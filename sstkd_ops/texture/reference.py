"""Plain-PyTorch reference of the texture-statistics ops (QCO 1-D / 2-D, TEM product, DTIEM).

This is the oracle for every fast path and the fallback backend. It follows the formulas of
``docs/METHOD.md`` section 4 and, for QCO, the op sequence of STLNet's official code (see
``../shared/golden/qco/README.md``), so that plain autograd reproduces the official gradients
(min / max route their gradient to the first extremal index, the hard mask and the level
spacing carry none). It materialises the ``(B, N, H*W)`` encoding on purpose: it is meant to be
obviously right, not small.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..constants import NORM_EPS, QCO2D_EPS


def cosine_similarity_map(x: torch.Tensor, cells: int = 1) -> torch.Tensor:
    """Cosine similarity of every pixel vector with the mean vector of its cell.

    Args:
        x: ``(B, C, H, W)`` float tensor; H and W divisible by ``cells``.
        cells: the image is split into a ``cells x cells`` grid (1: global average).

    Returns:
        ``(B, H, W)`` texture intensity ``S``.
    """
    B, C, H, W = x.shape
    mean = F.adaptive_avg_pool2d(x, (cells, cells))
    if cells > 1:
        mean = mean.repeat_interleave(H // cells, dim=2).repeat_interleave(W // cells, dim=3)
    return (F.normalize(mean, dim=1, eps=NORM_EPS) * F.normalize(x, dim=1, eps=NORM_EPS)).sum(1)


def level_fractions(num_levels: int, like: torch.Tensor) -> torch.Tensor:
    """STLNet's bin-centre fractions ``(2k + 1) / (2L)``, ``(L,)``, formed in float32 as the
    official code does, then cast to the dtype of ``like``."""
    k = torch.arange(num_levels, device=like.device).float()
    return ((2 * k + 1) / (2 * num_levels)).to(like.dtype)


def stlnet_levels(s: torch.Tensor, num_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """STLNet's level centres over the last axis of ``s`` ``(..., P)``; returns (levels, delta).

    ``levels (..., L)`` depend on ``s`` through its min and max; ``delta (...)`` (the level
    spacing ``q_1 - q_0``, or ``max - min`` when L = 1) is detached: it only enters the mask.
    """
    lo = s.min(-1).values.unsqueeze(-1)
    hi = s.max(-1).values.unsqueeze(-1)
    levels = level_fractions(num_levels, s) * (hi - lo) + lo
    if num_levels > 1:
        delta = levels[..., 1] - levels[..., 0]
    else:
        delta = (hi - lo).squeeze(-1)
    return levels, delta.detach()


def stlnet_encoding(s: torch.Tensor, levels: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """STLNet's masked soft code ``(..., P, L)``: ``1 - |q - s|`` where it exceeds ``1 - delta``."""
    quant = 1 - (levels.unsqueeze(-2) - s.unsqueeze(-1)).abs()
    return quant * (quant > (1 - delta)[..., None, None])


def qco_1d(x: torch.Tensor, num_levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """STLNet QCO_1d, parameter-free part: ``(levels (B, L), sta (B, L), cos_sim (B, H, W))``."""
    B, _, H, W = x.shape
    cos = cosine_similarity_map(x)
    s = cos.reshape(B, H * W)
    levels, delta = stlnet_levels(s, num_levels)
    quant = stlnet_encoding(s, levels, delta)  # (B, P, L)
    counts = quant.sum(1)
    sta = counts / counts.sum(-1, keepdim=True)
    return levels, sta, cos


def qco_2d_pool(x: torch.Tensor, num_levels: int) -> torch.Tensor:
    """STLNet QCO_2d's pre-pooling to multiples of L (the identity when H, W are multiples)."""
    H, W = x.shape[-2:]
    if H // num_levels != 0 or W // num_levels != 0:
        size = ((H // num_levels) * num_levels, (W // num_levels) * num_levels)
        if size != (H, W):
            x = F.adaptive_avg_pool2d(x, size)
    return x


def cells_view(s: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, S*S, h, w)``, cell index ``a*S + c`` (row-major cells)."""
    B, H, W = s.shape
    h, w = H // scale, W // scale
    return s.reshape(B, scale, h, scale, w).permute(0, 1, 3, 2, 4).reshape(B, scale * scale, h, w)


def qco_2d(x: torch.Tensor, num_levels: int, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """STLNet QCO_2d, parameter-free part: ``(levels (B, S*S, L), sta (B, S*S, L, L))``.

    ``sta[b, g, i, j]`` counts level i at ``(y, x)`` with level j at ``(y+1, x+1)`` inside cell g.
    """
    x = qco_2d_pool(x, num_levels)
    B = x.shape[0]
    cs = cells_view(cosine_similarity_map(x, scale), scale)  # (B, G, h, w)
    G, h, w = cs.shape[1:]
    s = cs.reshape(B, G, h * w)
    levels, delta = stlnet_levels(s, num_levels)
    quant = stlnet_encoding(s, levels, delta)  # (B, G, P, L)
    quant = quant.transpose(-1, -2).reshape(B, G, num_levels, h, w)
    counts = torch.einsum("bgiyx,bgjyx->bgij", quant[..., :-1, :-1], quant[..., 1:, 1:])
    sta = counts / (counts.sum(-1).sum(-1)[..., None, None] + QCO2D_EPS)
    return levels, sta


def qco_1d_delta(cos_sim: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The (detached) mask width of :func:`qco_1d` recovered from its outputs, ``(B,)``."""
    if levels.shape[-1] > 1:
        return (levels[:, 1] - levels[:, 0]).detach()
    B, H, W = cos_sim.shape
    s = cos_sim.reshape(B, H * W).detach()
    return s.max(-1).values - s.min(-1).values


def qco_1d_tem(f: torch.Tensor, cos_sim: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """STLNet TEM product ``out[b, :, i] = sum_n f[b, :, n] * E[b, n, i]`` ``(B, C, H, W)``.

    ``E`` is QCO_1d's masked code of ``cos_sim (B, H, W)`` against ``levels (B, L)``.
    """
    B, H, W = cos_sim.shape
    quant = stlnet_encoding(cos_sim.reshape(B, H * W), levels, qco_1d_delta(cos_sim, levels))
    return torch.bmm(f, quant.transpose(1, 2)).reshape(B, f.shape[1], H, W)


# ----------------------------------------------------------------------------------- DTIEM


def lloyd_levels(s: torch.Tensor, num_levels: int, iters: int) -> torch.Tensor:
    """Levels ``(B, N)`` (no gradient): STLNet's bin centres, then ``iters`` Lloyd-Max steps.

    Each step assigns every value of ``s (B, P)`` to its nearest level (first one on ties) and
    moves each level to the mean of its values; a level without values stays.
    """
    s = s.detach()
    levels = stlnet_levels(s, num_levels)[0]
    for _ in range(iters):
        idx = (s.unsqueeze(1) - levels.unsqueeze(2)).abs().argmin(1)  # (B, P)
        # level means accumulated in float64, then rounded to the working dtype
        sums = torch.zeros_like(levels, dtype=torch.float64).scatter_add_(1, idx, s.double())
        cnt = torch.zeros_like(sums).scatter_add_(1, idx, torch.ones_like(sums[:, :1]).expand_as(s))
        levels = torch.where(cnt > 0, (sums / cnt.clamp_min(1)).to(s.dtype), levels)
    return levels


def hat_encoding(s: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Linear-interpolation code ``(B, N, P)`` of ``s (B, P)`` between sorted ``levels (B, N)``.

    Pixel i goes to the last level ``k`` with ``levels[k] <= s_i`` and the next one, with
    weights ``1 - w, w``, ``w = (s_i - L_k) / (L_{k+1} - L_k)``; below the first level or at /
    above the last, all weight goes to that level (no gradient there).
    """
    B, P = s.shape
    N = levels.shape[1]
    if N == 1:
        return torch.ones(B, 1, P, dtype=s.dtype, device=s.device) + 0 * s.unsqueeze(1)
    k = torch.searchsorted(levels.contiguous(), s.detach().contiguous(), right=True) - 1
    below, above = k < 0, k >= N - 1
    kk = k.clamp(0, N - 2)
    l0, l1 = levels.gather(1, kk), levels.gather(1, kk + 1)
    inside = ~(below | above)
    w = (s - l0) / torch.where(inside, l1 - l0, torch.ones_like(l0))
    w = torch.where(below, torch.zeros_like(w), torch.where(above, torch.ones_like(w), w))
    E = torch.zeros(B, N, P, dtype=s.dtype, device=s.device)
    E = E.scatter_add(1, kk.unsqueeze(1), (1 - w).unsqueeze(1))
    return E.scatter_add(1, (kk + 1).unsqueeze(1), w.unsqueeze(1))


def denoise_histogram(h: torch.Tensor, theta: float) -> torch.Tensor:
    """Clip ``h (B, N)`` at ``theta * max(h)`` and spread the clipped mass evenly (sum kept)."""
    idx = h.argmax(-1, keepdim=True)  # first maximum gets the gradient of the max
    c = theta * h.gather(-1, idx)
    over = h > c
    excess = torch.where(over, h - c, torch.zeros_like(h)).sum(-1, keepdim=True)
    return torch.where(over, c, h) + excess / h.shape[-1]


def cooccurrence(E: torch.Tensor, H: int, W: int, offsets: Sequence[tuple[int, int]],
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, D, N, N)``: ``M[n, m] = mean over valid pixel pairs (i, i + d) of E_n(i) E_m(i + d)``.

    Pairs leaving the image are skipped (zero padding); with no valid pair M is zero. With
    ``weights (B, P)`` (no gradient) the mean is weighted by the weight of the first pixel of
    each pair, ``sum w_i E_n(i) E_m(i + d) / sum w_i`` over the valid pairs (zero when that
    weight sum is zero).
    """
    B, N, _ = E.shape
    E4 = E.reshape(B, N, H, W)
    w4 = None if weights is None else weights.reshape(B, H, W)
    out = []
    for dy, dx in offsets:
        hh, ww = H - abs(dy), W - abs(dx)
        if hh <= 0 or ww <= 0:
            out.append(E.new_zeros(B, N, N) + 0 * E.sum())
            continue
        y0, x0 = max(0, -dy), max(0, -dx)
        a = E4[:, :, y0:y0 + hh, x0:x0 + ww]
        b = E4[:, :, y0 + dy:y0 + dy + hh, x0 + dx:x0 + dx + ww]
        if w4 is None:
            out.append(torch.einsum("bnyx,bmyx->bnm", a, b) / (hh * ww))
            continue
        wa = w4[:, y0:y0 + hh, x0:x0 + ww]
        total = wa.sum((1, 2))[:, None, None]
        m = torch.einsum("byx,bnyx,bmyx->bnm", wa, a, b)
        out.append(torch.where(total > 0, m / torch.where(total > 0, total, 1), 0))
    return torch.stack(out, 1)


def importance_weights(weights: torch.Tensor) -> torch.Tensor:
    """``(B, P)`` weights as DTIEM uses them: detached, and all ones for an image whose weights
    sum to zero (uniform fallback: the plain, unweighted statistics)."""
    w = weights.detach()
    return torch.where(w.sum(-1, keepdim=True) > 0, w, torch.ones_like(w))


def texture_equalize(x: torch.Tensor, num_levels: int, iters: int, theta: float,
                     offsets: Sequence[tuple[int, int]], weights: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """DTIEM (METHOD.md section 4): ``(Q (B, H, W), cooc (B, D, N, N), hist (B, N), levels)``.

    ``hist`` is the denoised histogram that defines ``Q``; ``levels`` carry no gradient.
    ``weights (B, H, W)`` (optional, non-negative, no gradient) weight the pixels in the
    histogram, ``h_n = sum_i w_i E_ni / sum_i w_i``, and the first pixel of each pair in the
    co-occurrence (:func:`cooccurrence`); the levels stay unweighted. An image whose weights
    sum to zero is counted with uniform weights (:func:`importance_weights`).
    """
    B, C, H, W = x.shape
    s = cosine_similarity_map(x).reshape(B, H * W)
    levels = lloyd_levels(s, num_levels, iters)
    E = hat_encoding(s, levels)
    if weights is None:
        raw = E.mean(-1)
        w = None
    else:
        w = importance_weights(weights.reshape(B, H * W))
        raw = (E * w.unsqueeze(1)).sum(-1) / w.sum(-1, keepdim=True)
    hist = denoise_histogram(raw, theta)
    cdf = hist.cumsum(-1) - hist / 2
    Q = (E * cdf.unsqueeze(-1)).sum(1).reshape(B, H, W)
    return Q, cooccurrence(E, H, W, offsets, w), hist, levels
