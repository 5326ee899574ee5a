"""Texture statistics: STLNet's quantize-and-count (QCO) and DTIEM intensity equalisation.

Public ops (METHOD.md section 4), each validating its arguments and dispatching through its
table backend -> implementation (:func:`sstkd_ops._backend.dispatch`):

* :func:`qco_1d` -- STLNet ``QCO_1d``, parameter-free part: levels and normalised counts.
* :func:`qco_2d` -- STLNet ``QCO_2d``: per-cell co-occurrence with the (+1, +1) neighbour.
* :func:`qco_1d_tem` -- the TEM product ``out[b, :, i] = sum_n f[b, :, n] E[b, n, i]``.
* :func:`texture_equalize` -- DTIEM: Lloyd-Max levels, hat code, histogram, denoising,
  equalised map and co-occurrence matrices.

The fused backends (``cpu``: C++, ``cuda``: CUDA, ``triton``) never build the ``(B, N, H*W)``
code or the ``(B, N, N, H*W)`` co-occurrence tensors: their extra memory is
``O(B*H*W + B*N*N)`` (:mod:`sstkd_ops.texture.fused`). ``reference`` (plain PyTorch,
:mod:`sstkd_ops.texture.reference`) builds them and is the oracle. The C++ and CUDA kernels
reduce in a fixed order, so results are bitwise reproducible run to run; the Triton kernels
too (per-program partial sums reduced in a fixed order, no atomics).

Non-finite input: NaN or Inf anywhere in ``x`` makes every texture intensity of that image
non-finite. Checking for it costs a device synchronisation, so the ops do not check by default:
the reference propagates NaN; the CUDA and Triton kernels flag the affected image on the
device (``qco_2d``: the affected cell, the group it reduces over; no host round trip) and write
NaN to its outputs, the Triton ones also to its gradients (their kernels see it as a constant
zero image), leaving the other images as they are; the C++ CPU kernels raise ``RuntimeError``
(they read host memory anyway). With the opt-in debug check
(``SSTKD_CHECK_FINITE=1`` or :func:`set_finite_checks` ``(True)``) every backend raises
``ValueError`` at the boundary in eager mode (one sync per call; skipped under
``torch.compile``). With the check off, the fused ops (``cpu``, ``cuda``, ``triton``) never
read a device value on the host in forward or backward (no ``.item()``: CUDA-graph
capturable), except for the one check of the values of ``texture_equalize``'s ``weights``
when they are given in eager mode (skipped under ``torch.compile`` and CUDA-graph capture).

Limits: level counts are at most :data:`MAX_LEVELS` (4096, :mod:`sstkd_ops.constants`, the
same value as ``kMaxLevels`` in ``csrc/constants.h``) on every backend. Batches and channels
may be empty (``B = 0`` or ``C = 0``: an all-zero pixel vector, ``S = 0``); images need at
least one pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .. import _backend, _checks
from ..constants import MAX_LEVELS
from . import fused
from . import reference as _ref

__all__ = ["MAX_LEVELS", "QCO1d", "TextureStats", "qco_1d", "qco_1d_tem", "qco_2d",
           "set_finite_checks", "texture_equalize"]

_FUSED = ("cpu", "cuda", "triton")  # every op has all fused backends


set_finite_checks = _checks.set_finite_checks


class QCO1d(NamedTuple):
    """Result of :func:`qco_1d`."""

    levels: torch.Tensor  #: (B, L) level centres (differentiable through min / max of S)
    sta: torch.Tensor  #: (B, L) normalised counts (sum 1; NaN for a constant S, see qco_1d)
    cos_sim: torch.Tensor  #: (B, H, W) texture intensity S, for :func:`qco_1d_tem`


class TextureStats(NamedTuple):
    """Result of :func:`texture_equalize`."""

    q: torch.Tensor  #: (B, H, W) equalised texture intensity, in [0, 1]
    cooc: torch.Tensor  #: (B, D, N, N) co-occurrence per offset, each sums to 1
    hist: torch.Tensor  #: (B, N) denoised histogram (sums to 1)
    levels: torch.Tensor  #: (B, N) quantisation levels (no gradient)


def _qco_1d_reference(x: torch.Tensor, num_levels: int):
    _checks.debug_check_finite("qco_1d", "x", x)
    return _ref.qco_1d(x, num_levels)


def _qco_2d_reference(x: torch.Tensor, num_levels: int, scale: int):
    _checks.debug_check_finite("qco_2d", "x", x)
    return _ref.qco_2d(x, num_levels, scale)


def _texture_equalize_reference(x: torch.Tensor, num_levels: int, iters: int, theta: float,
                                offsets: tuple[tuple[int, int], ...],
                                weights: torch.Tensor | None = None):
    _checks.debug_check_finite("texture_equalize", "x", x)
    return _ref.texture_equalize(x, num_levels, iters, theta, offsets, weights)


def _table(reference, fused_impl) -> dict:
    return {"reference": reference, **{b: functools.partial(fused_impl, b) for b in _FUSED}}


# op -> backend -> implementation, all with the reference's arguments (already validated)
_IMPLS = {
    "qco_1d": _table(_qco_1d_reference, fused.qco_1d),
    "qco_2d": _table(_qco_2d_reference, fused.qco_2d),
    "qco_1d_tem": _table(_ref.qco_1d_tem, fused.qco_1d_tem),
    "texture_equalize": _table(_texture_equalize_reference, fused.texture_equalize),
}


def _check_x(fn: str, x: object) -> torch.Tensor:
    return _checks.check_tensor(fn, "x", x, ndim=4, min_size=(None, None, 1, 1))


def _check_levels(fn: str, name: str, value: object) -> int:
    return _checks.check_int(fn, name, value, minimum=1, maximum=MAX_LEVELS)


def qco_1d(x: torch.Tensor, num_levels: int, *, backend: str | None = None) -> QCO1d:
    """STLNet's 1-D quantization-and-counting operator, parameter-free part.

    Per image: texture intensity ``S_p = cos(x[:, p], mean_p x[:, p])``, levels
    ``q_k = min S + (2k+1)/(2L) (max S - min S)``, code ``E_kp = 1 - |q_k - S_p|`` where that
    exceeds ``1 - (q_1 - q_0)`` (else 0), ``sta_k = sum_p E_kp / sum_{k,p} E_kp``. Forward and
    gradients match the official code (golden vectors ``shared/golden/qco``): min / max send
    their gradient to the first extremal pixel, the mask and the spacing carry none.

    Args:
        x: ``(B, C, H, W)`` float32/float64 feature map.
        num_levels: 1 <= L <= :data:`MAX_LEVELS` (L = 1: one level, mask width
            ``max S - min S``; the official code fails there).
        backend: ``None`` / ``'auto'``, ``'reference'``, ``'cpu'``, ``'cuda'``, ``'triton'``.

    Returns:
        :class:`QCO1d` ``(levels (B, L), sta (B, L), cos_sim (B, H, W))``, all differentiable
        w.r.t. ``x``. A constant ``S`` (constant map, H = W = 1, ...) gives ``sta = NaN`` and a
        NaN gradient, as the official code (0 / 0). An all-zero pixel vector has ``S = 0``.

    Determinism: all backends are deterministic (bitwise reproducible run to run).

    Example:
        >>> out = qco_1d(torch.randn(2, 16, 8, 8), 8)
        >>> out.sta.shape, bool(torch.allclose(out.sta.sum(-1), torch.ones(2)))
        (torch.Size([2, 8]), True)
    """
    fn = "qco_1d"
    x = _check_x(fn, x)
    L = _check_levels(fn, "num_levels", num_levels)
    return QCO1d(*_backend.dispatch(fn, x, backend, _IMPLS[fn])(x, L))


def _qco_2d_sizes(fn: str, shape: torch.Size, L: int, S: int) -> None:
    H, W = shape[-2:]
    if H // L != 0 or W // L != 0:
        H, W = (H // L) * L, (W // L) * L
    if H == 0 or W == 0:
        raise ValueError(f"{fn}: argument 'x' expected H and W both >= num_levels or both < "
                         f"num_levels (STLNet pools to multiples of L), got shape "
                         f"{tuple(shape)} with num_levels={L}")
    if H % S or W % S:
        raise ValueError(f"{fn}: argument 'scale' expected a divisor of the pooled size "
                         f"{(H, W)}, got {S}")


def qco_2d(x: torch.Tensor, num_levels: int, scale: int = 1, *,
           backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """STLNet's 2-D quantization-and-counting operator (co-occurrence), parameter-free part.

    ``x`` is first average-pooled to ``(floor(H/L) L, floor(W/L) L)`` when H >= L or W >= L
    (the identity for multiples of L), split into ``scale x scale`` cells; each pixel is
    compared with its cell's mean vector; per cell, levels and the masked code are those of
    :func:`qco_1d` and ``sta[i, j] = sum_{y,x} E_i(y, x) E_j(y+1, x+1) / (total + 1e-6)``
    (pairs never cross a cell border).

    Args:
        x: ``(B, C, H, W)`` float32/float64.
        num_levels: 1 <= L <= :data:`MAX_LEVELS`.
        scale: S >= 1, must divide the pooled H and W.
        backend: ``None`` / ``'auto'``, ``'reference'``, ``'cpu'``, ``'cuda'``, ``'triton'``.

    Returns:
        ``levels (B, S*S, L)`` and ``sta (B, S*S, L, L)`` (``[b, cell, i, j]``, i at (y, x),
        j at (y+1, x+1)), differentiable w.r.t. ``x``. Constant cells give ``sta = 0`` and a
        zero gradient. STLNet's ``sta_cat`` is ``[q_j, q_i, sta]`` over ``i*L + j``.

    Determinism: all backends are deterministic (bitwise reproducible run to run).

    Example:
        >>> levels, sta = qco_2d(torch.randn(1, 8, 16, 16), 8, 2)
        >>> tuple(sta.shape)
        (1, 4, 8, 8)
    """
    fn = "qco_2d"
    x = _check_x(fn, x)
    L = _check_levels(fn, "num_levels", num_levels)
    S = _checks.check_int(fn, "scale", scale, minimum=1)
    _qco_2d_sizes(fn, x.shape, L, S)
    return _backend.dispatch(fn, x, backend, _IMPLS[fn])(x, L, S)


def qco_1d_tem(f: torch.Tensor, cos_sim: torch.Tensor, levels: torch.Tensor, *,
               backend: str | None = None) -> torch.Tensor:
    """STLNet TEM's product of per-level features with the QCO_1d code, without the code.

    ``out[b, :, p] = sum_k f[b, :, k] E[b, k, p]`` with ``E`` the masked code of
    :func:`qco_1d` (at most two non-zero levels per pixel), i.e. ``bmm(f, quant^T)``.

    Args:
        f: ``(B, C, L)`` per-level features.
        cos_sim: ``(B, H, W)`` texture intensity (``qco_1d(...).cos_sim``).
        levels: ``(B, L)`` levels (``qco_1d(...).levels``).
        backend: ``None`` / ``'auto'``, ``'reference'``, ``'cpu'``, ``'cuda'``, ``'triton'``.

    Returns:
        ``(B, C, H, W)``, differentiable w.r.t. ``f``, ``cos_sim`` and ``levels`` (the mask
        width ``q_1 - q_0`` is not differentiated, as in the official code).

    Determinism: all backends are deterministic (bitwise reproducible run to run).

    Example:
        >>> x = torch.randn(2, 16, 8, 8)
        >>> q = qco_1d(x, 8)
        >>> qco_1d_tem(torch.randn(2, 4, 8), q.cos_sim, q.levels).shape
        torch.Size([2, 4, 8, 8])
    """
    fn = "qco_1d_tem"
    f = _checks.check_tensor(fn, "f", f, ndim=3, min_size=(None, None, 1))
    cos_sim = _checks.check_tensor(fn, "cos_sim", cos_sim, ndim=3, min_size=(None, 1, 1))
    levels = _checks.check_tensor(fn, "levels", levels, ndim=2)
    B, L = f.shape[0], f.shape[2]
    if L > MAX_LEVELS:
        raise ValueError(f"{fn}: argument 'f' expected at most {MAX_LEVELS} levels (size of "
                         f"dimension 2), got shape {tuple(f.shape)}")
    if cos_sim.shape[0] != B or tuple(levels.shape) != (B, L):
        raise ValueError(f"{fn}: argument 'levels' expected shape {(B, L)} and 'cos_sim' batch "
                         f"{B} (from f {tuple(f.shape)}), got levels {tuple(levels.shape)}, "
                         f"cos_sim {tuple(cos_sim.shape)}")
    if not (f.dtype == cos_sim.dtype == levels.dtype):
        raise TypeError(f"{fn}: argument 'f' expected the dtype of cos_sim and levels, got "
                        f"{f.dtype}, {cos_sim.dtype}, {levels.dtype}")
    _checks.check_same_device(fn, {"f": f, "cos_sim": cos_sim, "levels": levels})
    impl = _backend.dispatch(fn, f, backend, _IMPLS[fn])
    _checks.debug_check_finite(fn, "cos_sim", cos_sim)
    return impl(f, cos_sim, levels)


def _check_offsets(fn: str, offsets: object) -> tuple[tuple[int, int], ...]:
    ok = isinstance(offsets, Sequence) and len(offsets) > 0
    if ok:
        for d in offsets:
            if not (isinstance(d, Sequence) and len(d) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in d)):
                ok = False
    if not ok:
        raise TypeError(f"{fn}: argument 'offsets' expected a non-empty sequence of (dy, dx) "
                        f"int pairs, got {offsets!r}")
    return tuple((int(d[0]), int(d[1])) for d in offsets)


def _check_weights(fn: str, weights: object, x: torch.Tensor) -> torch.Tensor:
    """``weights`` detached and contiguous, after checking type, shape, dtype, device and (one
    device sync, skipped while ``torch.compile`` traces or a CUDA graph is captured) values."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{fn}: argument 'weights' expected a torch.Tensor or None, got "
                        f"{type(weights).__name__}")
    B, _, H, W = x.shape
    if tuple(weights.shape) != (B, H, W):
        raise ValueError(f"{fn}: argument 'weights' expected shape {(B, H, W)} (B, H, W of x), "
                         f"got {tuple(weights.shape)}")
    if weights.dtype != x.dtype:
        raise ValueError(f"{fn}: argument 'weights' expected dtype {x.dtype} (the dtype of x), "
                         f"got {weights.dtype}")
    _checks.check_same_device(fn, {"x": x, "weights": weights})
    w = weights.detach()
    capturing = w.is_cuda and torch.cuda.is_current_stream_capturing()
    if not (torch.compiler.is_compiling() or capturing) and not bool(
            (torch.isfinite(w) & (w >= 0)).all()):
        raise ValueError(f"{fn}: argument 'weights' expected finite values >= 0, got min "
                         f"{float(w.min())}")
    return w.contiguous()


