"""Autograd and fake (meta) registration of the fused texture-statistics building blocks.

The compiled ops ``torch.ops.sstkd_ops.texstat_*`` (schemas in ``csrc/texture_stats.cpp``,
kernels in ``csrc/cpu`` and ``csrc/cuda``) get their hand-written backward and their fake
implementation here, so that ``torch.compile(fullgraph=True)`` and ``torch.library.opcheck``
work. The public functions in :mod:`sstkd_ops.texture_stats` compose them:

* ``cos_sim``: ``x (B, C, H, W) -> s (B, H, W)`` (two passes over x forward, two backward);
* ``qco``: STLNet's levels and (co-)counts of ``s`` per group;
* ``qco_tem``: the TEM product without the code tensor;
* ``dtiem``: levels, histogram, denoising, equalised map and co-occurrence of ``s``.
"""

from __future__ import annotations

import torch

from . import _backend

_NAMES = ("texstat_cos_sim", "texstat_qco", "texstat_qco_tem", "texstat_dtiem")
_registered = False


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
    _register()
    _registered = True
    return True


def _zeros_if_none(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


# DTIEM's fake, set-up and backward are shared by the compiled op and the Triton op
# (sstkd_ops.triton.texture_stats), which have the same signature.
def dtiem_fake(s, num_levels, iters, theta, offsets):
    B, N, D = s.shape[0], num_levels, len(offsets) // 2
    return (s.new_empty(s.shape), s.new_empty(B, D, N, N), s.new_empty(B, N), s.new_empty(B, N),
            s.new_empty(B, N))


def dtiem_backward_fake(grad_q, grad_cooc, grad_hist, s, levels, raw_hist, theta, offsets):
    return torch.empty_like(s, memory_format=torch.contiguous_format)


def dtiem_setup(ctx, inputs, output):
    s, _, _, theta, offsets = inputs
    q, cooc, hist, levels, raw = output
    ctx.mark_non_differentiable(levels, raw)
    ctx.save_for_backward(s, levels, raw)
    ctx.theta, ctx.offsets, ctx.cooc_shape = theta, offsets, cooc.shape


def dtiem_backward_with(backward_op):
    """The autograd backward of a DTIEM op whose gradient kernel is ``backward_op``."""

    def dtiem_backward(ctx, grad_q, grad_cooc, grad_hist, *_):
        s, levels, raw = ctx.saved_tensors
        grad_q = _zeros_if_none(grad_q, s)
        grad_hist = _zeros_if_none(grad_hist, levels)
        if grad_cooc is None:
            grad_cooc = s.new_zeros(ctx.cooc_shape)
        grad_s = backward_op(grad_q, grad_cooc, grad_hist, s, levels, raw, ctx.theta,
                             ctx.offsets)
        return grad_s, None, None, None, None

    return dtiem_backward


def _register() -> None:
    lib = "sstkd_ops::"
    ops = torch.ops.sstkd_ops

    # ------------------------------------------------------------------ cosine similarity
    @torch.library.register_fake(lib + "texstat_cos_sim")
    def _(x, cells):
        B, C, H, W = x.shape
        G = cells * cells
        return (x.new_empty(B, H, W), x.new_empty(B, H, W), x.new_empty(B, G, C),
                x.new_empty(B, G))

    @torch.library.register_fake(lib + "texstat_cos_sim_backward")
    def _(grad_s, x, s, pnorm, gunit, gnorm, cells):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def cos_setup(ctx, inputs, output):
        x, cells = inputs
        s, pnorm, gunit, gnorm = output
        ctx.mark_non_differentiable(pnorm, gunit, gnorm)
        ctx.save_for_backward(x, s, pnorm, gunit, gnorm)
        ctx.cells = cells

    def cos_backward(ctx, grad_s, *_):
        x, s, pnorm, gunit, gnorm = ctx.saved_tensors
        grad_s = _zeros_if_none(grad_s, s)
        return ops.texstat_cos_sim_backward(grad_s, x, s, pnorm, gunit, gnorm, ctx.cells), None

    torch.library.register_autograd(lib + "texstat_cos_sim", cos_backward,
                                    setup_context=cos_setup)

    # ---------------------------------------------------------------------- STLNet QCO
    @torch.library.register_fake(lib + "texstat_qco")
    def _(s, num_levels, cooc):
        G = s.shape[0]
        shape = (G, num_levels, num_levels) if cooc else (G, num_levels)
        return (s.new_empty(G, num_levels), s.new_empty(shape), s.new_empty(shape),
                s.new_empty(G, 2, dtype=torch.long))

    @torch.library.register_fake(lib + "texstat_qco_backward")
    def _(grad_levels, grad_sta, s, levels, counts, extrema, cooc):
        return torch.empty_like(s, memory_format=torch.contiguous_format)

    def qco_setup(ctx, inputs, output):
        s, _, cooc = inputs
        levels, sta, counts, extrema = output
        ctx.mark_non_differentiable(counts, extrema)
        ctx.save_for_backward(s, levels, sta, counts, extrema)
        ctx.cooc = cooc

    def qco_backward(ctx, grad_levels, grad_sta, *_):
        s, levels, sta, counts, extrema = ctx.saved_tensors
        grad_s = ops.texstat_qco_backward(_zeros_if_none(grad_levels, levels),
                                          _zeros_if_none(grad_sta, sta), s, levels, counts,
                                          extrema, ctx.cooc)
        return grad_s, None, None

    torch.library.register_autograd(lib + "texstat_qco", qco_backward, setup_context=qco_setup)

    # ----------------------------------------------------------------------- TEM product
    @torch.library.register_fake(lib + "texstat_qco_tem")
    def _(f, s, levels, delta):
        return f.new_empty(f.shape[0], f.shape[1], s.shape[1])

    @torch.library.register_fake(lib + "texstat_qco_tem_backward")
    def _(grad_out, f, s, levels, delta):
        return (torch.empty_like(f, memory_format=torch.contiguous_format),
                f.new_empty(s.shape), f.new_empty(levels.shape))

    def tem_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def tem_backward(ctx, grad_out):
        f, s, levels, delta = ctx.saved_tensors
        gf, gs, gl = ops.texstat_qco_tem_backward(grad_out, f, s, levels, delta)
        return gf, gs.to(s.dtype), gl.to(levels.dtype), None

    torch.library.register_autograd(lib + "texstat_qco_tem", tem_backward,
                                    setup_context=tem_setup)

    # --------------------------------------------------------------------------- DTIEM
    torch.library.register_fake(lib + "texstat_dtiem")(dtiem_fake)
    torch.library.register_fake(lib + "texstat_dtiem_backward")(dtiem_backward_fake)
    dtiem_backward = dtiem_backward_with(ops.texstat_dtiem_backward)
    torch.library.register_autograd(lib + "texstat_dtiem", dtiem_backward,
                                    setup_context=dtiem_setup)
