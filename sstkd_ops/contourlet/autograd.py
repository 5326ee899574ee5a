"""Fused contourlet backends (``cpu``, ``cuda``, ``triton``): compiled programs, one op.

Every contourlet op is the fixed linear map of a traced program
(:mod:`sstkd_ops._contourlet_programs`). ``sstkd_ops::contourlet_apply`` runs it on the
``(planes, numel)`` layout: the program is looked up from the op's plain arguments (strings
and ints), so ``torch.compile(fullgraph=True)`` sees one opaque op, and the registered
backward is the same op with ``transpose`` flipped -- the exact adjoint, which needs nothing
but shapes (no tensor is saved, so calls on inputs without ``requires_grad`` keep nothing
alive) and whose own backward is the forward again (gradients of any order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..linprog.runtime import packed_on, raw_kernel
from .tracer import num_bands, op_output_shapes, programs


def _program(op: str, shapes: list[int], pfilt: str, dfilt: str, nlevs: list[int],
             transpose: bool):
    pairs = tuple((shapes[i], shapes[i + 1]) for i in range(0, len(shapes), 2))
    prog, adj = programs(op, pairs, pfilt, dfilt, tuple(nlevs))
    return (adj, prog) if transpose else (prog, adj)


@torch.library.custom_op("sstkd_ops::contourlet_apply", mutates_args=())
def contourlet_apply(x: torch.Tensor, op: str, shapes: list[int], pfilt: str, dfilt: str,
                     nlevs: list[int], backend: str, transpose: bool) -> torch.Tensor:
    """Run contourlet op ``op`` (or its transpose) on planes ``x (P, numel)``."""
    prog, _ = _program(op, shapes, pfilt, dfilt, nlevs, transpose)
    if x.shape[1] != prog.in_numel:
        raise ValueError(f"contourlet_apply: x has {x.shape[1]} values per plane, the program "
                         f"expects {prog.in_numel}")
    instr, tables, coefs, ws_total = packed_on(prog, x.device)
    return raw_kernel(backend)(x.contiguous(), instr, tables, coefs, prog.out_numel, ws_total)


@contourlet_apply.register_fake
def _(x, op, shapes, pfilt, dfilt, nlevs, backend, transpose):
    prog, _ = _program(op, shapes, pfilt, dfilt, nlevs, transpose)
    return x.new_empty((x.shape[0], prog.out_numel))


def _setup(ctx, inputs, output):
    ctx.args = inputs[1:]


def _backward(ctx, grad):
    op, shapes, pfilt, dfilt, nlevs, backend, transpose = ctx.args
    return (contourlet_apply(grad, op, shapes, pfilt, dfilt, nlevs, backend, not transpose),
            None, None, None, None, None, None, None)


contourlet_apply.register_autograd(_backward, setup_context=_setup)


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


def implementations(backend: str) -> dict:
    """The fused implementations of the six public ops for ``backend``, with the reference
    signatures (arguments already validated by :mod:`sstkd_ops.contourlet`)."""

    def lp_dec(x, pfilt):
        c, d = _apply("lp_dec", [x], backend, pfilt)
        return c, d

    def lp_rec(coarse, detail, pfilt):
        return _apply("lp_rec", [coarse, detail], backend, pfilt)[0]

    def dfb_dec(x, dfilt, nlev):
        return _apply("dfb_dec", [x], backend, dfilt=dfilt, nlevs=(nlev,))

    def dfb_rec(bands, dfilt):
        nlev = len(bands).bit_length() - 1
        return _apply("dfb_rec", list(bands), backend, dfilt=dfilt, nlevs=(nlev,))[0]

    def pdfb_dec(x, pfilt, dfilt, nlevs):
        outs = _apply("pdfb_dec", [x], backend, pfilt, dfilt, nlevs)
        bands, i = [], 1
        for n in nlevs:
            bands.append(outs[i:i + num_bands(n)])
            i += num_bands(n)
        return outs[0], bands

    def pdfb_rec(lowpass, bands, pfilt, dfilt):
        nlevs = tuple(0 if len(level) == 3 else len(level).bit_length() - 1 for level in bands)
        flat = [lowpass] + [t for level in bands for t in level]
        return _apply("pdfb_rec", flat, backend, pfilt, dfilt, nlevs)[0]

    return {"lp_dec": lp_dec, "lp_rec": lp_rec, "dfb_dec": dfb_dec, "dfb_rec": dfb_rec,
            "pdfb_dec": pdfb_dec, "pdfb_rec": pdfb_rec}
