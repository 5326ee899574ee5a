"""Fused implementations of the texture-statistics ops (``cpu``, ``cuda``, ``triton``).

Each composes the building blocks of a backend (:func:`blocks`): the compiled ops
``torch.ops.sstkd_ops.texstat_*`` (``cpu``/``cuda``, ``csrc/texture/``) or the Triton ops of
:mod:`sstkd_ops.texture.triton`, whose autograd is registered in
:mod:`sstkd_ops.texture.autograd`. Same arguments as the reference implementations, already
validated by :mod:`sstkd_ops.texture.ops`; the first argument is the backend.
"""

from __future__ import annotations

import torch

from .. import _checks
from . import autograd
from . import reference as _ref


def blocks(backend: str):
    """The building blocks of a fused backend (``cpu``/``cuda``: compiled, ``triton``)."""
    if backend == "triton":
        return autograd.triton_blocks()
    return torch.ops.sstkd_ops


def _check_s_finite(fn: str, s: torch.Tensor) -> None:
    _checks.debug_check_finite(fn, "x", s, derived="texture intensity")


def qco_1d(backend: str, x: torch.Tensor, num_levels: int):
    """``(levels (B, L), sta (B, L), cos_sim (B, H, W))``, as :func:`.reference.qco_1d`."""
    ops = blocks(backend)
    s = ops.texstat_cos_sim(x, 1)[0]
    _check_s_finite("qco_1d", s)
    levels, sta = ops.texstat_qco(s, num_levels, False)[:2]
    return levels, sta, s


def qco_2d(backend: str, x: torch.Tensor, num_levels: int, scale: int):
    """``(levels (B, S*S, L), sta (B, S*S, L, L))``, as :func:`.reference.qco_2d`."""
    ops = blocks(backend)
    xp = _ref.qco_2d_pool(x, num_levels)
    s = ops.texstat_cos_sim(xp, scale)[0]
    _check_s_finite("qco_2d", s)
    cells = _ref.cells_view(s, scale)  # (B, S*S, h, w), O(B*H*W)
    B, G, h, w = cells.shape
    levels, sta = ops.texstat_qco(cells.reshape(B * G, h, w), num_levels, True)[:2]
    return levels.reshape(B, G, num_levels), sta.reshape(B, G, num_levels, num_levels)


def qco_1d_tem(backend: str, f: torch.Tensor, cos_sim: torch.Tensor,
               levels: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)``, as :func:`.reference.qco_1d_tem`."""
    B, H, W = cos_sim.shape
    delta = _ref.qco_1d_delta(cos_sim, levels)
    out = blocks(backend).texstat_qco_tem(f, cos_sim.reshape(B, H * W), levels, delta)
    return out.reshape(B, f.shape[1], H, W)


def texture_equalize(backend: str, x: torch.Tensor, num_levels: int, iters: int, theta: float,
                     offsets: tuple[tuple[int, int], ...], weights: torch.Tensor | None = None):
    """``(q, cooc, hist, levels)``, as :func:`.reference.texture_equalize`; ``weights``:
    detached, contiguous importance weights or ``None`` (the unweighted kernels)."""
    ops = blocks(backend)
    s = ops.texstat_cos_sim(x, 1)[0]
    _check_s_finite("texture_equalize", s)
    flat = [v for d in offsets for v in d]
    if weights is None:  # the plain DTIEM, unchanged
        return ops.texstat_dtiem(s, num_levels, iters, theta, flat)[:4]
    return ops.texstat_dtiem(s, num_levels, iters, theta, flat, weights)[:4]
