"""Pure-PyTorch reference of the contourlet transform (Contourlet Toolbox v2.0, M. N. Do).

Works on any device, float32/float64, is differentiable by autograd, and matches the
toolbox's ``lpdec``/``lprec``, ``wfb2dec``/``wfb2rec``, ``dfbdec(_l)``/``dfbrec(_l)`` and
``pdfbdec``/``pdfbrec`` in float64 (golden vectors in ``shared/golden/contourlet``).
Inputs are ``(B, C, H, W)``; every (batch, channel) plane is transformed independently
(internally the planes are stacked as ``(B*C, H, W)``). Boundary handling is periodic.
No argument checking happens here: the public wrappers in :mod:`sstkd_ops.contourlet` do it.
"""

from __future__ import annotations

import torch

from .. import filters as _filters
from .dfb import dfb_dec as _dfb_dec_planes
from .dfb import dfb_rec as _dfb_rec_planes
from .periodic import extend, sefilter2, upsample

__all__ = ["lp_dec", "lp_rec", "dfb_dec", "dfb_rec", "pdfb_dec", "pdfb_rec", "lp_dec_planes",
           "lp_rec_planes", "pdfb_dec_planes", "pdfb_rec_planes"]


def _planes(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    b, c = x.shape[:2]
    return x.reshape(b * c, *x.shape[2:]), (b, c)


def _unplanes(x: torch.Tensor, bc: tuple[int, int]) -> torch.Tensor:
    return x.reshape(*bc, *x.shape[1:])


# ----------------------------------------------------------------------------- Laplacian pyramid
def lp_dec_planes(x, h, g):
    """One LP level of planes ``x (P, H, W)`` with the lowpass pair ``(h, g)``: (coarse,
    detail)."""
    # contiguous(): in a traced program the coarse plane gets a region of its own, so the next
    # level does not keep the full-size filtered plane alive for a quarter of its samples
    c = sefilter2(x, h, h)[:, 0::2, 0::2].contiguous()
    adj = (g.numel() + 1) % 2
    d = x - sefilter2(upsample(c, None), g, g, "per", (adj, adj))
    return c, d


def lp_rec_planes(c, d, h, g):
    """Inverse of :func:`lp_dec_planes` (dual-frame reconstruction) on planes."""
    xhi = sefilter2(d, h, h)[:, 0::2, 0::2]
    adj = (g.numel() + 1) % 2
    return sefilter2(upsample(c - xhi, None), g, g, "per", (adj, adj)) + d


def lp_dec(x: torch.Tensor, pfilt: str = "9-7") -> tuple[torch.Tensor, torch.Tensor]:
    """One Laplacian-pyramid level: coarse ``(B, C, H/2, W/2)`` and detail ``(B, C, H, W)``."""
    h, g = _filters.pfilters(pfilt, x.dtype, x.device)
    xp, bc = _planes(x)
    c, d = lp_dec_planes(xp, h, g)
    return _unplanes(c, bc), _unplanes(d, bc)


def lp_rec(c: torch.Tensor, d: torch.Tensor, pfilt: str = "9-7") -> torch.Tensor:
    """Inverse of :func:`lp_dec` (the toolbox's dual-frame reconstruction ``lprec``)."""
    h, g = _filters.pfilters(pfilt, d.dtype, d.device)
    cp, bc = _planes(c)
    return _unplanes(lp_rec_planes(cp, _planes(d)[0], h, g), bc)


# ----------------------------------------------------------------------------- 2-D wavelet split
def _wavelet_filters(h: torch.Tensor, g: torch.Tensor):
    """Analysis highpass h1 and synthesis highpass g1 with their left margins (toolbox)."""
    lh, lg = h.numel(), g.numel()
    c = (lg + 1) // 2 + (1 if lg % 2 == 0 else 0)
    sign = torch.tensor([(-1.0) ** (k - c) for k in range(1, lg + 1)], dtype=g.dtype,
                        device=g.device)
    h1 = -g * sign
    c2 = (lh + 1) // 2
    sign2 = torch.tensor([(-1.0) ** (k - c2) for k in range(1, lh + 1)], dtype=h.dtype,
                         device=h.device)
    g1 = -h * sign2
    return (h, lh // 2), (h1, lg - c + 1), (g, (lg - 1) // 2), (g1, lh - (c2 + 1))


def _filt(x: torch.Tensor, f: torch.Tensor, left: int, dim: int) -> torch.Tensor:
    """Periodic 1-D convolution along ``dim`` with ``left`` samples of left margin."""
    right = f.numel() - left - 1
    if dim == -1:
        xe = extend(x, 0, 0, left, right)[:, None]
        w = torch.flip(f, (0,)).to(x.dtype).view(1, 1, 1, -1)
    else:
        xe = extend(x, left, right, 0, 0)[:, None]
        w = torch.flip(f, (0,)).to(x.dtype).view(1, 1, -1, 1)
    return torch.nn.functional.conv2d(xe, w)[:, 0]


def _wfb_dec_planes(x, h, g):
    (h0, e0), (h1, e1), _, _ = _wavelet_filters(h, g)
    xl = _filt(x, h0, e0, -1)[:, :, 0::2]
    xh = _filt(x, h1, e1, -1)[:, :, 0::2]
    ll = _filt(xl, h0, e0, -2)[:, 0::2]
    lh = _filt(xl, h1, e1, -2)[:, 0::2]
    hl = _filt(xh, h0, e0, -2)[:, 0::2]
    hh = _filt(xh, h1, e1, -2)[:, 0::2]
    return ll, lh, hl, hh


def _wfb_rec_planes(ll, lh, hl, hh, h, g):
    _, _, (g0, e0), (g1, e1) = _wavelet_filters(h, g)
    xl = _filt(upsample(ll, -2), g0, e0, -2) + _filt(upsample(lh, -2), g1, e1, -2)
    xh = _filt(upsample(hl, -2), g0, e0, -2) + _filt(upsample(hh, -2), g1, e1, -2)
    return _filt(upsample(xl, -1), g0, e0, -1) + _filt(upsample(xh, -1), g1, e1, -1)


# ----------------------------------------------------------------------------- DFB / pyramid
def dfb_dec(x: torch.Tensor, dfilt: str = "pkva", nlev: int = 3) -> list[torch.Tensor]:
    """``2**nlev`` directional subbands of ``(B, C, H, W)`` (ladder path for ``pkva*``)."""
    xp, bc = _planes(x)
    return [_unplanes(t, bc) for t in _dfb_dec_planes(xp, dfilt, nlev)]


def dfb_rec(subbands: list[torch.Tensor], dfilt: str = "pkva") -> torch.Tensor:
    """Inverse of :func:`dfb_dec`."""
    bc = subbands[0].shape[:2]
    return _unplanes(_dfb_rec_planes([_planes(t)[0] for t in subbands], dfilt), bc)


def pdfb_dec_planes(x, pfilt: str, dfilt: str, nlevs: tuple[int, ...]):
    """:func:`pdfb_dec` on planes ``(N, H, W)``: ``(lowpass, [bands of each level])``."""
    h, g = _filters.pfilters(pfilt, x.dtype, x.device)
    cur = x
    bands = []
    for nlev in reversed(tuple(nlevs)):
        if nlev == 0:
            cur, *dirs = _wfb_dec_planes(cur, h, g)
        else:
            cur, detail = lp_dec_planes(cur, h, g)
            dirs = _dfb_dec_planes(detail, dfilt, nlev)
        bands.append(list(dirs))
    return cur, bands[::-1]


def pdfb_rec_planes(lowpass, bands, pfilt: str, dfilt: str):
    """:func:`pdfb_rec` on planes: a level with 3 subbands is a wavelet level."""
    h, g = _filters.pfilters(pfilt, lowpass.dtype, lowpass.device)
    cur = lowpass
    for parts in bands:
        if len(parts) == 3:
            cur = _wfb_rec_planes(cur, *parts, h, g)
        else:
            cur = lp_rec_planes(cur, _dfb_rec_planes(list(parts), dfilt), h, g)
    return cur


def pdfb_dec(x: torch.Tensor, pfilt: str = "9-7", dfilt: str = "pkva",
             nlevs: tuple[int, ...] = (3, 3)) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Toolbox ``pdfbdec``: lowpass and, per pyramid level coarse to fine, its subbands."""
    xp, bc = _planes(x)
    low, bands = pdfb_dec_planes(xp, pfilt, dfilt, nlevs)
    return _unplanes(low, bc), [[_unplanes(t, bc) for t in level] for level in bands]


def pdfb_rec(lowpass: torch.Tensor, bands: list[list[torch.Tensor]], pfilt: str = "9-7",
             dfilt: str = "pkva") -> torch.Tensor:
    """Toolbox ``pdfbrec``: a level with 3 subbands is a wavelet level, else a DFB level."""
    bc = lowpass.shape[:2]
    parts = [[_planes(t)[0] for t in level] for level in bands]
    return _unplanes(pdfb_rec_planes(_planes(lowpass)[0], parts, pfilt, dfilt), bc)
