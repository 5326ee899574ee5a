"""Shared test fixtures and the one tolerance table for parity tests."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def no_host_reads():
    """Fail on any read of a tensor value on the host (what a device sync would be on CUDA)."""
    def forbid(name):
        def fail(self, *args, **kwargs):
            raise AssertionError(f"host synchronisation: Tensor.{name} called on the fast path")
        return fail

    names = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    try:
        for n in names:
            setattr(torch.Tensor, n, forbid(n))
        yield
    finally:
        for n, v in saved.items():
            setattr(torch.Tensor, n, v)


def texture_ops_forward_backward(x: torch.Tensor, f: torch.Tensor, backend: str):
    """Forward and backward of all four texture ops on one backend, with no host reads allowed;
    returns the gradients with respect to ``x`` and ``f``."""
    from sstkd_ops import qco_1d, qco_1d_tem, qco_2d, texture_equalize

    with no_host_reads():
        o = qco_1d(x, 4, backend=backend)
        tem = qco_1d_tem(f, o.cos_sim, o.levels, backend=backend)
        lv2, sta2 = qco_2d(x, 3, 2, backend=backend)
        te = texture_equalize(x, 4, backend=backend)
        loss = (o.sta.sum() + o.levels.sum() + tem.sum() + lv2.sum() + sta2.sum() + te.q.sum()
                + te.cooc.sum() + te.hist.sum())
        return torch.autograd.grad(loss, (x, f))


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


# CI sets CI=true. There a missing compiled extension, Triton or golden folder fails the tests
# that need it: a skip would let CI pass with the thing under test absent. Locally they skip.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# The backends every CPU test runs explicitly (Triton on the interpreter, small inputs only).
CPU_BACKENDS = ("reference", "cpu", "triton")


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false; fail it instead under ``CI=true``.

    The one way a test says it needs the compiled extension, Triton or the golden vectors.
    CUDA-only tests keep plain skips (CI has no GPU).
    """
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(reason)


def requires(condition: bool, reason: str) -> pytest.MarkDecorator:
    """``require`` as a test or module mark (``pytestmark = requires(...)``)."""
    return pytest.mark.requires(condition, reason=reason)


def require_backend(backend: str) -> None:
    """``require`` that ``backend`` runs here (on CPU tensors, or CUDA ones when there is a GPU),
    saying why when it does not."""
    from sstkd_ops import _backend

    if backend == "cpu":
        why = f"compiled extension sstkd_ops._C not importable ({_backend.extension_error()})"
    elif backend == "triton":
        why = ("Triton not installed" if not _backend.has_triton()
               else "Triton on CPU tensors needs TRITON_INTERPRET=1")
    else:
        why = f"backend {backend!r} does not run on CPU tensors"
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    require(any(backend in _backend.available_backends(d) for d in devices), why)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(condition, reason): skip when false, fail under CI=true")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply ``requires`` marks, and ``require_backend`` to every test parametrised with
    ``backend="cpu"`` or ``backend="triton"`` (``"cuda"`` stays a plain skip in its test)."""
    for mark in item.iter_markers("requires"):
        require(bool(mark.args[0]), mark.kwargs["reason"])
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") in ("cpu", "triton"):
        require_backend(callspec.params["backend"])


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    require(GOLDEN.is_dir(), f"golden vectors not found at {GOLDEN}")
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
