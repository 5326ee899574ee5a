"""Constants and helpers shared by the Triton texture-statistics kernels."""

from __future__ import annotations

import torch
import triton

BLOCK = 128  # pixels per step of the per-pixel passes
NPROG = 8  # persistent programs per image (group) for reductions over pixels


def np2(n: int) -> int:
    """Lane count for ``n`` levels: a power of two >= 16 (the smallest ``tl.dot`` size)."""
    return max(16, triton.next_power_of_2(n))


def tile_block(np_: int) -> int:
    """Pixels per step of kernels that hold a (pixels, lanes) tile: about 4096 elements."""
    return max(16, min(BLOCK, 4096 // np_))


def tile_warps(np_: int) -> int:
    """Warps for kernels holding (pixels, N) tiles: 8 from N = 64 on. With 4, the N = 128
    co-occurrence and TEM-gradient kernels spill 1-2 KB per thread on sm_90; with 8, at most
    0.7 KB (``scripts/check_triton_kernels.py`` reports the figures)."""
    return 8 if np_ >= 64 else 4


def row_tile(np_: int) -> int:
    """Rows of an (N, N) matrix per program (or per ``tl.dot`` step): at most 32, so that no
    program holds more than 32 x N of it (a full 128 x 128 float64 tile does not fit in
    registers and takes the GPU compiler minutes)."""
    return min(np_, 32)


def nprog_for(npix: int, block: int) -> int:
    """Persistent programs for ``npix`` pixels: at most :data:`NPROG`, no idle program."""
    return max(1, min(NPROG, triton.cdiv(npix, block)))


def check_finite(s: torch.Tensor, op: str) -> None:
    """Raise when the texture intensity holds NaN or Inf (kernels assume finite values)."""
    if not bool(torch.isfinite(s).all()):
        raise RuntimeError(f"{op}: the texture intensity is not finite (the input holds NaN or "
                           "Inf)")
