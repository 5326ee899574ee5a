"""Triton kernels that run linear programs (see :mod:`sstkd_ops._linear_program`).

One launch per instruction, over a grid of (planes, output blocks); every transpose is
evaluated in gather form, so nothing uses atomics and results are deterministic. Runs on CUDA
tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (used by the tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._linear_program import (
    ACCUMULATE,
    AXPBY,
    AXPY,
    CORR2D,
    CORR2D_T,
    GATHER,
    SCATTER_ADD,
    SEP_CORR,
    SEP_CORR_T,
    SPACE_SHIFT,
    ZERO,
)

BLOCK = 256
_MASK = (1 << SPACE_SHIFT) - 1


@triton.jit
def _gather_kernel(dst, d_off, d_stride, src, s_off, s_stride, tab, t_off, n,
                   ACC: tl.constexpr, BLOCK: tl.constexpr):
    p = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    idx = tl.load(tab + t_off + k, mask=m, other=-1)
    v = tl.load(src + p * s_stride + s_off + idx, mask=m & (idx >= 0), other=0.0)
    dptr = dst + p * d_stride + d_off + k
    if ACC:
        v += tl.load(dptr, mask=m, other=0.0)
    tl.store(dptr, v, mask=m)


@triton.jit
def _gather_sum_kernel(dst, d_off, d_stride, src, s_off, s_stride, tab, t_off, n, max_deg,
                       BLOCK: tl.constexpr):
    p = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    start = tl.load(tab + t_off + k, mask=m, other=0)
    stop = tl.load(tab + t_off + k + 1, mask=m, other=0)
    col = tab + t_off + n + 1
    dptr = dst + p * d_stride + d_off + k
    acc = tl.load(dptr, mask=m, other=0.0)
    total = tl.zeros_like(acc)
    for j in range(0, max_deg):
        mj = m & (start + j < stop)
        c = tl.load(col + start + j, mask=mj, other=0)
        total += tl.load(src + p * s_stride + s_off + c, mask=mj, other=0.0)
    tl.store(dptr, acc + total, mask=m)


@triton.jit
def _axpby_kernel(dst, d_off, d_stride, a, a_off, a_stride, b, b_off, b_stride, coefs, ca, cb,
                  n, MODE: tl.constexpr, BLOCK: tl.constexpr):
    # MODE 0: dst = alpha a + beta b;  MODE 1: dst += alpha a;  MODE 2: dst = 0
    p = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    dptr = dst + p * d_stride + d_off + k
    if MODE == 2:
        tl.store(dptr, tl.zeros([BLOCK], dtype=dst.dtype.element_ty), mask=m)
    else:
        alpha = tl.load(coefs + ca)
        va = tl.load(a + p * a_stride + a_off + k, mask=m, other=0.0)
        if MODE == 0:
            beta = tl.load(coefs + cb)
            vb = tl.load(b + p * b_stride + b_off + k, mask=m, other=0.0)
            tl.store(dptr, alpha * va + beta * vb, mask=m)
        else:
            tl.store(dptr, tl.load(dptr, mask=m, other=0.0) + alpha * va, mask=m)


@triton.jit
def _corr_kernel(dst, d_off, d_stride, src, s_off, s_stride, coefs, c1, l1, c2, l2,
                 ws_, ho, wo, s1, p1, s2, p2, SEP: tl.constexpr, ACC: tl.constexpr,
                 BLOCK: tl.constexpr):
    # dst[i, j] (+)= sum_a sum_b K[a, b] src[s1 i + p1 + a, s2 j + p2 + b]
    p = tl.program_id(0)
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = e < ho * wo
    i = e // wo
    j = e % wo
    base = src + p * s_stride + s_off + (i * s1 + p1) * ws_ + j * s2 + p2
    acc = tl.zeros([BLOCK], dtype=dst.dtype.element_ty)
    for a in range(0, l1):
        row = tl.zeros([BLOCK], dtype=dst.dtype.element_ty)
        for b in range(0, l2):
            if SEP:
                w = tl.load(coefs + c2 + b)
            else:
                w = tl.load(coefs + c1 + a * l2 + b)
            row += w * tl.load(base + a * ws_ + b, mask=m, other=0.0)
        if SEP:
            row = row * tl.load(coefs + c1 + a)
        acc += row
    dptr = dst + p * d_stride + d_off + e
    if ACC:
        acc += tl.load(dptr, mask=m, other=0.0)
    tl.store(dptr, acc, mask=m)


@triton.jit
def _corr_t_kernel(dst, d_off, d_stride, src, s_off, s_stride, coefs, c1, l1, c2, l2,
                   ws_, ho, wo, s1, p1, s2, p2, SEP: tl.constexpr, BLOCK: tl.constexpr):
    # transpose of _corr_kernel in gather form: each touched dst element sums its sources
    p = tl.program_id(0)
    hspan = (ho - 1) * s1 + l1
    wspan = (wo - 1) * s2 + l2
    e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = e < hspan * wspan
    r = e // wspan
    c = e % wspan
    acc = tl.zeros([BLOCK], dtype=dst.dtype.element_ty)
    for a in range(0, l1):
        i = (r - a) // s1
        ok_a = (r >= a) & ((r - a) % s1 == 0) & (i < ho)
        for b in range(0, l2):
            jj = (c - b) // s2
            ok = m & ok_a & (c >= b) & ((c - b) % s2 == 0) & (jj < wo)
            if SEP:
                w = tl.load(coefs + c1 + a) * tl.load(coefs + c2 + b)
            else:
                w = tl.load(coefs + c1 + a * l2 + b)
            acc += w * tl.load(src + p * s_stride + s_off + i * wo + jj, mask=ok, other=0.0)
    dptr = dst + p * d_stride + d_off + (r + p1) * ws_ + c + p2
    acc += tl.load(dptr, mask=m, other=0.0)
    tl.store(dptr, acc, mask=m)


def run(x: torch.Tensor, instr: torch.Tensor, tables: torch.Tensor, coefs: torch.Tensor,
        out_numel: int, ws_numel: int) -> torch.Tensor:
    """Run a packed program on planes ``x (P, in_numel)``; ``instr`` is a CPU tensor."""
    planes = x.shape[0]
    x = x.contiguous()
    out = x.new_empty((planes, out_numel))
    ws = x.new_empty((planes, max(ws_numel, 1)))
    if planes == 0:
        return out
    coefs = coefs.to(device=x.device, dtype=x.dtype)
    tables = tables.to(x.device)
    spaces = (x, out, ws)
    strides = (x.shape[1], out_numel, ws.shape[1])
    rows = instr.tolist()
    degrees = {}
    for row in rows:
        op, acc = row[0] & ~ACCUMULATE, bool(row[0] & ACCUMULATE)
        d_sp, d_off = row[1] >> SPACE_SHIFT, row[1] & _MASK
        a_sp, a_off = row[2] >> SPACE_SHIFT, row[2] & _MASK
        b_sp, b_off = row[3] >> SPACE_SHIFT, row[3] & _MASK
        n = row[4]
        dst, d_st = spaces[d_sp], strides[d_sp]
        src, s_st = spaces[a_sp], strides[a_sp]
        if op in (GATHER, SCATTER_ADD, ZERO, AXPBY, AXPY):
            grid = (planes, triton.cdiv(max(n, 1), BLOCK))
        if op == GATHER:
            _gather_kernel[grid](dst, d_off, d_st, src, a_off, s_st, tables, row[5], n,
                                 ACC=acc, BLOCK=BLOCK)
        elif op == SCATTER_ADD:
            key = (row[5], n)
            if key not in degrees:
                rowptr = tables[row[5]:row[5] + n + 1]
                degrees[key] = int((rowptr[1:] - rowptr[:-1]).max()) if n else 0
            _gather_sum_kernel[grid](dst, d_off, d_st, src, a_off, s_st, tables, row[5], n,
                                     degrees[key], BLOCK=BLOCK)
        elif op in (ZERO, AXPBY, AXPY):
            mode = {AXPBY: 0, AXPY: 1, ZERO: 2}[op]
            _axpby_kernel[grid](dst, d_off, d_st, src, a_off, s_st, spaces[b_sp], b_off,
                                strides[b_sp], coefs, row[14], row[16], n, MODE=mode,
                                BLOCK=BLOCK)
        elif op in (SEP_CORR, CORR2D):
            ho, wo = row[8], row[9]
            grid = (planes, triton.cdiv(ho * wo, BLOCK))
            _corr_kernel[grid](dst, d_off, d_st, src, a_off, s_st, coefs, row[14], row[15],
                               row[16], row[17], row[7], ho, wo, *row[10:14],
                               SEP=op == SEP_CORR, ACC=acc, BLOCK=BLOCK)
        elif op in (SEP_CORR_T, CORR2D_T):
            ho, wo = row[8], row[9]
            span = ((ho - 1) * row[10] + row[15]) * ((wo - 1) * row[12] + row[17])
            grid = (planes, triton.cdiv(span, BLOCK))
            _corr_t_kernel[grid](dst, d_off, d_st, src, a_off, s_st, coefs, row[14], row[15],
                                 row[16], row[17], row[7], ho, wo, *row[10:14],
                                 SEP=op == SEP_CORR_T, BLOCK=BLOCK)
        else:
            raise ValueError(f"linear program (triton): unknown opcode {row[0]}")
    return out
