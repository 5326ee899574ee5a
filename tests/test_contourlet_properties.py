"""Properties of the contourlet ops: perfect reconstruction, batching, shapes, gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import CPU_BACKENDS, assert_close

from sstkd_ops import contourlet as C
from sstkd_ops.contourlet.filters import DFB_FILTERS, LP_FILTERS, dfilters

NLEVS = [(0, 1), (2, 3)]  # covers the wavelet level (0), 1, 2 and 3 DFB levels
# every property on the reference and the C++ kernels, forced; the Triton interpreter (slow) on
# the small ones (Haar: orthogonality, fused = reference; empty inputs) and in
# test_contourlet_fused.py
EXACT_BACKENDS = ("reference", "cpu")


def _rand(*shape, dtype=torch.float64):
    return torch.rand(*shape, dtype=dtype)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("pfilt,dfilt", list(itertools.product(LP_FILTERS, DFB_FILTERS)))
def test_pdfb_perfect_reconstruction(pfilt, dfilt, backend):
    for nlevs in NLEVS:
        m = C.pdfb_multiple(nlevs, dfilt)
        x = _rand(1, 2, m, 2 * m)
        low, bands = C.pdfb_dec(x, pfilt, dfilt, nlevs, backend=backend)
        # 9-7 coefficients carry ~14 digits, so PR holds to ~1e-13 only (toolbox too).
        assert_close(C.pdfb_rec(low, bands, pfilt, dfilt, backend=backend), x, msg=f"{nlevs}")


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("dfilt", DFB_FILTERS)
@pytest.mark.parametrize("nlev", [0, 1, 2, 3, 4])
def test_dfb_perfect_reconstruction_and_shapes(dfilt, nlev, backend):
    x = _rand(1, 1, 16, 32)
    bands = C.dfb_dec(x, dfilt, nlev, backend=backend)
    assert len(bands) == 2 ** nlev
    assert [tuple(b.shape[-2:]) for b in bands] == C.dfb_band_shapes(16, 32, nlev)
    assert sum(b[0, 0].numel() for b in bands) == x.numel()  # critically sampled
    assert_close(C.dfb_rec(bands, dfilt, backend=backend), x)


def test_dfb_band_shapes_as_method():
    # METHOD.md: l >= 2 -> (H/2^(l-1), W/2) for k < 2^(l-1), (H/2, W/2^(l-1)) otherwise;
    # l = 1 -> two (H/2, W) bands (toolbox).
    for nlev in (2, 3, 4):
        half = 2 ** (nlev - 1)
        shapes = [tuple(b.shape[-2:]) for b in C.dfb_dec(_rand(1, 1, 32, 64), "pkva", nlev)]
        assert shapes == [(32 // half, 32)] * half + [(16, 64 // half)] * half
    assert [tuple(b.shape[-2:]) for b in C.dfb_dec(_rand(1, 1, 8, 12), "pkva", 1)] == [(4, 12)] * 2


def test_pdfb_shapes():
    low, bands = C.pdfb_dec(_rand(2, 3, 64, 96), nlevs=(0, 2, 3))
    assert low.shape == (2, 3, 8, 12)
    assert [len(b) for b in bands] == [3, 4, 8]
    assert all(b.shape == (2, 3, 8, 12) for b in bands[0])
    assert [tuple(b.shape[-2:]) for b in bands[1]] == [(16, 24)] * 4
    assert [tuple(b.shape[-2:]) for b in bands[2]] == [(16, 48)] * 4 + [(32, 24)] * 4


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("pfilt,dfilt", [("9-7", "pkva"), ("5-3", "dmaxflat4"), ("Burt", "haar")])
def test_batch_and_channels_equal_per_plane(pfilt, dfilt, backend):
    x = _rand(2, 3, 32, 48)
    low, bands = C.pdfb_dec(x, pfilt, dfilt, (0, 3), backend=backend)
    for b, c in itertools.product(range(2), range(3)):
        low1, bands1 = C.pdfb_dec(x[b:b + 1, c:c + 1].clone(), pfilt, dfilt, (0, 3),
                                  backend=backend)
        assert torch.equal(low[b:b + 1, c:c + 1], low1)
        for lev, lev1 in zip(bands, bands1):
            for t, t1 in zip(lev, lev1):
                assert torch.equal(t[b:b + 1, c:c + 1], t1)


@pytest.mark.parametrize("nlevs", [(1,), (2,), (3,), (4,), (0,), (0, 0), (1, 3)])
@pytest.mark.parametrize("dfilt", ["pkva", "dmaxflat7", "9-7"])
def test_minimal_sizes(nlevs, dfilt):
    m = C.pdfb_multiple(nlevs, dfilt)
    for h, w in ((m, m), (m, 3 * m)):
        x = _rand(1, 1, h, w)
        low, bands = C.pdfb_dec(x, "9-7", dfilt, nlevs)
        assert_close(C.pdfb_rec(low, bands, "9-7", dfilt), x)


def test_pdfb_multiple():
    assert C.pdfb_multiple((3, 3)) == 8 and C.pdfb_multiple((2, 3)) == 4
    assert C.pdfb_multiple((0,)) == 2 and C.pdfb_multiple((5,)) == 16
    assert C.pdfb_multiple((0, 2, 3)) == 8 and C.pdfb_multiple(()) == 1
    assert C.pdfb_multiple((2, 3), "9-7") == 8 and C.pdfb_multiple((2,), "haar") == 4


@pytest.mark.parametrize("pfilt,dfilt", [("9-7", "pkva"), ("maxflat", "dmaxflat5"),
                                         ("5-3", "9-7")])
def test_float32(pfilt, dfilt):
    x = _rand(2, 2, 32, 32, dtype=torch.float32)
    low, bands = C.pdfb_dec(x, pfilt, dfilt, (2, 3))
    assert low.dtype == torch.float32 and bands[1][0].dtype == torch.float32
    # The table holds for two pyramid levels of long filters: measured max abs error 8.9e-7
    # (PR) and 9.5e-7 (against float64), 0.09x and 0.03x of the float32 tolerance.
    assert_close(C.pdfb_rec(low, bands, pfilt, dfilt), x)
    low64, _ = C.pdfb_dec(x.double(), pfilt, dfilt, (2, 3))
    assert_close(low, low64.float())


def test_non_contiguous_input():
    base = _rand(3, 2, 48, 32)
    x = base.transpose(-1, -2)[::2]
    assert not x.is_contiguous()
    low, bands = C.pdfb_dec(x, nlevs=(1, 3))
    low_c, bands_c = C.pdfb_dec(x.contiguous(), nlevs=(1, 3))
    assert torch.equal(low, low_c)
    assert all(torch.equal(a, b) for la, lb in zip(bands, bands_c) for a, b in zip(la, lb))
    assert_close(C.pdfb_rec(low, bands), x)


def test_lp_roundtrip_and_shapes():
    for pfilt in LP_FILTERS:
        x = _rand(2, 1, 10, 6)
        c, d = C.lp_dec(x, pfilt)
        assert c.shape == (2, 1, 5, 3) and d.shape == x.shape
        assert_close(C.lp_rec(c, d, pfilt), x)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("pfilt,dfilt,nlevs", [("9-7", "pkva", (0, 2)), ("5-3", "haar", (1, 2))])
def test_gradcheck_pdfb(pfilt, dfilt, nlevs, backend):
    x = _rand(1, 1, 8, 8).requires_grad_()

    def dec(t):
        low, bands = C.pdfb_dec(t, pfilt, dfilt, nlevs, backend=backend)
        return (low, *[b for lev in bands for b in lev])

    assert torch.autograd.gradcheck(dec, (x,), fast_mode=True)
    low, bands = C.pdfb_dec(x.detach(), pfilt, dfilt, nlevs)
    flat = [low] + [b for lev in bands for b in lev]
    inputs = tuple(t.clone().requires_grad_() for t in flat)
    sizes = [len(lev) for lev in bands]

    def rec(*ts):
        it = iter(ts[1:])
        return C.pdfb_rec(ts[0], [[next(it) for _ in range(n)] for n in sizes], pfilt, dfilt,
                          backend=backend)

    assert torch.autograd.gradcheck(rec, inputs, fast_mode=True)


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_linearity(backend):
    x, y = _rand(1, 2, 32, 32), _rand(1, 2, 32, 32)
    lx, bx = C.pdfb_dec(x, "9-7", "pkva8", (2, 3), backend=backend)
    ly, by = C.pdfb_dec(y, "9-7", "pkva8", (2, 3), backend=backend)
    lz, bz = C.pdfb_dec(2.0 * x - 3.0 * y, "9-7", "pkva8", (2, 3), backend=backend)
    assert_close(lz, 2.0 * lx - 3.0 * ly)
    for a, b, c in zip(sum(bx, []), sum(by, []), sum(bz, [])):
        assert_close(c, 2.0 * a - 3.0 * b)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("nlev", [1, 2, 3, 4])
def test_haar_dfb_is_orthogonal(nlev, backend):
    # The Haar DFB is orthonormal, so its reconstruction is its adjoint.
    x = _rand(1, 1, 16, 16)
    y = C.dfb_dec(x, "haar", nlev, backend=backend)
    z = [torch.rand_like(b) for b in y]
    lhs = sum((a * b).sum() for a, b in zip(y, z))
    assert_close(lhs, (x * C.dfb_rec(z, "haar", backend=backend)).sum())
    assert_close(sum((b * b).sum() for b in y), (x * x).sum())


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_adjoint_matches_autograd(backend):
    # <T x, v> == <x, T^* v> with T^* from autograd: the vjp is the adjoint of the forward.
    x = _rand(1, 1, 16, 16).requires_grad_()
    low, bands = C.pdfb_dec(x, "pkva", "pkva", (2,), backend=backend)
    flat = [low] + bands[0]
    vs = [torch.rand_like(t) for t in flat]
    grad = torch.autograd.grad(flat, x, vs)[0]
    assert_close(sum((t * v).sum() for t, v in zip(flat, vs)), (x * grad).sum())


def test_dmaxflat_filters_pr_condition():
    # 2-D biorthogonality of the diamond pair: h0*mod(g1) + mod(h0)*g1 -> 2 delta ... checked
    # through the DFB itself at one level, for the orders without golden tables too.
    for name in ("dmaxflat4", "dmaxflat5", "dmaxflat6", "dmaxflat7"):
        h0, h1 = dfilters(name, "d")
        assert_close(h0.sum(), torch.tensor(2.0, dtype=torch.float64).sqrt())
        assert torch.equal(h0, h0.flip(0)) and torch.equal(h0, h0.T)
        x = _rand(1, 1, 64, 64)
        assert_close(C.dfb_rec(C.dfb_dec(x, name, 1), name), x)


def test_nan_propagates():
    x = _rand(1, 1, 32, 32)
    x[0, 0, 5, 7] = float("nan")
    low, bands = C.pdfb_dec(x, nlevs=(2,))
    assert torch.isnan(low).any() and any(torch.isnan(b).any() for b in bands[0])
    assert torch.isfinite(C.pdfb_dec(torch.nan_to_num(x), nlevs=(2,))[0]).all()


def test_padding_roundtrip():
    x = _rand(2, 1, 30, 45)
    xp, size = C.pdfb_pad(x, (2, 3))
    assert xp.shape == (2, 1, 32, 48) and size == (30, 45)
    assert torch.equal(xp[..., :30, :45], x)
    assert torch.equal(xp[..., 30, :45], x[..., 28, :])  # reflection, edge not repeated
    low, bands = C.pdfb_dec(x, nlevs=(2, 3), pad=True)
    assert_close(C.pdfb_rec(low, bands, size=size), x)
    same, _ = C.pdfb_pad(xp, (2, 3))
    assert same is xp
    tiny, _ = C.pdfb_pad(_rand(1, 1, 1, 3), (3,))  # longer padding than the image
    assert tiny.shape == (1, 1, 4, 4)


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "reference"])
def test_fused_backend_matches_reference(backend):
    """Each fused backend, forced, against the reference: every subband and the reconstruction."""
    x = _rand(2, 3, 16, 16)
    # Haar DFB: the Triton interpreter runs it in seconds (pkva: ~1 min)
    low, bands = C.pdfb_dec(x, "9-7", "haar", (0, 2), backend=backend)
    ref_low, ref_bands = C.pdfb_dec(x, "9-7", "haar", (0, 2), backend="reference")
    assert_close(low, ref_low)
    assert [len(level) for level in bands] == [len(level) for level in ref_bands]
    for level, ref_level in zip(bands, ref_bands):
        for band, ref_band in zip(level, ref_level):
            assert_close(band, ref_band)
    assert_close(C.pdfb_rec(low, bands, "9-7", "haar", backend=backend),
                 C.pdfb_rec(ref_low, ref_bands, "9-7", "haar", backend="reference"))


def test_float32_autograd_runs():
    x = _rand(1, 2, 16, 16, dtype=torch.float32).requires_grad_()
    low, bands = C.pdfb_dec(x, nlevs=(1, 2))
    (low.square().sum() + sum(b.square().sum() for lev in bands for b in lev)).backward()
    assert x.grad is not None and x.grad.dtype == torch.float32


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("b, c", [(0, 2), (2, 0)])
def test_empty_batch_or_channels_agree_across_backends(backend, b, c):
    x = torch.randn(b, c, 16, 16, requires_grad=True)
    low, bands = C.pdfb_dec(x, "9-7", "pkva", (0, 2), backend=backend)
    ref_low, ref_bands = C.pdfb_dec(x, "9-7", "pkva", (0, 2), backend="reference")
    flat = [low] + [t for level in bands for t in level]
    ref = [ref_low] + [t for level in ref_bands for t in level]
    assert [t.shape for t in flat] == [t.shape for t in ref]
    assert all(t.shape[:2] == (b, c) and t.numel() == 0 for t in flat)
    (g,) = torch.autograd.grad(flat, x, [torch.ones_like(t) for t in flat])
    assert g.shape == x.shape
    rec = C.pdfb_rec(low, bands, "9-7", "pkva", backend=backend)
    assert rec.shape == x.shape
    coarse, detail = C.lp_dec(x, backend=backend)
    assert (coarse.shape, detail.shape) == ((b, c, 8, 8), (b, c, 16, 16))
    (g,) = torch.autograd.grad([coarse, detail], x, [torch.ones_like(coarse),
                                                     torch.ones_like(detail)])
    assert g.shape == x.shape
    dfb = C.dfb_dec(x, "pkva", 2, backend=backend)
    assert [t.shape for t in dfb] == [(b, c, 8, 8)] * 4
    (g,) = torch.autograd.grad(dfb, x, [torch.ones_like(t) for t in dfb])
    assert g.shape == x.shape
