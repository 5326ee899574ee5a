"""Shared test fixtures and the one tolerance table for parity tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (../shared); a copy inside the checkout also works.
_SHARED_CANDIDATES = [REPO.parent / "shared", REPO / "shared"]
SHARED = next((p for p in _SHARED_CANDIDATES if p.is_dir()), _SHARED_CANDIDATES[0])
GOLDEN = SHARED / "golden"

# Parity tolerances, fast path vs reference in the same dtype: (rtol, atol).
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None,
                 scale: float = 1.0, msg: str = "") -> None:
    """``torch.testing.assert_close`` with the table's tolerance for ``dtype``.

    ``scale`` widens both tolerances for long reductions (documented at the call site).
    """
    rtol, atol = TOL[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol * scale, atol=atol * scale,
                               msg=(lambda m: f"{msg}\n{m}") if msg else None)


def noncontig(x: torch.Tensor) -> torch.Tensor:
    """The same values as ``x`` in a non-contiguous layout (last two dims transposed)."""
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def weighted_loss(outs, seed: int = 1) -> torch.Tensor:
    """``sum_o (o * w_o).sum()`` over the differentiable outputs with seeded random weights
    ``w_o`` (drawn on the CPU, moved to each output's device), so that every output and every
    element of it reaches the gradient."""
    gen = torch.Generator().manual_seed(seed)
    return sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)).sum()
               for o in outs if o.requires_grad)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden vectors not found at {GOLDEN}")
    return GOLDEN


def disable_tf32() -> None:
    """Run float32 convolutions and matmuls in full float32 on the GPU.

    cuDNN convolutions default to TF32 on Ampere and later, so the float32 reference's
    ``F.conv2d`` errs by ~1e-4..1e-3 there: far outside ``TOL[torch.float32]``. Every GPU parity
    check compares against a reference run with TF32 off (legacy flags: they exist and mean the
    same from torch 1.7 to 2.13; the newer ``fp32_precision`` ones may not be mixed with them).
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Triton kernels run on the CPU interpreter when there is no GPU. The variable is read when a
# kernel is decorated, so it is set here, before any test module imports sstkd_ops.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
else:
    disable_tf32()
