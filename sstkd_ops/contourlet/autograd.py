"""The one custom op of the fused contourlet backends (``cpu``, ``cuda``, ``triton``).

Every contourlet op is the fixed linear map of a traced program
(:mod:`sstkd_ops.contourlet.tracer`). ``sstkd_ops::contourlet_apply`` runs it on the
``(planes, numel)`` layout with :func:`sstkd_ops.linprog.runtime.run`: the program is looked
up from the op's plain arguments (strings and ints), so ``torch.compile(fullgraph=True)`` sees
one opaque op, and the backward registered by :func:`register` is the same op with
``transpose`` flipped -- the exact adjoint, which needs nothing but shapes (no tensor is saved,
so calls on inputs without ``requires_grad`` keep nothing alive) and whose own backward is the
forward again (gradients of any order). :func:`register` is called once by
``sstkd_ops.contourlet``'s ``__init__``; the fused implementations calling the op are in
:mod:`sstkd_ops.contourlet.fused`.
"""

from __future__ import annotations

import torch

from ..linprog import runtime as linprog_runtime
from .tracer import programs


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
    return linprog_runtime.run(prog, x, backend)


def _fake(x, op, shapes, pfilt, dfilt, nlevs, backend, transpose):
    prog, _ = _program(op, shapes, pfilt, dfilt, nlevs, transpose)
    return x.new_empty((x.shape[0], prog.out_numel))


def _setup(ctx, inputs, output):
    ctx.args = inputs[1:]


def _backward(ctx, grad):
    op, shapes, pfilt, dfilt, nlevs, backend, transpose = ctx.args
    return (contourlet_apply(grad, op, shapes, pfilt, dfilt, nlevs, backend, not transpose),
            None, None, None, None, None, None, None)


_registered = False


def register() -> None:
    """Register the fake function and the backward (the adjoint) of ``contourlet_apply``, once.
    """
    global _registered
    if not _registered:
        contourlet_apply.register_fake(_fake)
        contourlet_apply.register_autograd(_backward, setup_context=_setup)
        _registered = True
