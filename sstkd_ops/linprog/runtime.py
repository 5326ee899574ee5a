"""Autograd-aware execution of linear programs (see :mod:`sstkd_ops._linear_program`).

Two ops share one contract: ``sstkd_ops::linear_program`` (C++ and CUDA kernels from
``csrc/``) and ``sstkd_ops::linear_program_triton`` (Triton kernels). Each takes the program
*and* its transpose; the registered backward runs the transpose with the same op, so
gradients of any order exist, ``torch.compile(fullgraph=True)`` sees one opaque op per call,
and nothing is saved for backward but the constant programs.
"""

from __future__ import annotations

import functools

import torch

from .. import _backend
from .program import Program


def _register_autograd(name: str, op) -> None:
    def fake(x, instr, tables, coefs, out_numel, ws_numel, adj_instr, adj_tables, adj_coefs,
             adj_ws_numel):
        return x.new_empty((x.shape[0], out_numel))

    def setup(ctx, inputs, output):
        x, instr, tables, coefs, out_numel, ws_numel, ai, at, ac, aws = inputs
        ctx.programs = (instr, tables, coefs, ws_numel, ai, at, ac, aws)
        ctx.in_numel = x.shape[1]

    def backward(ctx, grad):
        instr, tables, coefs, ws_numel, ai, at, ac, aws = ctx.programs
        grad_x = op(grad.contiguous(), ai, at, ac, ctx.in_numel, aws, instr, tables, coefs,
                    ws_numel)
        return (grad_x,) + (None,) * 9

    torch.library.register_fake(name)(fake)
    torch.library.register_autograd(name, backward, setup_context=setup)


@torch.library.custom_op("sstkd_ops::linear_program_triton", mutates_args=())
def _linear_program_triton(x: torch.Tensor, instr: torch.Tensor, tables: torch.Tensor,
                           coefs: torch.Tensor, out_numel: int, ws_numel: int,
                           adj_instr: torch.Tensor, adj_tables: torch.Tensor,
                           adj_coefs: torch.Tensor, adj_ws_numel: int) -> torch.Tensor:
    from .triton_kernel import run

    return run(x, instr, tables, coefs, out_numel, ws_numel)


_register_autograd("sstkd_ops::linear_program_triton", _linear_program_triton)


@functools.cache
def _register_compiled() -> bool:
    if _backend.extension() is None:
        return False
    _register_autograd("sstkd_ops::linear_program", torch.ops.sstkd_ops.linear_program)
    return True


def validate(program: Program) -> None:
    """Check ``program``'s packed tables once, on the host (operand ranges, filter geometry,
    every index-table entry); the kernels then trust them on every call, which is what keeps
    a call free of host synchronisation. Needs the compiled extension; without it (a
    Triton-only install) the builder's own checks are all there is."""
    if _backend.extension() is None:
        return
    instr, tables, coefs, ws_total = program.packed
    torch.ops.sstkd_ops.linear_program_check(instr, tables, coefs, program.in_numel,
                                             program.out_numel, ws_total)


@functools.lru_cache(maxsize=256)  # like the program cache: bounded, once per live program
def _validated(program: Program) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    validate(program)
    return program.packed


@functools.lru_cache(maxsize=256)
def packed_on(program: Program, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The validated program's ``(instr, tables, coefs, ws_total)``, tensors on ``device``
    (copied once per program and device; :func:`validate` runs once per program)."""
    instr, tables, coefs, ws_total = _validated(program)
    return instr.to(device), tables.to(device), coefs.to(device), ws_total


def raw_kernel(backend: str):
    """``f(x, instr, tables, coefs, out_numel, ws_numel)`` running a packed program with
    ``backend`` ('cpu', 'cuda' or 'triton') and no autograd of its own."""
    if backend == "triton":
        from .triton_kernel import run

        return run
    if _backend.extension() is None:
        raise _backend.BackendUnavailableError(
            f"linear programs need the compiled extension ({_backend.extension_error()})")

    def run_compiled(x, instr, tables, coefs, out_numel, ws_numel):
        return torch.ops.sstkd_ops.linear_program(x, instr, tables, coefs, out_numel, ws_numel,
                                                  instr, tables, coefs, ws_numel)

    return run_compiled


def run_program(x: torch.Tensor, program: Program, adjoint: Program, backend: str
                ) -> torch.Tensor:
    """Run ``program`` on planes ``x (P, in_numel)`` with ``backend`` ('cpu', 'cuda', 'triton').

    Differentiable (any order); the backward runs ``adjoint`` with the same backend.
    """
    if backend == "triton":
        op = torch.ops.sstkd_ops.linear_program_triton
    else:
        if not _register_compiled():
            raise _backend.BackendUnavailableError(
                f"linear programs need the compiled extension ({_backend.extension_error()})")
        op = torch.ops.sstkd_ops.linear_program
    fi, ft, fc, fws = packed_on(program, x.device)
    ai, at, ac, aws = packed_on(adjoint, x.device)
    return op(x.contiguous(), fi, ft, fc, program.out_numel, fws, ai, at, ac, aws)
