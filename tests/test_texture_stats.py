"""Texture statistics ops: golden parity (STLNet QCO), properties, edge cases, bad input.

Fast-path parity, opcheck, torch.compile and determinism: test_texture_stats_fused.py;
Every test parametrised by ``backend`` runs on each backend available here (the Triton kernels
under the interpreter when there is no GPU); Triton-specific checks: test_texture_stats_triton.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CPU_BACKENDS, assert_close

import sstkd_ops
from sstkd_ops import _checks
from sstkd_ops.texture import qco_1d, qco_1d_tem, qco_2d, texture_equalize
from sstkd_ops.texture import reference as ref

# every backend, forced: C++ and Triton on the CPU interpreter (tiny inputs); one that is not
# built here skips (fails under CI=true) through conftest.require_backend
BACKENDS = CPU_BACKENDS


def _golden_cases(golden_dir):
    index = json.loads((golden_dir / "qco" / "index.json").read_text())
    return [c["file"] for c in index["cases"]]


GOLDEN_FILES = [
    "qco1d_randn_2x16x12x16_L8.npz", "qco1d_randn_2x16x12x16_L64.npz",
    "qco1d_randn_2x16x12x16_L128.npz", "qco1d_absn_1x8x7x9_L8.npz",
    "qco1d_absn_1x8x7x9_L64.npz", "qco1d_absn_1x8x7x9_L128.npz",
    "qco1d_relu_ties_1x8x7x9_L8.npz", "qco1d_const_1x4x3x5_L8.npz",
    "qco2d_randn_2x16x16x16_s1_L8.npz", "qco2d_randn_1x8x20x28_s1_L8.npz",
    "qco2d_const_1x4x8x8_s1_L8.npz", "qco2d_randn_2x8x32x32_s2_L8.npz",
    "qco2d_randn_1x8x48x48_s3_L8.npz", "qco2d_randn_1x8x48x48_s6_L8.npz",
]


def _close_nan(actual, expected, dtype, msg):
    actual, expected = actual.detach(), torch.as_tensor(expected)
    assert torch.equal(actual.isnan(), expected.isnan()), f"{msg}: NaN pattern differs"
    assert_close(actual.nan_to_num(0.0), expected.nan_to_num(0.0), dtype, msg=msg)


def test_golden_index_lists_every_file(golden_dir):
    assert sorted(_golden_cases(golden_dir)) == sorted(GOLDEN_FILES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", ["", "_f32"])
@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_qco_golden(golden_dir, name, suffix, backend):
    """Forward values and both stored gradients of STLNet's QCO, float64 and float32."""
    d = np.load(golden_dir / "qco" / name)
    dtype = torch.float32 if suffix else torch.float64
    x = torch.tensor(d["x" + suffix], dtype=dtype, requires_grad=True)
    L = int(d["level_num"])
    w = torch.tensor(d["w" + suffix], dtype=dtype)
    wc = torch.tensor(d["w_cat" + suffix], dtype=dtype)
    if str(d["kind"]) == "1d":
        out = qco_1d(x, L, backend=backend)
        levels, sta = out.levels, out.sta
        _close_nan(out.cos_sim.reshape(x.shape[0], -1), d["cos_sim" + suffix], dtype, "cos_sim")
        loss_cat = (wc[:, 0] * levels).sum() + (wc[:, 1] * sta).sum()
    else:
        S = int(d["scale"])
        levels, sta = qco_2d(x, L, S, backend=backend)
        G = S * S
        q_j = levels[:, :, None, :].expand(-1, -1, L, L).reshape(-1, G, L * L)
        q_i = levels[:, :, :, None].expand(-1, -1, L, L).reshape(-1, G, L * L)
        loss_cat = ((wc[:, 0] * q_j).sum() + (wc[:, 1] * q_i).sum()
                    + (wc[:, 2] * sta.reshape(-1, G, L * L)).sum())
    _close_nan(levels, d["q_levels" + suffix], dtype, "levels")
    _close_nan(sta, d["sta" + suffix], dtype, "sta")
    (g,) = torch.autograd.grad((w * sta).sum(), x, retain_graph=True)
    _close_nan(g, d["grad_x" + suffix], dtype, "grad_x")
    (gc,) = torch.autograd.grad(loss_cat, x)
    _close_nan(gc, d["grad_x_cat" + suffix], dtype, "grad_x_cat")


