"""Run linear programs (:mod:`sstkd_ops.linprog.program`) with the kernels.

A program is validated once on the host (:func:`validate`), its packed tables are copied once
per device (:func:`packed_on`; the C++ CPU kernel gets the run-length form
:attr:`~.program.Program.packed_runs`, the GPU kernels index tables), and :func:`run` calls
the kernel of a backend: the compiled op ``sstkd_ops::linear_program`` (``cpu``: C++,
``cuda``: CUDA, from ``csrc/linprog/``) or the Triton kernel
(:mod:`sstkd_ops.linprog.triton_kernel`). Nothing here has autograd of its own: a program's
gradient is its adjoint, run by the same function (the contourlet family registers that as
the backward of its one custom op, :mod:`sstkd_ops.contourlet.autograd`).
"""

from __future__ import annotations

import functools

import torch

from .. import _backend
from .program import Program


def validate(program: Program, runs: bool = False) -> None:
    """Check ``program``'s packed tables once, on the host (operand ranges, filter geometry,
    every index-table entry); the kernels then trust them on every call, which is what keeps
    a call free of host synchronisation. Needs the compiled extension; without it (a
    Triton-only install) the builder's own checks are all there is."""
    if _backend.extension() is None:
        return
    instr, tables, coefs, ws_total = program.packed_runs if runs else program.packed
    torch.ops.sstkd_ops.linear_program_check(instr, tables, coefs, program.in_numel,
                                             program.out_numel, ws_total)


@functools.lru_cache(maxsize=256)  # like the program cache: bounded, once per live program
def _validated(program: Program, runs: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    validate(program, runs)
    return program.packed_runs if runs else program.packed


@functools.lru_cache(maxsize=256)
def packed_on(program: Program, device: torch.device, runs: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The validated program's ``(instr, tables, coefs, ws_total)``, tensors on ``device``
    (copied once per program and device; :func:`validate` runs once per program); ``runs``
    for the C++ CPU kernel's form."""
    instr, tables, coefs, ws_total = _validated(program, runs)
    return instr.to(device), tables.to(device), coefs.to(device), ws_total


def run(program: Program, x: torch.Tensor, backend: str) -> torch.Tensor:
    """Run ``program`` on planes ``x (P, in_numel)`` with ``backend`` (``'cpu'``, ``'cuda'`` or
    ``'triton'``); returns ``(P, out_numel)`` in ``x``'s dtype. Not differentiable by itself.
    """
    if x.shape[1] != program.in_numel:
        raise ValueError(f"linprog.run: argument 'x' expected {program.in_numel} values per "
                         f"plane, got shape {tuple(x.shape)}")
    instr, tables, coefs, ws_total = packed_on(program, x.device, runs=backend == "cpu")
    x = x.contiguous()
    if backend == "triton":
        from .triton_kernel import run as run_triton

        return run_triton(x, instr, tables, coefs, program.out_numel, ws_total)
    if _backend.extension() is None:
        raise _backend.BackendUnavailableError(
            f"linear programs need the compiled extension ({_backend.extension_error()})")
    return torch.ops.sstkd_ops.linear_program(x, instr, tables, coefs, program.out_numel,
                                              ws_total)
