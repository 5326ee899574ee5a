"""Constants and helpers shared by the Triton texture-statistics kernels.

Tiles never grow with the level count: a kernel holds at most ``lane_tile(L)`` levels (or a
``lane_tile(L)`` square of an L x L matrix) at a time and covers the others with more programs,
so one compiled kernel, with the same registers and shared memory, serves every count from 17
levels up (``scripts/check_triton_kernels.py`` compiles each for sm_90 and reports both).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128  # pixels per step of the per-pixel passes
NPROG = 8  # persistent programs per image (group) for reductions over pixels
LANES = 32  # most levels a kernel holds at a time (one lane tile)
TILE = 2048  # values of a (pixels, lanes) tile: 16 per thread with 4 warps
DOT_BLOCK = 32  # pixels per tl.dot step (its K): the FMA dot holds K values of an operand row


def lane_tile(n: int) -> int:
    """Levels per lane tile for ``n`` levels: a power of two in [16, LANES] (16 is the smallest
    ``tl.dot`` size)."""
    return max(16, min(LANES, triton.next_power_of_2(n)))


def lane_tiles(n: int) -> tuple[int, int]:
    """``(lanes per tile, tiles)`` covering ``n`` levels."""
    tl_ = lane_tile(n)
    return tl_, triton.cdiv(n, tl_)


def tile_block(lanes: int) -> int:
    """Pixels per step of kernels that hold a (pixels, lanes) tile of :data:`TILE` values."""
    return max(16, min(BLOCK, TILE // lanes))


def dot_warps(lanes: int) -> int:
    """Warps of a kernel accumulating a (lanes, lanes) or (16, lanes) ``tl.dot`` tile: 4 for 16
    lanes, 8 for 32 (with 4 at 32 lanes, or 2 at 16, sm_90 spills a few bytes)."""
    return 4 if lanes <= 16 else 8


def nprog_for(npix: int, block: int) -> int:
    """Persistent programs for ``npix`` pixels: at most :data:`NPROG`, no idle program."""
    return max(1, min(NPROG, triton.cdiv(npix, block)))


@triton.jit
def div_rn(x, y):
    """``x / y`` rounded to nearest: Triton's float32 ``/`` is approximate (``div.full.f32``),
    which moves thresholds and level weights by an ulp against the reference."""
    if x.dtype == tl.float32:
        return tl.math.div_rn(x, y)
    else:
        return x / y


@triton.jit
def sqrt_rn(x):
    """``sqrt(x)`` rounded to nearest (Triton's float32 ``sqrt`` is ``sqrt.approx.f32``)."""
    if x.dtype == tl.float32:
        return tl.math.sqrt_rn(x)
    else:
        return tl.sqrt(x)


def nonfinite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """``(G,)`` bool on the device: rows (index along dim 0) of any of ``tensors`` holding NaN
    or Inf. No host read, so a call stays asynchronous and CUDA-graph capturable."""
    bad = torch.zeros(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        fin = torch.isfinite(t)
        bad = bad | ~(fin.flatten(1) if fin.dim() > 1 else fin[:, None]).all(1)
    return bad


def _rows(bad: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return bad.view(-1, *([1] * (t.dim() - 1)))


def zero_rows(t: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``t`` with the rows flagged in ``bad`` set to 0, the others unchanged (bitwise): a
    flagged image reaches the kernels as a constant one, whose level and pixel indices all stay
    in range."""
    return torch.where(_rows(bad, t), 0.0, t)


def nan_rows(t: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``t`` with the rows flagged in ``bad`` set to NaN, the others unchanged (bitwise)."""
    return torch.where(_rows(bad, t), float("nan"), t)
