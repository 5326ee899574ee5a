"""Fused implementations of the contourlet ops (``cpu``, ``cuda``, ``triton``).

Each flattens its ``(B, C, h, w)`` inputs to planes, runs the op's traced program through the
one custom op :func:`sstkd_ops.contourlet.autograd.contourlet_apply`, and splits the planes
back into the outputs. Same arguments as the reference implementations (already validated by
:mod:`sstkd_ops.contourlet.ops`); the first argument is the backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .autograd import contourlet_apply
from .shapes import dfb_levels, num_bands, op_output_shapes, pdfb_levels


def _apply(op: str, inputs: Sequence[torch.Tensor], backend: str, pfilt: str = "",
           dfilt: str = "", nlevs: Sequence[int] = ()) -> list[torch.Tensor]:
    """Flatten ``(B, C, h, w)`` inputs to planes, run ``op``, split and reshape the outputs."""
    b, c = inputs[0].shape[:2]
    shapes = [int(s) for t in inputs for s in t.shape[-2:]]
    planes = b * c
    flat = [t.reshape(planes, t.shape[-2] * t.shape[-1]) for t in inputs]
    x = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
    out = contourlet_apply(x, op, shapes, pfilt, dfilt, list(nlevs), backend, False)
    pairs = [(shapes[i], shapes[i + 1]) for i in range(0, len(shapes), 2)]
    outs, start = [], 0
    for h, w in op_output_shapes(op, pairs, nlevs):
        outs.append(out[:, start:start + h * w].reshape(b, c, h, w))
        start += h * w
    return outs


def lp_dec(backend: str, x: torch.Tensor, pfilt: str) -> tuple[torch.Tensor, torch.Tensor]:
    c, d = _apply("lp_dec", [x], backend, pfilt)
    return c, d


def lp_rec(backend: str, coarse: torch.Tensor, detail: torch.Tensor, pfilt: str) -> torch.Tensor:
    return _apply("lp_rec", [coarse, detail], backend, pfilt)[0]


def dfb_dec(backend: str, x: torch.Tensor, dfilt: str, nlev: int) -> list[torch.Tensor]:
    return _apply("dfb_dec", [x], backend, dfilt=dfilt, nlevs=(nlev,))


def dfb_rec(backend: str, bands: Sequence[torch.Tensor], dfilt: str) -> torch.Tensor:
    return _apply("dfb_rec", list(bands), backend, dfilt=dfilt, nlevs=(dfb_levels(len(bands)),))[0]


def pdfb_dec(backend: str, x: torch.Tensor, pfilt: str, dfilt: str, nlevs: Sequence[int]
             ) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    outs = _apply("pdfb_dec", [x], backend, pfilt, dfilt, nlevs)
    bands, i = [], 1
    for n in nlevs:
        bands.append(outs[i:i + num_bands(n)])
        i += num_bands(n)
    return outs[0], bands


def pdfb_rec(backend: str, lowpass: torch.Tensor, bands: Sequence[Sequence[torch.Tensor]],
             pfilt: str, dfilt: str) -> torch.Tensor:
    nlevs = pdfb_levels([len(level) for level in bands])
    flat = [lowpass] + [t for level in bands for t in level]
    return _apply("pdfb_rec", flat, backend, pfilt, dfilt, nlevs)[0]
