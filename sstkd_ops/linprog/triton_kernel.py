"""Triton kernel that runs linear programs (see :mod:`sstkd_ops.linprog.program`).

One launch per call: each program instance takes planes ``pid, pid + grid, ...`` and runs the
whole instruction list on each, one instruction after the other, with a block barrier
between instructions (like the CUDA kernel, ``csrc/linprog/cuda/linear_program_cuda.cu``); its
workspace row is reused from plane to plane. An image (fewer planes than SMs, each of at least
256^2 values) would leave most SMs idle that way: each instruction is then launched on its
own, its blocks of outputs spread over several program instances per plane (the launch
boundary orders the instructions; every output is computed as in one instance, so the
results are the same bits). The instruction table, index tables and
coefficients stay on the device and are read by the kernel, so a call does no host
synchronisation and can be captured in a CUDA graph. Every transpose is evaluated in gather
form, so nothing uses atomics and results are deterministic. Runs on CUDA tensors, and on CPU
tensors under ``TRITON_INTERPRET=1`` (used by the tests). Filter geometry is read as 32-bit
(planes of fewer than 2**31 values) and each of the 512 threads owns one element of a
block, which keeps the kernel free of register spills on sm_90 (55/52 registers for
float32/float64; an image's launches run 8 warps, 80/112 registers: with 16 they spilled).

Intermediates (the output and workspace rows) are read with ``cache_modifier=".cg"`` (L2, not
the per-SM L1): a value another thread of the block stored before the barrier is then always
seen.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .program import (
    ACCUMULATE,
    AXPBY,
    AXPY,
    CORR2D,
    CORR2D_T,
    GATHER,
    N_COLS,
    SCATTER_ADD,
    SEP_CORR,
    SEP_CORR_T,
    SPACE_SHIFT,
    ZERO,
)

BLOCK = 512
NUM_WARPS = 16
NUM_WARPS_SPLIT = 8  # an image's launches: 16 warps spilled registers (float64, sm_90)
# opcodes as compile-time constants of the kernel
_GATHER = tl.constexpr(GATHER)
_SCATTER_ADD = tl.constexpr(SCATTER_ADD)
_ZERO = tl.constexpr(ZERO)
_SEP_CORR = tl.constexpr(SEP_CORR)
_SEP_CORR_T = tl.constexpr(SEP_CORR_T)
_AXPBY = tl.constexpr(AXPBY)
_CORR2D = tl.constexpr(CORR2D)
_CORR2D_T = tl.constexpr(CORR2D_T)
_AXPY = tl.constexpr(AXPY)
_ACCUMULATE = tl.constexpr(ACCUMULATE)


@triton.jit
def _corr_geometry(row):
    """A correlation instruction's coefficient offsets and 32-bit geometry: (first coefficient
    of each axis, source/destination row width, output height and width, stride and offset of
    each axis, filter length of each axis)."""
    return (tl.load(row + 14), tl.load(row + 16), tl.load(row + 7).to(tl.int32),
            tl.load(row + 8).to(tl.int32), tl.load(row + 9).to(tl.int32),
            tl.load(row + 10).to(tl.int32), tl.load(row + 11).to(tl.int32),
            tl.load(row + 12).to(tl.int32), tl.load(row + 13).to(tl.int32),
            tl.load(row + 15).to(tl.int32), tl.load(row + 17).to(tl.int32))


@triton.jit
def _load(x_p, o_p, w_p, space, off, m):
    """Values at ``off`` of address space ``space`` (0 input, 1 output, 2 workspace)."""
    vx = tl.load(x_p + off, mask=m & (space == 0), other=0.0)
    vo = tl.load(o_p + off, mask=m & (space == 1), other=0.0, cache_modifier=".cg")
    vw = tl.load(w_p + off, mask=m & (space == 2), other=0.0, cache_modifier=".cg")
    return tl.where(space == 0, vx, tl.where(space == 1, vo, vw))


@triton.jit
def _store(o_p, w_p, space, off, v, m):
    tl.store(o_p + off, v, mask=m & (space == 1))
    tl.store(w_p + off, v, mask=m & (space == 2))


@triton.jit
def _run_instructions(x_p, o_p, w_p, instr, q0, q1, tables, coefs, b0, bstep, lane, zero,
                      COLS: tl.constexpr, SHIFT: tl.constexpr, BLOCK: tl.constexpr):
    """Instructions [q0, q1) on one plane (its input, output and workspace at x_p, o_p, w_p):
    blocks of BLOCK outputs from b0 on, bstep apart, each lane of the program one output."""
    for q in range(q0, q1):
        row = instr + q * COLS
        code = tl.load(row)
        op = code & (_ACCUMULATE - 1)
        acc = (code & _ACCUMULATE) != 0
        dst = tl.load(row + 1)
        d_sp = dst >> SHIFT
        d_off = dst & ((1 << SHIFT) - 1)
        src = tl.load(row + 2)
        a_sp = src >> SHIFT
        a_off = src & ((1 << SHIFT) - 1)
        n = tl.load(row + 4)
        if op == _GATHER:  # dst[k] (+)= a[table[k]], -1 reads zero
            t_off = tl.load(row + 5)
            for s in range(b0, n, bstep):
                k = s + lane
                m = k < n
                idx = tl.load(tables + t_off + k, mask=m, other=-1)
                v = _load(x_p, o_p, w_p, a_sp, a_off + idx, m & (idx >= 0))
                old = _load(x_p, o_p, w_p, d_sp, d_off + k, m & acc)
                _store(o_p, w_p, d_sp, d_off + k, tl.where(acc, v + old, v), m)
        elif op == _SCATTER_ADD:  # as a gather-sum over the CSR of the inverse table
            t_off = tl.load(row + 5)
            max_deg = tl.load(row + 6)
            col = tables + t_off + n + 1
            for s in range(b0, n, bstep):
                k = s + lane
                m = k < n
                start = tl.load(tables + t_off + k, mask=m, other=0)
                stop = tl.load(tables + t_off + k + 1, mask=m, other=0)
                old = _load(x_p, o_p, w_p, d_sp, d_off + k, m)
                total = zero
                for j in range(0, max_deg):
                    mj = m & (start + j < stop)
                    c = tl.load(col + start + j, mask=mj, other=0)
                    total += _load(x_p, o_p, w_p, a_sp, a_off + c, mj)
                _store(o_p, w_p, d_sp, d_off + k, old + total, m)
        elif op == _ZERO:
            for s in range(b0, n, bstep):
                k = s + lane
                _store(o_p, w_p, d_sp, d_off + k, zero, k < n)
        elif (op == _AXPBY) | (op == _AXPY):  # dst = alpha a + beta b;  dst += alpha a
            c1 = tl.load(row + 14)
            c2 = tl.load(row + 16)
            b_op = tl.load(row + 3)
            b_sp = b_op >> SHIFT
            b_off = b_op & ((1 << SHIFT) - 1)
            alpha = tl.load(coefs + c1).to(zero.dtype)
            beta = tl.load(coefs + tl.where(op == _AXPBY, c2, c1))
            beta = beta.to(zero.dtype)
            for s in range(b0, n, bstep):
                k = s + lane
                m = k < n
                va = _load(x_p, o_p, w_p, a_sp, a_off + k, m)
                if op == _AXPBY:
                    vb = _load(x_p, o_p, w_p, b_sp, b_off + k, m)
                    v = alpha * va + beta * vb
                else:
                    v = _load(x_p, o_p, w_p, d_sp, d_off + k, m) + alpha * va
                _store(o_p, w_p, d_sp, d_off + k, v, m)
        elif (op == _SEP_CORR) | (op == _CORR2D):  # strided valid correlation
            sep = op == _SEP_CORR
            c1, c2, w_src, ho, wo, s1, p1, s2, p2, l1, l2 = _corr_geometry(row)
            for s in range(b0, ho * wo, bstep):
                e = s + lane
                m = e < ho * wo
                base = a_off + (e // wo * s1 + p1) * w_src + e % wo * s2 + p2
                total = zero
                for a in range(0, l1):
                    part = zero
                    for b in range(0, l2):
                        w = tl.load(coefs + tl.where(sep, c2 + b, c1 + a * l2 + b))
                        part += w.to(zero.dtype) * _load(
                            x_p, o_p, w_p, a_sp, base + a * w_src + b, m)
                    scale = tl.load(coefs + c1 + a).to(zero.dtype)
                    total += tl.where(sep, part * scale, part)
                old = _load(x_p, o_p, w_p, d_sp, d_off + e, m & acc)
                _store(o_p, w_p, d_sp, d_off + e, tl.where(acc, total + old, total), m)
        elif (op == _SEP_CORR_T) | (op == _CORR2D_T):  # transposes, in gather form
            sep = op == _SEP_CORR_T
            c1, c2, w_dst, ho, wo, s1, p1, s2, p2, l1, l2 = _corr_geometry(row)
            wspan = (wo - 1) * s2 + l2
            span = ((ho - 1) * s1 + l1) * wspan
            for s in range(b0, span, bstep):
                e = s + lane
                m = e < span
                r = e // wspan
                c = e % wspan
                total = zero
                for a in range(0, l1):
                    i = (r - a) // s1
                    ok_a = (r >= a) & ((r - a) % s1 == 0) & (i < ho)
                    for b in range(0, l2):
                        jj = (c - b) // s2
                        ok = m & ok_a & (c >= b) & ((c - b) % s2 == 0) & (jj < wo)
                        wa = tl.load(coefs + tl.where(sep, c1 + a, c1 + a * l2 + b))
                        wb = tl.load(coefs + c2 + b)
                        w = tl.where(sep, wa.to(zero.dtype)
                                     * wb.to(zero.dtype),
                                     wa.to(zero.dtype))
                        total += w * _load(x_p, o_p, w_p, a_sp, a_off + i * wo + jj, ok)
                off = d_off + (r + p1) * w_dst + c + p2
                _store(o_p, w_p, d_sp, off, _load(x_p, o_p, w_p, d_sp, off, m) + total, m)
        tl.debug_barrier()


@triton.jit
def _program_kernel(x, out, ws, instr, q0, q1, tables, coefs, planes, in_numel, out_numel,
                    ws_numel, COLS: tl.constexpr, SHIFT: tl.constexpr, BLOCK: tl.constexpr,
                    SPLIT: tl.constexpr):
    lane = tl.arange(0, BLOCK)
    zero = tl.zeros([BLOCK], dtype=out.dtype.element_ty)
    wide = tl.full([], 0, tl.int64)  # plane offsets in 64 bits
    if SPLIT:  # program (chunk, p): blocks chunk, chunk + chunks, ... of plane p
        p = tl.program_id(1)
        _run_instructions(x + (wide + p) * in_numel, out + (wide + p) * out_numel,
                          ws + (wide + p) * ws_numel, instr, q0, q1, tables, coefs,
                          tl.program_id(0) * BLOCK, tl.num_programs(0) * BLOCK, lane, zero,
                          COLS, SHIFT, BLOCK)
    else:  # program pid: every block of planes pid, pid + grid, ...
        pid = tl.program_id(0)
        w_p = ws + (wide + pid) * ws_numel
        for p in range(pid, planes, tl.num_programs(0)):
            _run_instructions(x + (wide + p) * in_numel, out + (wide + p) * out_numel, w_p,
                              instr, q0, q1, tables, coefs, 0, BLOCK, lane, zero, COLS, SHIFT,
                              BLOCK)


@functools.cache
def _device_limits(index: int) -> tuple[int, int]:
    props = torch.cuda.get_device_properties(index)
    return props.multi_processor_count, int(getattr(props, "L2_cache_size", 50 << 20))


def grid_size(planes: int, ws_bytes: int, device: torch.device) -> int:
    """Program instances for ``planes`` planes: on a GPU, one per SM at least (16 warps, one
    plane each), up to 4 per SM while their workspaces fit half the L2 (the CUDA kernel's
    rule); under the interpreter, one per plane."""
    if device.type != "cuda":
        return planes
    sms, l2 = _device_limits(device.index if device.index is not None else
                             torch.cuda.current_device())
    fit = (l2 // 2) // max(ws_bytes, 1)
    return max(1, min(planes, max(sms, min(4 * sms, fit))))


def split_parts(planes: int, plane_numel: int, device: torch.device) -> int:
    """Program instances per plane when each instruction is spread over the GPU (0: one
    instance runs whole planes). Fewer planes than SMs of at least 256^2 values (an image):
    about 4 instances per SM in all, as many as the plane has blocks at most. Under the
    interpreter: 0 (tests choose with ``run(..., split=)``)."""
    if device.type != "cuda":
        return 0
    sms, _ = _device_limits(device.index if device.index is not None else
                            torch.cuda.current_device())
    if planes >= sms or plane_numel < 1 << 16:
        return 0
    return max(1, min(4 * sms // planes, -(-plane_numel // BLOCK)))


def run(x: torch.Tensor, instr: torch.Tensor, tables: torch.Tensor, coefs: torch.Tensor,
        out_numel: int, ws_numel: int, split: int | None = None) -> torch.Tensor:
    """Run a packed, validated program (``instr``, ``tables``, ``coefs`` on ``x``'s device,
    see :func:`sstkd_ops.linprog.runtime.packed_on`) on planes ``x (P, in_numel)``. ``split``:
    program instances per plane, each instruction launched on its own over all of them (0:
    one launch, instances running whole planes; None: :func:`split_parts` chooses)."""
    planes = x.shape[0]
    if max(x.shape[1], out_numel, ws_numel) >= 2**31:
        raise ValueError(f"linear_program (triton): planes of up to 2**31 - 1 values are "
                         f"supported (geometry is 32-bit), got {x.shape[1]} in, {out_numel} "
                         f"out, {ws_numel} workspace")
    x = x.contiguous()
    out = x.new_empty((planes, out_numel))
    if planes == 0 or instr.shape[0] == 0:
        return out
    args = (tables, coefs, planes, x.shape[1], out_numel, max(ws_numel, 1))
    consts = {"COLS": N_COLS, "SHIFT": SPACE_SHIFT, "BLOCK": BLOCK}
    parts = split_parts(planes, x.shape[1], x.device) if split is None else split
    if parts:  # an image: each instruction over the whole GPU, one launch per instruction
        ws = x.new_empty((planes, max(ws_numel, 1)))
        for q in range(instr.shape[0]):
            _program_kernel[(parts, planes)](x, out, ws, instr, q, q + 1, *args, SPLIT=True,
                                             num_warps=NUM_WARPS_SPLIT, **consts)
        return out
    grid = grid_size(planes, ws_numel * x.element_size(), x.device)
    ws = x.new_empty((grid, max(ws_numel, 1)))
    _program_kernel[(grid,)](x, out, ws, instr, 0, instr.shape[0], *args, SPLIT=False,
                             num_warps=NUM_WARPS, **consts)
    return out


