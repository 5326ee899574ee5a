"""Anchor-based adaptive importance sampler of DTIEM: per-pixel weights for the counts.

The paper's DTIEM weights hard, texture-rich regions in its counts but publishes no formula
(METHOD.md section 4); the design here is ours. :func:`texture_importance` turns a (teacher)
feature map into pixel weights ``w (B, H, W)`` for ``texture_equalize(..., weights=w)``:

1. texture intensity ``S`` (the cosine map DTIEM quantises,
   :func:`sstkd_ops.texture.reference.cosine_similarity_map`);
2. texture energy ``e_i`` = variance of ``S`` over the 3 x 3 window around pixel i
   (replicate padding): large inside busy texture and at texture boundaries, zero where the
   texture is uniform;
3. anchors: the ``num_anchors`` pixels first in the order (energy descending, raster index
   ascending) among the strict 3 x 3 local maxima of that order with ``e_i > 0``;
4. ``w_i = 1 + gain * max_k exp(-|p_i - a_k|^2 / (2 radius^2))`` (positions in pixels).

Plain PyTorch on any device, no gradient, deterministic (a stable sort decides every tie).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import _checks
from .reference import cosine_similarity_map


def texture_energy(s: torch.Tensor) -> torch.Tensor:
    """Local variance of ``s (B, H, W)`` over 3 x 3 windows (replicate padding), ``(B, H, W)``.

    Computed on the differences to the window's centre, so a constant window gives exactly 0.
    """
    B, H, W = s.shape
    patches = F.unfold(F.pad(s.unsqueeze(1), (1, 1, 1, 1), mode="replicate"), 3)  # (B, 9, P)
    d = patches - s.reshape(B, 1, H * W)
    return ((d * d).mean(1) - d.mean(1).square()).clamp_min(0).reshape(B, H, W)


def select_anchors(energy: torch.Tensor, num_anchors: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor pixels of ``energy (B, H, W)``: ``(index (B, K), valid (B, K))``, K =
    ``min(num_anchors, H*W)``.

    Pixels are ranked by energy (descending), ties by raster index (ascending). An anchor is a
    pixel whose rank is the best of its 3 x 3 neighbourhood (non-maximum suppression on that
    strict order, so plateaus give one anchor) and whose energy is positive; the K best-ranked
    ones are taken. ``valid`` is False where an image has fewer than K such pixels.
    """
    B, H, W = energy.shape
    P = H * W
    K = min(num_anchors, P)
    e = energy.reshape(B, P)
    order = torch.sort(e, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(P, device=e.device).expand(B, P)
    rank = torch.empty_like(order).scatter_(1, order, ranks).to(torch.float64)  # exact < 2^53
    neg = -rank.reshape(B, 1, H, W)
    peak = (F.max_pool2d(neg, 3, stride=1, padding=1) == neg).reshape(B, P) & (e > 0)
    key = torch.where(peak, rank, torch.full_like(rank, math.inf))
    best, index = torch.topk(key, K, dim=1, largest=False, sorted=True)  # distinct finite keys
    return index, torch.isfinite(best)


def texture_importance(x: torch.Tensor, num_anchors: int = 8, radius: float = 2.0,
                       gain: float = 1.0) -> torch.Tensor:
    """Anchor-based importance weights of the pixels of ``x`` for DTIEM's counts.

    ``w_i = 1 + gain * max_k exp(-|p_i - a_k|^2 / (2 radius^2))`` where the anchors ``a_k`` are
    the (at most) ``num_anchors`` pixels of highest texture energy (3 x 3 local variance of the
    texture intensity ``S``, the cosine of each pixel vector with the image's mean vector)
    after a 3 x 3 non-maximum suppression; ties go to the lower raster index. Pixels near a
    hard, texture-rich spot weigh up to ``1 + gain``, the rest 1; an image without texture
    (constant ``S``) has no anchor and weights 1. The design is ours (the paper gives no
    formula): see the module docstring and METHOD.md section 4.

    Args:
        x: ``(B, C, H, W)`` float32/float64 feature map (in distillation: the teacher's).
        num_anchors: K >= 0 anchors per image (0: all weights 1).
        radius: Gaussian radius in pixels of ``x``, > 0 and finite.
        gain: extra weight at an anchor, >= 0 and finite (0: all weights 1).

    Returns:
        ``(B, H, W)`` weights in ``[1, 1 + gain]``, dtype and device of ``x``, no gradient
        (computed from ``x.detach()``): pass them as ``texture_equalize(..., weights=w)`` for
        the student and the teacher alike.

    Cost: O(B H W (log(H W) + K)) time and O(B H W (9 + K)) memory; plain PyTorch on any
    device (no backend choice). Determinism: bitwise reproducible (stable sort, no atomics).

    Example:
        >>> x = torch.zeros(1, 2, 7, 7)
        >>> x[:, 0] = 1.0
        >>> x[:, :, 2:5, 2:5] = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # a 3 x 3 patch
        >>> w = texture_importance(x, num_anchors=4, radius=1.0, gain=2.0)
        >>> w.shape, float(w[0, 2, 2]), round(float(w[0, 3, 3]), 4)  # anchor, between anchors
        (torch.Size([1, 7, 7]), 3.0, 1.7358)
    """
    fn = "texture_importance"
    x = _checks.check_tensor(fn, "x", x, ndim=4, min_size=(None, None, 1, 1))
    K = _checks.check_int(fn, "num_anchors", num_anchors, minimum=0)
    radius = _checks.check_float(fn, "radius", radius)
    if not (0.0 < radius < math.inf):
        raise ValueError(f"{fn}: argument 'radius' expected a finite value > 0, got {radius}")
    gain = _checks.check_float(fn, "gain", gain, minimum=0.0)
    if gain == math.inf:
        raise ValueError(f"{fn}: argument 'gain' expected a finite value >= 0, got {gain}")
    B, _, H, W = x.shape
    if K == 0 or gain == 0.0:
        return torch.ones(B, H, W, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        s = cosine_similarity_map(x.detach())
        index, valid = select_anchors(texture_energy(s), K)
        ay, ax = (index // W).to(x.dtype), (index % W).to(x.dtype)  # (B, K)
        yy = torch.arange(H, dtype=x.dtype, device=x.device).view(1, H, 1, 1)
        xx = torch.arange(W, dtype=x.dtype, device=x.device).view(1, 1, W, 1)
        d2 = (yy - ay[:, None, None, :]).square() + (xx - ax[:, None, None, :]).square()
        g = torch.exp(d2 / (-2.0 * radius * radius)) * valid[:, None, None, :]
        return 1.0 + gain * g.amax(-1)  # K >= 1 here
