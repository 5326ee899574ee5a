"""Fused contourlet backends (cpu / triton / cuda) against the reference: values, gradients,
registration (opcheck, torch.compile), and what is kept for backward."""

import warnings

import pytest
import torch
from conftest import TOL, no_host_reads, noncontig, requires

import sstkd_ops
from sstkd_ops import _backend
from sstkd_ops.contourlet.autograd import contourlet_apply
from sstkd_ops.contourlet.filters import DFB_FILTERS, LP_FILTERS

# "cpu" always (conftest.require_backend skips it, or fails it under CI=true, when the extension
# is not built); "cuda" only on a GPU machine
BACKENDS = ["cpu"]
if torch.cuda.is_available() and _backend.has_cuda_kernels():
    BACKENDS.append("cuda")
TRITON = _backend.has_triton() and (torch.cuda.is_available() or _backend.triton_interpreted())


def _device(backend):
    return "cuda" if backend in ("cuda",) or (backend == "triton" and torch.cuda.is_available()) \
        else "cpu"


def _flat(low, bands):
    return [low] + [t for level in bands for t in level]


def _check_pdfb(backend, shape, pfilt, dfilt, nlevs, dtype, contiguous=True):
    device = _device(backend)
    g = torch.Generator().manual_seed(hash((shape, pfilt, dfilt, nlevs)) % 2**31)
    x = torch.randn(shape, generator=g, dtype=dtype).to(device)
    if not contiguous:
        x = noncontig(x)
        assert not x.is_contiguous()
    xr = x.detach().clone().requires_grad_()
    xf = x.detach().clone().requires_grad_()
    ref = _flat(*sstkd_ops.pdfb_dec(xr, pfilt, dfilt, nlevs, backend="reference"))
    out = _flat(*sstkd_ops.pdfb_dec(xf, pfilt, dfilt, nlevs, backend=backend))
    rtol, atol = TOL[dtype]
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    cot = [torch.randn(t.shape, generator=g, dtype=dtype).to(device) for t in ref]
    (gr,) = torch.autograd.grad(ref, xr, cot)
    (gf,) = torch.autograd.grad(out, xf, cot)
    # the table holds: measured need 0.12x (float32) / 5e-5x (float64) of it, max abs error
    # 1.6e-6 / 6.4e-15, although the gradient sums over 2**l bands
    torch.testing.assert_close(gf, gr, rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pfilt", LP_FILTERS)
def test_every_pyramid_filter(backend, pfilt):
    _check_pdfb(backend, (2, 3, 32, 48), pfilt, "pkva", (2, 3), torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dfilt", DFB_FILTERS)
def test_every_directional_filter(backend, dfilt):
    _check_pdfb(backend, (1, 2, 64, 64), "9-7", dfilt, (0, 2, 3), torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nlevs, shape", [
    ((3, 3), (2, 4, 16, 16)),    # minimal size for the SSTKD default
    ((1,), (1, 1, 2, 2)),        # minimal size of a 1-level pyramid with a 1-level DFB
    ((0,), (1, 2, 2, 6)),        # wavelet level, non-square
    ((4,), (3, 1, 16, 24)),
    ((2, 0, 3), (1, 2, 32, 40)),
    ((5,), (1, 1, 32, 32)),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_levels_sizes_and_dtypes(backend, nlevs, shape, dtype):
    _check_pdfb(backend, shape, "9-7", "pkva", nlevs, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_input(backend):
    _check_pdfb(backend, (2, 3, 32, 32), "9-7", "pkva", (3, 3), torch.float32,
                contiguous=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dfilt, nlev", [("pkva", 3), ("dmaxflat4", 3), ("haar", 1),
                                         ("pkva8", 0)])
def test_lp_and_dfb_ops_and_reconstructions(backend, dfilt, nlev):
    device = _device(backend)
    x = torch.randn(2, 2, 32, 32, dtype=torch.float64, device=device)
    c, d = sstkd_ops.lp_dec(x, "5-3", backend=backend)
    cr, dr = sstkd_ops.lp_dec(x, "5-3", backend="reference")
    torch.testing.assert_close(c, cr)
    torch.testing.assert_close(d, dr)
    torch.testing.assert_close(sstkd_ops.lp_rec(c, d, "5-3", backend=backend),
                               sstkd_ops.lp_rec(cr, dr, "5-3", backend="reference"))
    bands = sstkd_ops.dfb_dec(x, dfilt, nlev, backend=backend)
    ref = sstkd_ops.dfb_dec(x, dfilt, nlev, backend="reference")
    for a, b in zip(bands, ref):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(sstkd_ops.dfb_rec(bands, dfilt, backend=backend), x)
    low, pb = sstkd_ops.pdfb_dec(x, "9-7", dfilt, (nlev, 2), backend=backend)
    rec = sstkd_ops.pdfb_rec(low, pb, "9-7", dfilt, backend=backend)
    torch.testing.assert_close(rec, sstkd_ops.pdfb_rec(low, pb, "9-7", dfilt,
                                                       backend="reference"))
    torch.testing.assert_close(rec, x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_of_first_and_second_order(backend):
    device = _device(backend)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, device=device, requires_grad=True)

    def f(t):
        low, bands = sstkd_ops.pdfb_dec(t, nlevs=(2,), backend=backend)
        return torch.cat([low.flatten()] + [b.flatten() for b in bands[0]])

    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(lambda t: f(t).pow(2).sum(), (x,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_is_saved_for_backward(backend):
    x = torch.randn(2, 3, 16, 16, device=_device(backend))
    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        low, bands = sstkd_ops.pdfb_dec(x, backend=backend)        # teacher: no grad
        assert low.grad_fn is None and not bands[1][0].requires_grad
        sstkd_ops.pdfb_dec(x.requires_grad_(), backend=backend)    # student: grad
    assert packed == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_and_compile_fullgraph(backend):
    x = torch.randn(6, 16 * 16, dtype=torch.float64, device=_device(backend),
                    requires_grad=True)
    torch.library.opcheck(contourlet_apply, (x, "pdfb_dec", [16, 16], "9-7", "pkva", [2, 3],
                                             backend, False))
    img = torch.randn(2, 3, 16, 16, device=_device(backend), requires_grad=True)

    def loss(t):
        low, bands = sstkd_ops.pdfb_dec(t, backend=backend)
        return low.square().mean() + sum(b.square().mean() for lv in bands for b in lv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.compile(loss, fullgraph=True, backend="eager")
        value = compiled(img)
    (g_c,) = torch.autograd.grad(value, img)
    (g_e,) = torch.autograd.grad(loss(img), img)
    torch.testing.assert_close(value, loss(img))
    torch.testing.assert_close(g_c, g_e)


@requires(TRITON, reason="needs triton with a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("dfilt, nlevs", [("pkva", (2, 3)), ("dmaxflat4", (0, 2))])
def test_triton_matches_reference(dfilt, nlevs):
    # the interpreter is slow: one small case per DFB family
    _check_pdfb("triton", (1, 2, 16, 16), "9-7", dfilt, nlevs, torch.float32)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_at_sstkd_size(dtype):
    if "cuda" not in BACKENDS:
        pytest.skip("extension built without CUDA kernels")
    _check_pdfb("cuda", (2, 64, 128, 128), "9-7", "pkva", (3, 3), dtype)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_cached_program_calls_do_not_sync_and_validate_once(backend, monkeypatch):
    from sstkd_ops.linprog import runtime as _program_op
    from sstkd_ops.linprog import triton_kernel as triton_lp
    validated, launches = [], []
    real_validate, real_kernel = _program_op.validate, triton_lp._program_kernel

    class CountingKernel:
        def __getitem__(self, grid):
            launches.append(grid)
            return real_kernel[grid]

    monkeypatch.setattr(_program_op, "validate",
                        lambda p, runs=False: (validated.append(p), real_validate(p, runs)))
    monkeypatch.setattr(triton_lp, "_program_kernel", CountingKernel())
    _program_op.packed_on.cache_clear()
    _program_op._validated.cache_clear()
    x = torch.randn(1, 1, 16, 16, device=_device(backend), requires_grad=True)

    def forward_backward():
        out = _flat(*sstkd_ops.pdfb_dec(x, "9-7", "pkva", (0, 2), backend=backend))
        counts = [len(launches)]
        (g,) = torch.autograd.grad(out, x, [torch.ones_like(t) for t in out])
        return counts + [len(launches)], g

    _, g_first = forward_backward()  # traces, validates and caches the program and adjoint
    before = len(launches)
    with no_host_reads():
        counts, g = forward_backward()
    torch.testing.assert_close(g, g_first, rtol=0, atol=0)
    assert len(validated) == 2  # the program and its adjoint, once each
    if backend == "triton":  # one launch per forward, one per backward
        assert counts == [before + 1, before + 2]