def texture_equalize(x: torch.Tensor, num_levels: int = 32, iters: int = 2, theta: float = 0.5,
                     offsets: Sequence[tuple[int, int]] = ((1, 1),), *,
                     weights: torch.Tensor | None = None,
                     backend: str | None = None) -> TextureStats:
    """DTIEM: denoised texture-intensity equalisation (METHOD.md section 4).

    Per image: texture intensity ``S`` (cosine to the global mean feature), N levels from
    STLNet's bin centres refined by ``iters`` Lloyd-Max steps (nearest level, first on ties;
    a level without pixels stays), hat code (linear interpolation between the two levels that
    bracket ``S``; below the first / above the last level all weight goes to it), histogram
    ``h = mean_p E``, clip at ``theta * max(h)`` with the clipped mass spread evenly,
    ``CDF_n = sum_{m<=n} h'_m - h'_n / 2``, equalised map ``Q_p = sum_n E_np CDF_n`` and, per
    offset ``d = (dy, dx)``, ``M_nm = mean over pixel pairs (p, p + d) inside the image of
    E_np E_m(p+d)`` (all zero when no pair fits).

    Importance weights (DTIEM's anchor-based sampler, :func:`texture_importance`): with
    ``weights`` ``w``, ``h_n = sum_p w_p E_np / sum_p w_p`` (before the denoising) and
    ``M_nm = sum_p w_p E_np E_m(p+d) / sum_p w_p`` over the same pairs (the weight of the
    first pixel of each pair; zero when no pair fits or their weights sum to zero). An image
    whose weights sum to zero is counted with uniform weights. Levels (Lloyd-Max) stay
    unweighted and ``Q_p = sum_n E_np CDF_n`` keeps its form. ``weights=None`` runs the
    unweighted kernels (bitwise the plain DTIEM).

    Args:
        x: ``(B, C, H, W)`` float32/float64 feature map.
        num_levels: 1 <= N <= :data:`MAX_LEVELS` (N = 1: ``Q = 0.5``, ``hist = cooc = 1``,
            zero gradient).
        iters: K >= 0 Lloyd-Max steps (0: STLNet's levels).
        theta: clip fraction in [0, 1]; 1 disables the denoising.
        offsets: non-empty sequence of ``(dy, dx)`` int pairs (STLNet: ``((1, 1),)``; the
            CUDA kernels take at most 8).
        weights: optional ``(B, H, W)`` pixel weights, finite and >= 0, dtype and device of
            ``x``. They carry no gradient: one that requires grad is used detached. Their
            values are checked (``ValueError``) at one device sync, skipped while
            ``torch.compile`` traces or a CUDA graph is captured.
        backend: ``None`` / ``'auto'``, ``'reference'``, ``'cpu'``, ``'cuda'``, ``'triton'``.

    Returns:
        :class:`TextureStats` ``(q (B, H, W), cooc (B, D, N, N), hist (B, N), levels (B, N))``.
        ``q``, ``cooc`` and ``hist`` are differentiable w.r.t. ``x`` (piecewise: the gradient
        through the code is zero for pixels clamped to the first or last level); ``levels``
        carry no gradient. A constant map puts every pixel on the last level (``Q`` constant,
        zero gradient); an all-zero pixel vector has ``S = 0``.

    Determinism: all backends are deterministic (bitwise reproducible run to run).

    Example:
        >>> out = texture_equalize(torch.randn(2, 16, 12, 12), num_levels=8)
        >>> out.q.shape, out.cooc.shape, round(float(out.hist.sum(-1)[0]), 4)
        (torch.Size([2, 12, 12]), torch.Size([2, 1, 8, 8]), 1.0)
    """
    fn = "texture_equalize"
    x = _check_x(fn, x)
    N = _check_levels(fn, "num_levels", num_levels)
    K = _checks.check_int(fn, "iters", iters, minimum=0)
    theta = _checks.check_float(fn, "theta", theta, minimum=0.0, maximum=1.0)
    offs = _check_offsets(fn, offsets)
    w = None if weights is None else _check_weights(fn, weights, x)
    impl = _backend.dispatch(fn, x, backend, _IMPLS[fn])
    return TextureStats(*impl(x, N, K, theta, offs, w))
