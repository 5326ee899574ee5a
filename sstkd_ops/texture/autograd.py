"""Autograd and fake (meta) registration of the fused texture-statistics building blocks.

The compiled ops ``torch.ops.sstkd_ops.texstat_*`` (schemas in ``csrc/texture/texture_stats.cpp``,
kernels in ``csrc/texture/cpu`` and ``csrc/texture/cuda``) and the Triton ops of
:mod:`sstkd_ops.texture.triton` (same signatures, suffix ``_triton``) get their hand-written
backward and their fake implementation here, once for both, so that
``torch.compile(fullgraph=True)`` and ``torch.library.opcheck`` work. :func:`register`, called
once by ``sstkd_ops.texture``'s ``__init__``, registers them. The fused implementations
(:mod:`sstkd_ops.texture.fused`) compose them:

* ``cos_sim``: ``x (B, C, H, W) -> s (B, H, W)`` (two passes over x forward, two backward);
* ``qco``: STLNet's levels and (co-)counts of ``s`` per group;
* ``qco_tem``: the TEM product without the code tensor;
* ``dtiem``: levels, histogram, denoising, equalised map and co-occurrence of ``s``, with
  optional importance weights (no gradient).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

import torch

from .. import _backend

KINDS = ("cos_sim", "qco", "qco_tem", "dtiem")
_NAMES = tuple(f"texstat_{k}" for k in KINDS)
_TRITON = __package__ + ".triton"
_registered = False
_triton_registered = False


def register() -> None:
    """Register the backward and fake functions of every building block that can run here:
    the compiled ops when the extension is loaded, the Triton ops when Triton can run (a GPU,
    or the interpreter). Done once, at import, so that dispatch under ``torch.compile`` is
    plain reads."""
    ensure_registered()
    if _backend.has_triton() and (torch.cuda.is_available() or _backend.triton_interpreted()):
        register_triton()


def register_triton() -> ModuleType:
    """Import the Triton building blocks (:mod:`sstkd_ops.texture.triton`, which defines them
    as custom ops) and register their backward and fake functions once; return the module."""
    global _triton_registered
    module = importlib.import_module(_TRITON)
    if not _triton_registered:
        for kind in KINDS:
            wire(kind, getattr(module, f"texstat_{kind}"),
                 getattr(module, f"texstat_{kind}_backward"))
        _triton_registered = True
    return module


def triton_blocks() -> ModuleType:
    """The Triton building blocks, registered (on first eager use if Triton could not run when
    the package was imported, e.g. ``TRITON_INTERPRET`` set later)."""
    module = sys.modules.get(_TRITON)
    return module if module is not None and _triton_registered else register_triton()


def compiled_ops_present() -> bool:
    """True when the compiled ``texstat_*`` ops are loaded (importing ``sstkd_ops._C``)."""
    _backend.extension()
    return all(hasattr(torch.ops.sstkd_ops, n) for n in _NAMES)


def ensure_registered() -> bool:
    """Register autograd and fake functions of the compiled ops once; False if not loaded."""
    global _registered
    if _registered:
        return True
    if not compiled_ops_present():
        return False
    ops = torch.ops.sstkd_ops
    for kind in KINDS:
        name = f"sstkd_ops::texstat_{kind}"
        wire(kind, name, name + "_backward", getattr(ops, f"texstat_{kind}_backward"))
    _registered = True
    return True


def wire(kind: str, op, backward_op, run_backward: Callable | None = None) -> None:
    """Register the fake functions and the autograd formula of one building block.

    Args:
        kind: one of :data:`KINDS`.
        op, backward_op: the op and its gradient op (qualified name or ``custom_op`` object).
        run_backward: callable running ``backward_op`` (default: ``backward_op`` itself).
    """
    fake, backward_fake, setup, backward_with = _GLUE[kind]
    torch.library.register_fake(op)(fake)
    torch.library.register_fake(backward_op)(backward_fake)
    torch.library.register_autograd(op, backward_with(run_backward or backward_op),
                                    setup_context=setup)


def _zeros_if_none(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _like_input(*args):
    return torch.empty_like(args[1], memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------- cosine similarity
def _cos_fake(x, cells):
    B, C, H, W = x.shape
    G = cells * cells
    return x.new_empty(B, H, W), x.new_empty(B, H, W), x.new_empty(B, G, C), x.new_empty(B, G)


def _cos_setup(ctx, inputs, output):
    x, cells = inputs
    s, pnorm, gunit, gnorm = output
    ctx.mark_non_differentiable(pnorm, gunit, gnorm)
    ctx.save_for_backward(x, s, pnorm, gunit, gnorm)
    ctx.cells = cells


def _cos_backward_with(backward_op):
    def backward(ctx, grad_s, *_):
        x, s, pnorm, gunit, gnorm = ctx.saved_tensors
        grad_s = _zeros_if_none(grad_s, s)
        return backward_op(grad_s, x, s, pnorm, gunit, gnorm, ctx.cells), None

    return backward


# ----------------------------------------------------------------------------- STLNet QCO
def _qco_fake(s, num_levels, cooc):
    G = s.shape[0]
    shape = (G, num_levels, num_levels) if cooc else (G, num_levels)
    return (s.new_empty(G, num_levels), s.new_empty(shape), s.new_empty(shape),
            s.new_empty(G, 2, dtype=torch.long))


def _qco_backward_fake(grad_levels, grad_sta, s, levels, counts, extrema, cooc):
    return torch.empty_like(s, memory_format=torch.contiguous_format)


def _qco_setup(ctx, inputs, output):
    s, _, cooc = inputs
    levels, sta, counts, extrema = output
    ctx.mark_non_differentiable(counts, extrema)
    ctx.save_for_backward(s, levels, sta, counts, extrema)
    ctx.cooc = cooc


def _qco_backward_with(backward_op):
    def backward(ctx, grad_levels, grad_sta, *_):
        s, levels, sta, counts, extrema = ctx.saved_tensors
        grad_s = backward_op(_zeros_if_none(grad_levels, levels), _zeros_if_none(grad_sta, sta),
                             s, levels, counts, extrema, ctx.cooc)
        return grad_s, None, None

    return backward


# ---------------------------------------------------------------------------- TEM product
def _tem_fake(f, s, levels, delta):
    return f.new_empty(f.shape[0], f.shape[1], s.shape[1])


def _tem_backward_fake(grad_out, f, s, levels, delta):
    return (torch.empty_like(f, memory_format=torch.contiguous_format), f.new_empty(s.shape),
            f.new_empty(levels.shape))


def _tem_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _tem_backward_with(backward_op):
    def backward(ctx, grad_out):
        f, s, levels, delta = ctx.saved_tensors
        gf, gs, gl = backward_op(grad_out, f, s, levels, delta)
        return gf, gs.to(s.dtype), gl.to(levels.dtype), None

    return backward


# ---------------------------------------------------------------------------------- DTIEM
def _dtiem_fake(s, num_levels, iters, theta, offsets, weights=None):
    B, N, D = s.shape[0], num_levels, len(offsets) // 2
    return (s.new_empty(s.shape), s.new_empty(B, D, N, N), s.new_empty(B, N), s.new_empty(B, N),
            s.new_empty(B, N))


def _dtiem_backward_fake(grad_q, grad_cooc, grad_hist, s, levels, raw_hist, theta, offsets,
                         weights=None):
    return torch.empty_like(s, memory_format=torch.contiguous_format)


def _dtiem_setup(ctx, inputs, output):
    s, _, _, theta, offsets = inputs[:5]
    weights = inputs[5] if len(inputs) > 5 else None  # importance weights: no gradient
    q, cooc, hist, levels, raw = output
    ctx.mark_non_differentiable(levels, raw)
    ctx.save_for_backward(s, levels, raw, weights)
    ctx.theta, ctx.offsets, ctx.cooc_shape = theta, offsets, cooc.shape
    ctx.num_inputs = len(inputs)


def _dtiem_backward_with(backward_op):
    def backward(ctx, grad_q, grad_cooc, grad_hist, *_):
        s, levels, raw, weights = ctx.saved_tensors
        grad_q = _zeros_if_none(grad_q, s)
        grad_hist = _zeros_if_none(grad_hist, levels)
        if grad_cooc is None:
            grad_cooc = s.new_zeros(ctx.cooc_shape)
        args = (grad_q, grad_cooc, grad_hist, s, levels, raw, ctx.theta, ctx.offsets)
        grad_s = backward_op(*args) if weights is None else backward_op(*args, weights)
        return (grad_s,) + (None,) * (ctx.num_inputs - 1)

    return backward


# kind -> (fake, backward fake, setup_context, backward factory)
_GLUE = {
    "cos_sim": (_cos_fake, _like_input, _cos_setup, _cos_backward_with),
    "qco": (_qco_fake, _qco_backward_fake, _qco_setup, _qco_backward_with),
    "qco_tem": (_tem_fake, _tem_backward_fake, _tem_setup, _tem_backward_with),
    "dtiem": (_dtiem_fake, _dtiem_backward_fake, _dtiem_setup, _dtiem_backward_with),
}
