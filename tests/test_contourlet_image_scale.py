"""Image-scale paths: the ``cpu`` backend splitting one plane's instructions across threads
gives bitwise the results of one thread, and the reference's tap-by-tap fan filtering of
CPU planes equals its ``conv2d`` form."""

import pytest
import torch
from conftest import weighted_loss

from sstkd_ops import pdfb_dec, pdfb_rec
from sstkd_ops.contourlet.filters import dfilters
from sstkd_ops.contourlet.reference.dfb import _fan_filter
from sstkd_ops.contourlet.reference.periodic import efilter2

# One or two planes of about 320^2: fewer planes than threads, and instructions (100k-element
# gathers, 320-row correlations) above the kernel's grain, so every kind of them is split.
CASES = [
    ((1, 1, 320, 320), torch.float64, "9-7", "pkva", (3, 3)),
    ((1, 1, 320, 288), torch.float32, "5-3", "9-7", (2,)),
    ((2, 1, 192, 128), torch.float64, "9-7", "dmaxflat4", (2, 3)),
]


def _run(threads, shape, dtype, pfilt, dfilt, nlevs):
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g, dtype=dtype, requires_grad=True)
        low, bands = pdfb_dec(x, pfilt, dfilt, nlevs, backend="cpu")
        outs = [low] + [b for level in bands for b in level]
        (gx,) = torch.autograd.grad(weighted_loss(outs), x)
        ins = [o.detach().requires_grad_() for o in outs]
        it = iter(ins[1:])
        rec = pdfb_rec(ins[0], [[next(it) for _ in level] for level in bands], pfilt, dfilt,
                       backend="cpu")
        grads = torch.autograd.grad(weighted_loss([rec], seed=2), ins)
        return [o.detach() for o in outs] + [gx, rec.detach(), *grads]
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("backend", ["cpu"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[2]}-{c[3]}-{c[0][0]}x{c[0][2]}")
def test_cpu_threads_bitwise(backend, case):
    one = _run(1, *case)
    for threads in (2, 3):
        many = _run(threads, *case)
        assert len(many) == len(one)
        for k, (a, b) in enumerate(zip(one, many)):
            assert torch.equal(a, b), f"tensor {k} differs between 1 and {threads} threads"


@pytest.mark.parametrize("name", ["9-7", "5-3", "haar"])
@pytest.mark.parametrize("mode", ["per", "qper_col"])
@pytest.mark.parametrize("shift", [(0, 0), (-1, 0), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fan_filter_matches_conv2d(name, mode, shift, dtype):
    # float32: measured equal to conv2d's result on these sizes; the tolerance allows a
    # different summation order in another conv2d kernel
    tol = {torch.float64: 1e-13, torch.float32: 1e-5}[dtype]
    x = torch.randn(3, 18, 14, dtype=dtype)
    for f in dfilters(name, "d", dtype, torch.device("cpu")):
        torch.testing.assert_close(_fan_filter(x, f, mode, shift), efilter2(x, f, mode, shift),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("threads", [1, 2])
def test_kept_workspace_carries_nothing_between_calls(threads):
    """The thread that runs an image keeps its workspace between calls (not cleared): a call
    after one that filled it with NaN, and after a larger and a smaller program, gives the
    same bits as the first call (every program writes a workspace value before reading it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(3)
        x = torch.randn(1, 1, 96, 80, dtype=torch.float64, generator=g)

        def run(t):
            low, bands = pdfb_dec(t, "9-7", "pkva", (2, 3), backend="cpu")
            return [low] + [b for level in bands for b in level]

        first = run(x)
        run(torch.full_like(x, float("nan")))  # NaN everywhere in the workspace
        pdfb_dec(torch.randn(1, 1, 160, 176, dtype=torch.float64), backend="cpu")  # larger
        pdfb_dec(torch.randn(1, 1, 32, 32, dtype=torch.float64), backend="cpu")  # smaller
        for got, want in zip(run(x), first):
            assert torch.equal(got, want)
        ref = pdfb_dec(x, "9-7", "pkva", (2, 3), backend="reference")[0]
        torch.testing.assert_close(first[0], ref, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_num_threads(old)
