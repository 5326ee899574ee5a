"""Contourlet transform ops: Laplacian pyramid, directional filter bank, and their cascade.

The transform is the canonical contourlet transform of Do & Vetterli as implemented by the
Contourlet Toolbox v2.0 (``pdfbdec``/``pdfbrec``); the reference backend reproduces the
toolbox's float64 outputs to ~1e-14 (see ``tests/test_contourlet_golden.py``).

Conventions shared by every op here:

* Tensors are ``(B, C, H, W)``, float32 or float64, on any device; every (batch, channel)
  plane is transformed independently. Axis H is the toolbox's row axis.
* Boundary handling is periodic (the toolbox's ``'per'``, plus its quincunx-periodic
  ``'qper_col'`` inside the DFB). Unlike the toolbox, the quincunx-periodic extension wraps
  as many times as a filter needs, so long filters (e.g. ``dmaxflat7``, or ``pkva`` on the
  general tree path) also work on small images where the toolbox stops with an indexing
  error; wherever the toolbox runs, the results are identical. Plain periodic extensions
  (LP, wavelet level) likewise wrap any number of times.
* Haar DFB: the toolbox's algorithm (as ported here; not re-run in Octave) makes
  ``dfbrec(y, 'haar')`` invert ``dfbdec(x, 'haar', n)`` only for ``n = 2``: its Haar
  synthesis pair returns ``-x`` at the nodes with column-modulated fan filters. The
  decomposition here is the toolbox's; that synthesis pair is negated, so ``dfb_rec`` and
  ``pdfb_rec`` are exact for every level count (bit-identical to the toolbox for ``n = 2``).
* Sizes: the ops need H and W divisible by a power of two (see each op) and raise
  ``ValueError`` otherwise. :func:`pdfb_pad` (or ``pdfb_dec(..., pad=True)``) pads the bottom
  and right edges by reflection to the next valid size; crop the reconstruction with
  ``pdfb_rec(..., size=(H, W))``. A 2-level general-tree DFB needs multiples of 4: with
  H/2 + W/2 odd the quincunx-periodic extension of its second level does not fit the
  quincunx sampling and the toolbox's algorithm does not reconstruct (found with this port).
* NaN/Inf: the transform is linear and does no checking; non-finite inputs propagate to the
  outputs (through the filter support) like in any convolution.
* All outputs are differentiable with respect to all inputs, to any order.
* Backends, chosen by :func:`sstkd_ops._backend.dispatch` from each op's table and
  ``backend=`` / ``$SSTKD_BACKEND``: ``"reference"`` (pure PyTorch,
  :mod:`sstkd_ops.contourlet.reference`, autograd through the ops) and the fused ``"cpu"``
  (C++), ``"cuda"`` and ``"triton"`` kernels (:mod:`sstkd_ops.contourlet.fused`), which run
  the same reference code traced into a per-plane program (:mod:`sstkd_ops.contourlet.tracer`)
  with its exact adjoint as the backward (:mod:`sstkd_ops.contourlet.autograd`). Size rules
  are in :mod:`sstkd_ops.contourlet.shapes`. Every backend is deterministic.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from .. import _backend
from .._checks import check_choice, check_int, check_tensor
from . import fused
from .filters import DFB_FILTERS, LP_FILTERS
from .reference import pyramid as _ref
from .shapes import dfb_band_shapes, dfb_image_shape, dfb_levels, dfb_multiple, pdfb_multiple

__all__ = ["lp_dec", "lp_rec", "dfb_dec", "dfb_rec", "pdfb_dec", "pdfb_rec", "pdfb_pad",
           "pdfb_multiple", "dfb_band_shapes", "LP_FILTERS", "DFB_FILTERS"]

_FUSED = ("cpu", "cuda", "triton")
# op -> backend -> implementation, all with the reference's arguments (already validated).
# The fused backends run the traced program of the same reference code.
_IMPLS = {
    name: {"reference": getattr(_ref, name),
           **{b: functools.partial(getattr(fused, name), b) for b in _FUSED}}
    for name in ("lp_dec", "lp_rec", "dfb_dec", "dfb_rec", "pdfb_dec", "pdfb_rec")
}


def _impl(fn: str, x: torch.Tensor, backend: str | None):
    return _backend.dispatch(fn, x, backend, _IMPLS[fn])


# ----------------------------------------------------------------------------- argument checks
def _check_nlevs(fn: str, nlevs: object) -> tuple[int, ...]:
    if isinstance(nlevs, (str, bytes)) or not isinstance(nlevs, Sequence):
        raise TypeError(f"{fn}: argument 'nlevs' expected a sequence of ints (DFB levels per "
                        f"pyramid level, coarse to fine), got {type(nlevs).__name__} "
                        f"({nlevs!r})")
    return tuple(check_int(fn, f"nlevs[{i}]", v, minimum=0) for i, v in enumerate(nlevs))


def _check_divisible(fn: str, name: str, x: torch.Tensor, multiple: int, why: str,
                     hint: str = "") -> None:
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(f"{fn}: argument '{name}' expected height and width that are positive "
                         f"multiples of {multiple} ({why}), got shape {tuple(x.shape)}{hint}")


def _check_like(fn: str, name: str, t: object, ref: torch.Tensor, shape: tuple[int, ...]):
    check_tensor(fn, name, t, ndim=4)
    if t.dtype != ref.dtype or t.device != ref.device:
        raise TypeError(f"{fn}: argument '{name}' expected dtype {ref.dtype} on {ref.device} "
                        f"(like the first input), got {t.dtype} on {t.device}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{fn}: argument '{name}' expected shape {tuple(shape)}, got "
                         f"{tuple(t.shape)}")


# ----------------------------------------------------------------------------- padding
def _reflect_index(n: int, total: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(total, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i >= n, period - i, i)


def pdfb_pad(x: torch.Tensor, nlevs: Sequence[int] = (3, 3),
             dfilt: str = "pkva") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` at the bottom and right by reflection to a size ``pdfb_dec`` accepts.

    Args:
        x: ``(B, C, H, W)`` float tensor.
        nlevs: the ``nlevs`` that will be passed to :func:`pdfb_dec`.
        dfilt: the ``dfilt`` that will be passed to :func:`pdfb_dec`.

    Returns:
        ``(x_padded, (H, W))``: ``x_padded`` is ``(B, C, H', W')`` with H', W' the next
        multiples of :func:`pdfb_multiple` (reflection without repeating the edge sample,
        e.g. ``[a, b, c] -> [a, b, c, b, a]``; it folds back again when the padding is longer
        than the image). ``(H, W)`` is the size to crop back to, e.g. with
        ``pdfb_rec(..., size=(H, W))``. Differentiable; returns ``x`` itself when no padding
        is needed.

    Example:
        >>> x = torch.rand(1, 1, 30, 45)
        >>> xp, size = pdfb_pad(x, (3, 3))
        >>> tuple(xp.shape), size
        ((1, 1, 32, 48), (30, 45))
    """
    fn = "pdfb_pad"
    check_tensor(fn, "x", x, ndim=4, min_size=(None, None, 1, 1))
    check_choice(fn, "dfilt", dfilt, DFB_FILTERS)
    m = pdfb_multiple(_check_nlevs(fn, nlevs), dfilt)
    h, w = x.shape[-2:]
    hp, wp = -(-h // m) * m, -(-w // m) * m
    if (hp, wp) == (h, w):
        return x, (h, w)
    rows = _reflect_index(h, hp, x.device)
    cols = _reflect_index(w, wp, x.device)
    return x[:, :, rows[:, None], cols[None, :]], (h, w)


# ----------------------------------------------------------------------------- public ops
def lp_dec(x: torch.Tensor, pfilt: str = "9-7", *,
           backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One Laplacian-pyramid level (toolbox ``lpdec``), periodic boundaries.

    ``coarse = down2(H x)`` keeping even rows/columns, ``detail = x - G up2(coarse)``, with the
    separable lowpass pair ``(h, g)`` of :func:`sstkd_ops.contourlet.filters.pfilters`.

    Args:
        x: ``(B, C, H, W)`` float32/float64, H and W even.
        pfilt: pyramid filter, one of :data:`LP_FILTERS`.
        backend: ``None``/``"auto"``/``"reference"`` (see :mod:`sstkd_ops._backend`).

    Returns:
        ``(coarse, detail)``: ``(B, C, H/2, W/2)`` and ``(B, C, H, W)``, dtype of ``x``.
        Differentiable in ``x``.

    Example:
        >>> c, d = lp_dec(torch.rand(2, 3, 16, 16))
        >>> tuple(c.shape), tuple(d.shape)
        ((2, 3, 8, 8), (2, 3, 16, 16))
    """
    fn = "lp_dec"
    check_tensor(fn, "x", x, ndim=4)
    check_choice(fn, "pfilt", pfilt, LP_FILTERS)
    _check_divisible(fn, "x", x, 2, "one pyramid level halves the size")
    return _impl(fn, x, backend)(x, pfilt)


def lp_rec(coarse: torch.Tensor, detail: torch.Tensor, pfilt: str = "9-7", *,
           backend: str | None = None) -> torch.Tensor:
    """Inverse of :func:`lp_dec` (toolbox ``lprec``, the dual-frame reconstruction).

    Args:
        coarse: ``(B, C, H/2, W/2)`` float32/float64.
        detail: ``(B, C, H, W)``, same dtype and device.
        pfilt: the pyramid filter used by :func:`lp_dec`.
        backend: see :func:`lp_dec`.

    Returns:
        ``(B, C, H, W)`` image, differentiable in both inputs.

    Example:
        >>> x = torch.rand(1, 2, 8, 12, dtype=torch.float64)
        >>> bool(torch.allclose(lp_rec(*lp_dec(x)), x))
        True
    """
    fn = "lp_rec"
    check_tensor(fn, "coarse", coarse, ndim=4, min_size=(None, None, 1, 1))
    b, c, h, w = coarse.shape
    _check_like(fn, "detail", detail, coarse, (b, c, 2 * h, 2 * w))
    check_choice(fn, "pfilt", pfilt, LP_FILTERS)
    return _impl(fn, coarse, backend)(coarse, detail, pfilt)


def dfb_dec(x: torch.Tensor, dfilt: str = "pkva", nlev: int = 3, *,
            backend: str | None = None) -> list[torch.Tensor]:
    """Directional filter bank decomposition into ``2**nlev`` subbands.

    Ladder implementation (toolbox ``dfbdec_l``) for ``'pkva'``, ``'pkva6'``, ``'pkva8'``,
    ``'pkva12'``; general tree (toolbox ``dfbdec``) for the other names, exactly as
    ``pdfbdec`` chooses. Subbands are in the toolbox's order (directions turning clockwise
    from 135 degrees). ``nlev = 0`` returns ``[x]`` (toolbox convention).

    Args:
        x: ``(B, C, H, W)`` float32/float64; H and W divisible by ``2**max(1, nlev-1)``
            (``nlev >= 1``), and by 4 for a 2-level general-tree DFB.
        dfilt: one of :data:`DFB_FILTERS`.
        nlev: number of tree levels, ``>= 0``.
        backend: see :func:`lp_dec`.

    Returns:
        List of ``2**nlev`` tensors ``(B, C, h_k, w_k)`` with shapes from
        :func:`dfb_band_shapes` (``nlev = 1``: ``(H/2, W)``; ``nlev >= 2``: the first half
        ``(H/2**(nlev-1), W/2)``, the second half ``(H/2, W/2**(nlev-1))``). Critically
        sampled; differentiable in ``x``.

    Example:
        >>> bands = dfb_dec(torch.rand(1, 1, 32, 32), "pkva", 3)
        >>> [tuple(b.shape[-2:]) for b in bands][::4]
        [(8, 16), (16, 8)]
    """
    fn = "dfb_dec"
    check_tensor(fn, "x", x, ndim=4, min_size=(None, None, 1, 1))
    check_choice(fn, "dfilt", dfilt, DFB_FILTERS)
    nlev = check_int(fn, "nlev", nlev, minimum=0)
    if nlev:
        _check_divisible(fn, "x", x, dfb_multiple(nlev, dfilt),
                         f"needed by nlev={nlev}, dfilt={dfilt!r}")
    return _impl(fn, x, backend)(x, dfilt, nlev)


def _check_dfb_bands(fn: str, name: str, bands: object, ref: torch.Tensor | None = None,
                     size: tuple[int, int] | None = None) -> tuple[list[torch.Tensor], int]:
    """Validate a DFB subband list; return it with its level count."""
    if not isinstance(bands, Sequence) or isinstance(bands, (str, bytes)) or not bands:
        raise TypeError(f"{fn}: argument '{name}' expected a non-empty list of tensors, got "
                        f"{type(bands).__name__}")
    count = len(bands)
    nlev = dfb_levels(count)
    if count != 2 ** nlev:
        raise ValueError(f"{fn}: argument '{name}' expected 2**nlev subbands, got {count}")
    first = check_tensor(fn, f"{name}[0]", bands[0], ndim=4, min_size=(None, None, 1, 1))
    ref = first if ref is None else ref
    if size is None:
        size = dfb_image_shape(tuple(first.shape[-2:]), nlev)
    for k, (band, (h, w)) in enumerate(zip(bands, dfb_band_shapes(*size, nlev))):
        _check_like(fn, f"{name}[{k}]", band, ref, (*ref.shape[:2], h, w))
    return list(bands), nlev


def dfb_rec(subbands: Sequence[torch.Tensor], dfilt: str = "pkva", *,
            backend: str | None = None) -> torch.Tensor:
    """Inverse of :func:`dfb_dec` (toolbox ``dfbrec_l`` / ``dfbrec``).

    Args:
        subbands: ``2**nlev`` tensors ``(B, C, h_k, w_k)`` as returned by :func:`dfb_dec`.
        dfilt: the filter used by :func:`dfb_dec`.
        backend: see :func:`lp_dec`.

    Returns:
        ``(B, C, H, W)``, differentiable in every subband.

    Example:
        >>> x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
        >>> bool(torch.allclose(dfb_rec(dfb_dec(x, "haar", 2), "haar"), x))
        True
    """
    fn = "dfb_rec"
    check_choice(fn, "dfilt", dfilt, DFB_FILTERS)
    bands, _ = _check_dfb_bands(fn, "subbands", subbands)
    return _impl(fn, bands[0], backend)(bands, dfilt)


def pdfb_dec(x: torch.Tensor, pfilt: str = "9-7", dfilt: str = "pkva",
             nlevs: Sequence[int] = (3, 3), *, pad: bool = False,
             backend: str | None = None) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Contourlet (pyramidal directional filter bank) decomposition, toolbox ``pdfbdec``.

    ``len(nlevs)`` Laplacian-pyramid levels; pyramid level ``i`` (coarse to fine) splits its
    bandpass image with an ``nlevs[i]``-level DFB. ``nlevs[i] = 0`` means one level of the
    separable critically sampled 2-D wavelet filter bank (toolbox ``wfb2dec`` with the
    ``pfilt`` pair) instead, giving 3 subbands ``(LH, HL, HH)``.

    Args:
        x: ``(B, C, H, W)`` float32/float64. H and W must be multiples of
            ``pdfb_multiple(nlevs, dfilt)`` (``= max_i 2**(J-1-i) * 2**max(1, nlevs[i]-1)``,
            ``J = len(nlevs)``; 8 for the default ``(3, 3)``) unless ``pad=True``.
        pfilt: pyramid filter, one of :data:`LP_FILTERS` (default ``'9-7'``).
        dfilt: directional filter, one of :data:`DFB_FILTERS` (default ``'pkva'``, ladder).
        nlevs: DFB levels per pyramid level, coarse to fine, ints ``>= 0``.
        pad: reflect-pad the bottom/right edges to the next valid size first (see
            :func:`pdfb_pad`); the coefficients then describe the padded image and
            ``pdfb_rec(..., size=(H, W))`` crops the reconstruction back.
        backend: see :func:`lp_dec`.

    Returns:
        ``(lowpass, bands)``: ``lowpass`` is ``(B, C, H/2**J, W/2**J)``; ``bands[i]`` is the
        list of subbands of pyramid level ``i`` (coarse to fine) in the toolbox order, each
        ``(B, C, h, w)`` with the shapes of :func:`dfb_band_shapes` for an image of
        ``(H/2**(J-1-i), W/2**(J-1-i))``, or three ``(H/2**(J-i), W/2**(J-i))`` wavelet
        bands. Differentiable in ``x``; float64 results match the toolbox to ~1e-14.

    Example:
        >>> low, bands = pdfb_dec(torch.rand(2, 3, 64, 64), nlevs=(3, 3))
        >>> tuple(low.shape), [len(b) for b in bands], tuple(bands[1][0].shape)
        ((2, 3, 16, 16), [8, 8], (2, 3, 16, 32))
    """
    fn = "pdfb_dec"
    check_tensor(fn, "x", x, ndim=4, min_size=(None, None, 1, 1))
    check_choice(fn, "pfilt", pfilt, LP_FILTERS)
    check_choice(fn, "dfilt", dfilt, DFB_FILTERS)
    nlevs = _check_nlevs(fn, nlevs)
    if pad:
        x, _ = pdfb_pad(x, nlevs, dfilt)
    _check_divisible(fn, "x", x, pdfb_multiple(nlevs, dfilt),
                     f"needed by nlevs={list(nlevs)}, dfilt={dfilt!r}",
                     "; pad it with pdfb_pad(x, nlevs, dfilt) or pass pad=True")
    return _impl(fn, x, backend)(x, pfilt, dfilt, nlevs)


def pdfb_rec(lowpass: torch.Tensor, bands: Sequence[Sequence[torch.Tensor]],
             pfilt: str = "9-7", dfilt: str = "pkva", *, size: tuple[int, int] | None = None,
             backend: str | None = None) -> torch.Tensor:
    """Inverse of :func:`pdfb_dec` (toolbox ``pdfbrec``).

    A pyramid level with 3 subbands is read as a wavelet level (``nlevs[i] = 0``), any other
    count ``2**l`` as an ``l``-level DFB, as in the toolbox.

    Args:
        lowpass: ``(B, C, h, w)`` float32/float64, from :func:`pdfb_dec`.
        bands: per pyramid level (coarse to fine) the list of its subbands, shapes as returned
            by :func:`pdfb_dec`, same dtype and device as ``lowpass``.
        pfilt, dfilt: the filters used by :func:`pdfb_dec`.
        size: optional ``(H, W)`` to crop the result to (undoes ``pad=True``/:func:`pdfb_pad`).
        backend: see :func:`lp_dec`.

    Returns:
        ``(B, C, h * 2**J, w * 2**J)`` image (cropped to ``size`` if given), differentiable in
        every input.

    Example:
        >>> x = torch.rand(1, 1, 30, 40, dtype=torch.float64)
        >>> low, bands = pdfb_dec(x, nlevs=(2, 3), pad=True)
        >>> bool(torch.allclose(pdfb_rec(low, bands, size=(30, 40)), x))
        True
    """
    fn = "pdfb_rec"
    check_tensor(fn, "lowpass", lowpass, ndim=4, min_size=(None, None, 1, 1))
    check_choice(fn, "pfilt", pfilt, LP_FILTERS)
    check_choice(fn, "dfilt", dfilt, DFB_FILTERS)
    if not isinstance(bands, Sequence) or isinstance(bands, (str, bytes)):
        raise TypeError(f"{fn}: argument 'bands' expected a list (one entry per pyramid level) "
                        f"of lists of tensors, got {type(bands).__name__}")
    h, w = lowpass.shape[-2:]
    checked = []
    for i, level in enumerate(bands):
        h, w = 2 * h, 2 * w
        if isinstance(level, Sequence) and len(level) == 3:
            for k, band in enumerate(level):
                _check_like(fn, f"bands[{i}][{k}]", band, lowpass,
                            (*lowpass.shape[:2], h // 2, w // 2))
            checked.append(list(level))
        else:
            checked.append(_check_dfb_bands(fn, f"bands[{i}]", level, lowpass, (h, w))[0])
    if size is not None and (
            not isinstance(size, Sequence) or len(size) != 2
            or not all(isinstance(s, int) and 0 < s <= m for s, m in zip(size, (h, w)))):
        raise ValueError(f"{fn}: argument 'size' expected (H, W) with 0 < H <= {h} and "
                         f"0 < W <= {w}, got {size!r}")
    out = _impl(fn, lowpass, backend)(lowpass, checked, pfilt, dfilt)
    return out if size is None else out[..., :size[0], :size[1]]
