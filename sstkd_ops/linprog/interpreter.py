"""Plain-PyTorch interpreter of linear programs: the oracle of the kernels (C++, CUDA, Triton).

Runs the instructions of a :class:`~sstkd_ops.linprog.program.Program` one after the other
with ``torch`` ops on all planes at once; slow, obviously right, used by the tests.
"""

from __future__ import annotations

import torch

from .program import (
    ACCUMULATE,
    AXPBY,
    AXPY,
    CORR2D,
    CORR2D_T,
    GATHER,
    IN,
    OUT,
    SCATTER_ADD,
    SEP_CORR,
    SEP_CORR_T,
    WS,
    ZERO,
    Program,
    Region,
)


def run_torch(program: Program, x: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch interpreter: ``x (P, in_numel) -> (P, out_numel)``."""
    planes = x.shape[0]
    spaces = {IN: x, OUT: x.new_zeros(planes, program.out_numel),
              WS: x.new_zeros(planes, max(program.ws_numel, 1))}

    def view(r: Region) -> torch.Tensor:
        return spaces[r.space][:, r.offset:r.offset + r.numel].view(planes, r.h, r.w)

    def flat(r: Region) -> torch.Tensor:
        return spaces[r.space][:, r.offset:r.offset + r.numel]

    for ins in program.instrs:
        acc = bool(ins.op & ACCUMULATE)
        op = ins.op & ~ACCUMULATE
        dst = flat(ins.dst)
        if op == ZERO:
            dst.zero_()
        elif op == GATHER:
            tab = ins.table.to(x.device)
            val = flat(ins.a)[:, tab.clamp(min=0)] * (tab >= 0).to(x.dtype)
            dst.add_(val) if acc else dst.copy_(val)
        elif op == SCATTER_ADD:
            tab = ins.table.to(x.device)
            keep = tab >= 0
            dst.index_add_(1, tab[keep], flat(ins.a)[:, keep])
        elif op in (SEP_CORR, SEP_CORR_T, CORR2D, CORR2D_T):
            s1, p1, s2, p2 = ins.stride
            if op in (SEP_CORR, SEP_CORR_T):
                k = (torch.tensor(ins.f1, dtype=x.dtype, device=x.device).view(-1, 1)
                     * torch.tensor(ins.f2, dtype=x.dtype, device=x.device).view(1, -1))
            else:
                k = torch.tensor(ins.f1, dtype=x.dtype, device=x.device).view(ins.kshape)
            k = k.view(1, 1, *k.shape)
            if op in (SEP_CORR, CORR2D):
                src = view(ins.a)[:, None, p1:, p2:]
                val = torch.nn.functional.conv2d(src, k, stride=(s1, s2))
                val = val[:, 0, :ins.dst.h, :ins.dst.w].reshape(planes, -1)
                dst.add_(val) if acc else dst.copy_(val)
            else:
                g = view(ins.a)[:, None]
                span = ((g.shape[2] - 1) * s1 + k.shape[2], (g.shape[3] - 1) * s2 + k.shape[3])
                val = torch.nn.functional.conv_transpose2d(g, k, stride=(s1, s2))[:, 0]
                d = view(ins.dst)
                d[:, p1:p1 + span[0], p2:p2 + span[1]] += val
        elif op == AXPBY:
            dst.copy_(ins.f1[0] * flat(ins.a) + ins.f2[0] * flat(ins.b))
        elif op == AXPY:
            dst.add_(ins.f1[0] * flat(ins.a))
        else:  # pragma: no cover
            raise ValueError(f"linear program: unknown opcode {ins.op}")
    return spaces[OUT]