# ------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("backend", BACKENDS)
def test_texture_equalize_properties(backend):
    x = torch.randn(2, 8, 13, 10, dtype=torch.float64, requires_grad=True)
    out = texture_equalize(x, 16, 2, 0.4, ((1, 1), (0, 1), (-1, 2)), backend=backend)
    assert out.q.requires_grad and not out.levels.requires_grad  # levels carry no gradient
    x = x.detach()
    assert out.q.shape == (2, 13, 10) and out.cooc.shape == (2, 3, 16, 16)
    assert_close(out.hist.sum(-1), torch.ones(2, dtype=torch.float64))
    assert_close(out.cooc.sum((-1, -2)), torch.ones(2, 3, dtype=torch.float64))
    assert bool((out.q >= 0).all()) and bool((out.q <= 1).all())
    assert bool((out.levels[:, 1:] >= out.levels[:, :-1]).all())
    # theta = 1 disables the denoising: hist is the plain mean of the hat code
    s = ref.cosine_similarity_map(x).reshape(2, -1)
    plain = texture_equalize(x, 16, 2, 1.0, backend=backend).hist
    assert_close(plain, ref.hat_encoding(s, out.levels).mean(-1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_qco_sta_mass(backend):
    x = torch.randn(3, 4, 9, 7, dtype=torch.float64)
    assert_close(qco_1d(x, 6, backend=backend).sta.sum(-1), torch.ones(3, dtype=torch.float64))
    _, sta = qco_2d(x[..., :8, :6], 2, 2, backend=backend)
    # not rounding: STLNet divides the 2-D counts by total + 1e-6 (QCO2D_EPS), so the mass is
    # 1 - 1e-6 / total; measured 2.5e-7 below 1 here (4-pixel groups)
    torch.testing.assert_close(sta.sum((-1, -2)), torch.ones(3, 4, dtype=torch.float64),
                               rtol=0, atol=5e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tem_matches_official_bmm(backend):
    """The TEM product equals bmm(f, quant^T) with STLNet's materialised code."""
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    out = qco_1d(x, 8, backend="reference")
    f = torch.randn(2, 3, 8, dtype=torch.float64)
    s = out.cos_sim.reshape(2, -1)
    quant = ref.stlnet_encoding(s, *ref.stlnet_levels(s, 8))
    expected = torch.bmm(f, quant.transpose(1, 2)).reshape(2, 3, 5, 7)
    assert_close(qco_1d_tem(f, out.cos_sim, out.levels, backend=backend), expected)


def test_reference_dtiem_gradcheck_with_frozen_levels(monkeypatch):
    """float64 finite differences of the reference DTIEM with the (gradient-free) levels held
    fixed, away from the kinks (pixels on a level / at the clip threshold)."""
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    s = ref.cosine_similarity_map(x).reshape(1, -1)
    levels = ref.lloyd_levels(s, 4, 1)
    monkeypatch.setattr(ref, "lloyd_levels", lambda *a: levels)
    xg = x.clone().requires_grad_()

    def fn(t):
        out = ref.texture_equalize(t, 4, 1, 0.6, ((1, 1), (0, -1)))
        return out[0], out[1], out[2]

    assert torch.autograd.gradcheck(fn, (xg,), eps=1e-7, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_qco_gradcheck(backend):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tuple(qco_1d(t, 4, backend=backend)[:2]), (x,),
                                    eps=1e-7, atol=1e-6, fast_mode=True)
    x2 = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: qco_2d(t, 4, 2, backend=backend), (x2,),
                                    eps=1e-7, atol=1e-6, fast_mode=True)
    out = qco_1d(x.detach(), 4, backend="reference")
    f = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    cs = out.cos_sim.clone().requires_grad_()
    lv = out.levels.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: qco_1d_tem(a, b, c, backend=backend),
                                    (f, cs, lv), eps=1e-7, atol=1e-6, fast_mode=True)


# ------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_map(backend):
    x = torch.full((2, 4, 6, 6), 0.7, dtype=torch.float64, requires_grad=True)
    out = qco_1d(x, 8, backend=backend)  # official: 0 / 0
    assert bool(out.sta.isnan().all())
    (g,) = torch.autograd.grad(out.sta.sum(), x)
    assert bool(g.isnan().all())
    levels, sta = qco_2d(x, 3, 2, backend=backend)  # official 2-D has + 1e-6
    assert bool((sta == 0).all())
    (g,) = torch.autograd.grad(sta.sum(), x)
    assert bool((g == 0).all())
    te = texture_equalize(x, 8, 2, 0.5, backend=backend)
    assert bool(torch.isfinite(te.q).all()) and bool((te.q == te.q.flatten()[0]).all())
    assert_close(te.hist.sum(-1), torch.ones(2, dtype=torch.float64))
    (g,) = torch.autograd.grad(te.q.sum() + te.cooc.sum() + te.hist.sum(), x)
    assert bool((g == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_feature_vector(backend):
    """An all-zero pixel vector has cosine 0 (F.normalize's eps); everything stays finite."""
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    x[:, :, 2, 3] = 0
    x.requires_grad_()
    out = qco_1d(x, 8, backend=backend)
    assert bool((out.cos_sim[:, 2, 3] == 0).all())
    te = texture_equalize(x, 8, backend=backend)
    (g,) = torch.autograd.grad(te.q.sum() + out.sta.sum(), x)
    assert bool(torch.isfinite(g).all())
    # an all-zero image: global mean 0, every S = 0, i.e. a constant map
    z = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    assert bool(torch.isfinite(texture_equalize(z, 4, backend=backend).q).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_level_and_one_pixel(backend):
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    te = texture_equalize(x, 1, backend=backend)
    assert bool((te.q == 0.5).all()) and bool((te.hist == 1).all()) and bool((te.cooc == 1).all())
    (g,) = torch.autograd.grad(te.q.sum(), x)
    assert bool((g == 0).all())
    out = qco_1d(x, 1, backend=backend)  # one level, mask width max - min
    assert_close(out.sta, torch.ones(2, 1, dtype=torch.float64))
    one = torch.randn(2, 4, 1, 1, dtype=torch.float64)
    te1 = texture_equalize(one, 4, offsets=((1, 1), (0, 0)), backend=backend)
    assert bool((te1.cooc[:, 0] == 0).all())  # no pixel pair fits
    assert_close(te1.cooc[:, 1].sum((-1, -2)), torch.ones(2, dtype=torch.float64))
    assert bool(qco_1d(one, 4, backend=backend).sta.isnan().all())  # constant S


@pytest.fixture
def finite_checks():
    """The opt-in NaN/Inf checks on for one test (they cost a device sync, off by default)."""
    previous = _checks.set_finite_checks(True)
    yield
    _checks.set_finite_checks(previous)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises(backend, bad, finite_checks):
    x = torch.randn(1, 3, 4, 4)
    x[0, 1, 2, 2] = bad
    with pytest.raises(ValueError, match="finite"):
        qco_1d(x, 4, backend=backend)
    with pytest.raises(ValueError, match="finite"):
        qco_2d(x, 2, 1, backend=backend)
    with pytest.raises(ValueError, match="finite"):
        texture_equalize(x, 4, backend=backend)
    cs = torch.randn(1, 4, 4)
    cs[0, 0, 0] = bad
    with pytest.raises(ValueError, match="finite"):
        qco_1d_tem(torch.randn(1, 2, 4), cs, torch.randn(1, 4), backend=backend)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("op", ["qco_1d", "qco_2d", "texture_equalize"])
def test_num_levels_errors(op):
    fn = getattr(sstkd_ops, op)
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=rf"{op}: argument 'num_levels' expected an int >= 1"):
        fn(x, 0)
    for bad in (2.0, True, "8"):
        with pytest.raises(TypeError, match=rf"{op}: argument 'num_levels' expected an int"):
            fn(x, bad)


def test_argument_errors():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="argument 'x' expected a 4-D tensor"):
        texture_equalize(x[0])
    with pytest.raises(TypeError, match="argument 'x' expected dtype float32 or float64"):
        qco_1d(x.long(), 4)
    with pytest.raises(TypeError, match="argument 'x' expected a torch.Tensor"):
        qco_1d(x.numpy(), 4)
    with pytest.raises(ValueError, match="argument 'theta' expected a value <= 1.0"):
        texture_equalize(x, 4, theta=1.5)
    with pytest.raises(ValueError, match="argument 'iters' expected an int >= 0"):
        texture_equalize(x, 4, iters=-1)
    with pytest.raises(TypeError, match="argument 'offsets' expected a non-empty sequence"):
        texture_equalize(x, 4, offsets=((1, 1.5),))
    with pytest.raises(TypeError, match="argument 'offsets'"):
        texture_equalize(x, 4, offsets=())
    with pytest.raises(ValueError, match="argument 'scale' expected a divisor"):
        qco_2d(torch.randn(1, 2, 8, 8), 4, 3)
    with pytest.raises(ValueError, match="qco_2d: argument 'x' expected H and W both"):
        qco_2d(torch.randn(1, 2, 8, 3), 4, 1)
    with pytest.raises(ValueError, match="qco_1d_tem: argument 'levels' expected shape"):
        qco_1d_tem(torch.randn(1, 2, 4), torch.randn(1, 3, 3), torch.randn(1, 5))
    with pytest.raises(TypeError, match="qco_1d_tem: argument 'f' expected the dtype"):
        qco_1d_tem(torch.randn(1, 2, 4).double(), torch.randn(1, 3, 3), torch.randn(1, 4))
    with pytest.raises(ValueError, match="argument 'backend' expected one of"):
        qco_1d(x, 4, backend="gpu")
