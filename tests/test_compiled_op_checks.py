"""Argument checks of the compiled texture-statistics ops and of the public texture ops.

Every ``torch.ops.sstkd_ops.texstat_*`` op is called directly with each bad argument in turn
and must raise ``RuntimeError`` naming the op and the argument (never crash the process). The
device checks run the CPU kernel on a ``meta`` tensor beside CPU ones (redispatch to the CPU
kernel: plain dispatch would pick the fake function). Also: one level-count limit for every
backend, empty batches / channels on every backend, and no host read of a device value in the
fused forward and backward.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CPU_BACKENDS, no_host_reads, requires, texture_ops_forward_backward

from sstkd_ops import _checks
from sstkd_ops.texture import MAX_LEVELS, qco_1d, qco_1d_tem, qco_2d, texture_equalize
from sstkd_ops.texture import autograd as _ops
from sstkd_ops.texture import reference as ref

BACKENDS = CPU_BACKENDS  # one not built here skips, or fails under CI=true (conftest)
needs_compiled = requires(_ops.compiled_ops_present(), reason="compiled extension not built")
META = torch.device("meta")


def _op(name):
    return getattr(torch.ops.sstkd_ops, name).default


def _cpu_kernel(name, *args):
    """Run the CPU kernel of op ``name`` whatever the devices of ``args``."""
    keyset = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    return _op(name).redispatch(keyset, *args)


def _valid_args():
    """Valid arguments of every compiled texture op (B = 2, 4 x 6 images, L = N = 4)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 6, generator=g)
    s, pnorm, gunit, gnorm = _op("texstat_cos_sim")(x, 1)
    levels, sta, counts, extrema = _op("texstat_qco")(s, 4, False)
    lv2, sta2, counts2, ext2 = _op("texstat_qco")(s, 4, True)
    f = torch.randn(2, 5, 4, generator=g)
    sf = s.reshape(2, 24)
    delta = levels[:, 1] - levels[:, 0]
    q, cooc, hist, dlv, raw = _op("texstat_dtiem")(s, 4, 1, 0.5, [1, 1, 0, 1])
    return {
        "texstat_cos_sim": [x, 1],
        "texstat_cos_sim_backward": [torch.ones_like(s), x, s, pnorm, gunit, gnorm, 1],
        "texstat_qco": [s, 4, False],
        "texstat_qco_backward": [torch.ones_like(levels), torch.ones_like(sta), s, levels,
                                 counts, extrema, False],
        "texstat_qco_backward_cooc": [torch.ones_like(lv2), torch.ones_like(sta2), s, lv2,
                                      counts2, ext2, True],
        "texstat_qco_tem": [f, sf, levels, delta],
        "texstat_qco_tem_backward": [torch.ones(2, 5, 24), f, sf, levels, delta],
        "texstat_dtiem": [s, 4, 1, 0.5, [1, 1, 0, 1]],
        "texstat_dtiem_backward": [torch.ones_like(q), torch.ones_like(cooc),
                                   torch.ones_like(hist), s, dlv, raw, 0.5, [1, 1, 0, 1]],
    }


def _with(args, i, value):
    out = list(args)
    out[i] = value
    return out


# (op key, argument index, bad value builder (valid args -> value), message pattern)
BAD = [
    ("texstat_cos_sim", 0, lambda a: a[0].long(), r"argument 'x' expected dtype float32"),
    ("texstat_cos_sim", 0, lambda a: a[0][0], r"argument 'x' expected a 4-D tensor"),
    ("texstat_cos_sim", 1, lambda a: 0, r"argument 'cells' expected a divisor"),
    ("texstat_cos_sim", 1, lambda a: 3, r"argument 'cells' expected a divisor"),
    ("texstat_cos_sim", 0, lambda a: a[0][..., :0], r"argument 'cells' expected .*H, W >= 1"),
    ("texstat_cos_sim_backward", 0, lambda a: a[0][:, :3], r"argument 'grad_s' expected shape"),
    ("texstat_cos_sim_backward", 2, lambda a: a[2].double(), r"argument 's' expected dtype"),
    ("texstat_cos_sim_backward", 4, lambda a: a[4][:, :, :2], r"argument 'gunit' expected shape"),
    ("texstat_cos_sim_backward", 5, lambda a: a[5][0], r"argument 'gnorm' expected a 2-D"),
    ("texstat_cos_sim_backward", 6, lambda a: 2, r"argument 'gunit' expected shape \[2, 4, 3\]"),
    ("texstat_cos_sim_backward", 6, lambda a: 5, r"argument 'cells' expected a divisor"),
    ("texstat_qco", 1, lambda a: 0, r"argument 'num_levels' expected 1 <= num_levels <= 4096"),
    ("texstat_qco", 1, lambda a: MAX_LEVELS + 1,
     r"argument 'num_levels' expected 1 <= num_levels <= 4096 \(kMaxLevels\), got 4097"),
    ("texstat_qco", 1, lambda a: 2**31 + 5, r"argument 'num_levels' expected 1 <= num_levels"),
    ("texstat_qco", 0, lambda a: a[0][0], r"argument 's' expected a 3-D tensor"),
    ("texstat_qco", 0, lambda a: a[0].int(), r"argument 's' expected dtype float32"),
    ("texstat_qco", 0, lambda a: a[0][:, :0], r"argument 's' expected groups of at least one"),
    ("texstat_qco_backward", 5, lambda a: a[5] + 100, r"argument 'extrema' expected pixel "
     r"indices in \[0, 24\), got 1"),
    ("texstat_qco_backward", 5, lambda a: a[5] - 100, r"argument 'extrema' expected pixel"),
    ("texstat_qco_backward", 5, lambda a: a[5].int(), r"argument 'extrema' expected dtype int64"),
    ("texstat_qco_backward", 5, lambda a: a[5][:1], r"argument 'extrema' expected shape"),
    ("texstat_qco_backward", 4, lambda a: a[4][:, :3], r"argument 'counts' expected shape"),
    ("texstat_qco_backward", 1, lambda a: a[1][:1], r"argument 'grad_sta' expected shape"),
    ("texstat_qco_backward", 0, lambda a: a[0].double(), r"argument 'grad_levels' expected dtype"),
    ("texstat_qco_backward", 3, lambda a: a[3][:1], r"argument 'levels' expected shape"),
    ("texstat_qco_backward", 3, lambda a: a[3][:, :3], r"argument 'grad_levels' expected shape "
     r"\[2, 3\], got \[2, 4\]"),
    ("texstat_qco_backward", 6, lambda a: True, r"argument 'grad_sta' expected a 3-D"),
    ("texstat_qco_backward_cooc", 4, lambda a: a[4][:, 0], r"argument 'counts' expected a 3-D"),
    ("texstat_qco_backward_cooc", 5, lambda a: a[5] * 0 + 24, r"argument 'extrema' expected"),
    ("texstat_qco_tem", 3, lambda a: a[3][:0], r"argument 'delta' expected shape \[2\], got \[0\]"),
    ("texstat_qco_tem", 3, lambda a: a[3].double(), r"argument 'delta' expected dtype"),
    ("texstat_qco_tem", 3, lambda a: a[3][:, None], r"argument 'delta' expected a 1-D"),
    ("texstat_qco_tem", 1, lambda a: a[1][:1], r"argument 's' expected shape"),
    ("texstat_qco_tem", 2, lambda a: a[2][:, :3], r"argument 'levels' expected shape"),
    ("texstat_qco_tem", 0, lambda a: a[0][0], r"argument 'f' expected a 3-D"),
    ("texstat_qco_tem", 0, lambda a: a[0][:, :, :0], r"argument 'f.size\(2\)' expected 1 <="),
    ("texstat_qco_tem_backward", 0, lambda a: a[0][:, :, :5], r"argument 'grad_out' expected "
     r"shape"),
    ("texstat_qco_tem_backward", 4, lambda a: a[4][:0], r"argument 'delta' expected shape"),
    ("texstat_qco_tem_backward", 2, lambda a: a[2].double(), r"argument 's' expected dtype"),
    ("texstat_dtiem", 1, lambda a: 0, r"argument 'num_levels' expected 1 <= num_levels"),
    ("texstat_dtiem", 1, lambda a: 2**31 + 5, r"argument 'num_levels' expected 1 <= num_levels"),
    ("texstat_dtiem", 2, lambda a: -1, r"argument 'iters' expected an int >= 0"),
    ("texstat_dtiem", 3, lambda a: 1.5, r"argument 'theta' expected a value in \[0, 1\]"),
    ("texstat_dtiem", 3, lambda a: float("nan"), r"argument 'theta' expected a value in"),
    ("texstat_dtiem", 4, lambda a: [1, 1, 0], r"argument 'offsets' expected \(dy, dx\) pairs"),
    ("texstat_dtiem", 4, lambda a: [2**40, 1], r"argument 'offsets' expected values with"),
    ("texstat_dtiem", 0, lambda a: a[0][0], r"argument 's' expected a 3-D"),
    ("texstat_dtiem_backward", 1, lambda a: a[1][:, :1], r"argument 'grad_cooc' expected shape"),
    ("texstat_dtiem_backward", 2, lambda a: a[2][:, :3], r"argument 'grad_hist' expected shape"),
    ("texstat_dtiem_backward", 5, lambda a: a[5][:1], r"argument 'raw_hist' expected shape"),
    ("texstat_dtiem_backward", 4, lambda a: a[4][:, :3], r"argument 'raw_hist' expected shape "
     r"\[2, 3\], got \[2, 4\]"),
    ("texstat_dtiem_backward", 4, lambda a: a[4][:1], r"argument 'levels' expected shape"),
    ("texstat_dtiem_backward", 0, lambda a: a[0][:, :2], r"argument 'grad_q' expected shape"),
    ("texstat_dtiem_backward", 7, lambda a: [1, 1], r"argument 'grad_cooc' expected shape"),
    ("texstat_dtiem_backward", 6, lambda a: -0.5, r"argument 'theta' expected a value in"),
]


@needs_compiled
@pytest.mark.parametrize("key, i, make, pattern", BAD,
                         ids=[f"{b[0]}-{n}" for n, b in enumerate(BAD)])
def test_compiled_op_rejects_bad_argument(key, i, make, pattern):
    args = _valid_args()[key]
    op = key.replace("_cooc", "")
    _op(op)(*args)  # the valid call runs
    with pytest.raises(RuntimeError, match=op + ": " + pattern):
        _op(op)(*_with(args, i, make(args)))


def _device_cases():
    """(op, argument index) for every tensor argument of every op but the first one."""
    for key, args in _valid_args().items():
        for i, a in enumerate(args):
            if i > 0 and isinstance(a, torch.Tensor):
                yield key, i


@needs_compiled
@pytest.mark.parametrize("key, i", list(_device_cases()))
def test_compiled_op_rejects_mixed_devices(key, i):
    args = _valid_args()[key]
    op = key.replace("_cooc", "")
    bad = _with(args, i, args[i].to(META))
    with pytest.raises(RuntimeError, match=rf"{op}: argument '\w+' expected a tensor on cpu"):
        _cpu_kernel(op, *bad)
    with pytest.raises(RuntimeError, match=rf"{op}: argument '\w+' expected a CPU tensor, got "
                                           r"meta"):
        _cpu_kernel(op, *_with(args, 0, args[0].to(META)))


def test_public_qco_1d_tem_rejects_mixed_devices():
    x = torch.randn(2, 3, 4, 4)
    out = qco_1d(x, 4, backend="reference")
    f = torch.randn(2, 5, 4)
    for name, args in (("cos_sim", (f, out.cos_sim.to(META), out.levels)),
                       ("levels", (f, out.cos_sim, out.levels.to(META)))):
        with pytest.raises(ValueError, match=rf"qco_1d_tem: argument '{name}' expected a tensor "
                                             r"on cpu \(the device of 'f'\), got meta"):
            qco_1d_tem(*args)


# --------------------------------------------------------------------------------- limits


@needs_compiled
def test_level_limit_is_one_constant():
    """The C++ kernels accept exactly the levels the public ops accept (MAX_LEVELS)."""
    s = torch.rand(1, 2, 3)
    assert _op("texstat_qco")(s, MAX_LEVELS, False)[0].shape == (1, MAX_LEVELS)
    with pytest.raises(RuntimeError, match=f"<= {MAX_LEVELS} \\(kMaxLevels\\), got "
                                           f"{MAX_LEVELS + 1}"):
        _op("texstat_qco")(s, MAX_LEVELS + 1, False)
    assert _op("texstat_dtiem")(s, MAX_LEVELS, 0, 0.5, [0, 1])[2].shape == (1, MAX_LEVELS)
    with pytest.raises(RuntimeError, match=f"<= {MAX_LEVELS} \\(kMaxLevels\\)"):
        _op("texstat_dtiem")(s, MAX_LEVELS + 1, 0, 0.5, [0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_level_limit_public_ops(backend):
    x = torch.randn(1, 2, 3, 3)
    for fn, call in (("qco_1d", lambda L: qco_1d(x, L, backend=backend)),
                     ("qco_2d", lambda L: qco_2d(x, L, backend=backend)),
                     ("texture_equalize", lambda L: texture_equalize(x, L, backend=backend))):
        for L in (MAX_LEVELS + 1, 2**31 + 5):
            with pytest.raises(ValueError, match=rf"{fn}: argument 'num_levels' expected an int "
                                                 rf"<= {MAX_LEVELS}, got {L}"):
                call(L)
    with pytest.raises(ValueError, match=rf"qco_1d_tem: argument 'f' expected at most "
                                         rf"{MAX_LEVELS} levels"):
        qco_1d_tem(torch.randn(1, 1, MAX_LEVELS + 1), torch.rand(1, 2, 2),
                   torch.rand(1, MAX_LEVELS + 1), backend=backend)
    out = qco_1d(x, MAX_LEVELS, backend=backend)  # the limit itself runs
    assert out.levels.shape == (1, MAX_LEVELS)


# ------------------------------------------------------------------------ empty batch / C


def _all_outputs(x, backend):
    """Every output and the input gradient of every texture op on ``x``."""
    x = x.detach().requires_grad_()
    o1 = qco_1d(x, 4, backend=backend)
    lv2, sta2 = qco_2d(x, 2, 1, backend=backend)
    te = texture_equalize(x, 4, 1, 0.5, ((1, 1), (0, 1)), backend=backend)
    f = torch.randn(x.shape[0], 3, 4, dtype=x.dtype)
    tem = qco_1d_tem(f, o1.cos_sim, o1.levels, backend=backend)
    outs = [o1.levels, o1.sta, o1.cos_sim, lv2, sta2, *te, tem]
    loss = sum((o.nan_to_num() * 1.5).sum() for o in outs if o.requires_grad)
    (g,) = torch.autograd.grad(loss, x) if loss.requires_grad else (torch.zeros_like(x),)
    return [*outs, g]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4)])
def test_empty_batch_and_channels(backend, shape):
    """B = 0 or C = 0: every backend returns what the reference returns (C = 0: S = 0)."""
    x = torch.randn(shape, dtype=torch.float64)
    got, want = _all_outputs(x, backend), _all_outputs(x, "reference")
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.equal(a.isnan(), b.isnan())
        torch.testing.assert_close(a.nan_to_num(), b.nan_to_num(), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_image_rejected(backend):
    for fn, call in (("qco_1d", lambda x: qco_1d(x, 4, backend=backend)),
                     ("texture_equalize", lambda x: texture_equalize(x, 4, backend=backend))):
        for shape in ((1, 2, 0, 4), (1, 2, 3, 0)):
            with pytest.raises(ValueError, match=rf"{fn}: argument 'x' expected size >= 1 in "
                                                 r"dimension"):
                call(torch.randn(shape))
    with pytest.raises(ValueError, match=r"qco_1d_tem: argument 'cos_sim' expected size >= 1"):
        qco_1d_tem(torch.randn(1, 2, 4), torch.randn(1, 0, 3), torch.randn(1, 4), backend=backend)


# ------------------------------------------------------------------- no host round trips


@needs_compiled
def test_fused_forward_backward_reads_nothing_on_the_host():
    assert not _checks.finite_checks_enabled()
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    f = torch.randn(2, 3, 4, requires_grad=True)
    gx, gf = texture_ops_forward_backward(x, f, "cpu")
    assert gx.shape == x.shape and gf.shape == f.shape
    with pytest.raises(AssertionError, match="item"):  # the guard itself works
        with no_host_reads():
            torch.ones(1).item()


@pytest.mark.parametrize("backend", BACKENDS)
def test_finite_checks_are_opt_in(backend):
    x = torch.randn(1, 3, 4, 4)
    x[0, 1, 2, 2] = float("nan")
    previous = _checks.set_finite_checks(True)
    try:
        with pytest.raises(ValueError, match="qco_1d: argument 'x' expected finite values"):
            qco_1d(x, 4, backend=backend)
    finally:
        _checks.set_finite_checks(previous)
    if backend == "cpu":  # unchecked: the C++ kernels raise on the values they read
        with pytest.raises(RuntimeError, match="not finite"):
            qco_1d(x, 4, backend=backend)
    else:  # unchecked: NaN propagates (Triton: flagged on the device, as CUDA)
        assert bool(qco_1d(x, 4, backend=backend).sta.isnan().all())
    with pytest.raises(TypeError, match="set_finite_checks: argument 'enabled' expected a bool"):
        _checks.set_finite_checks(1)


def test_reference_nan_matches_the_documented_behaviour():
    s = torch.tensor([[0.1, float("nan"), 0.3]])
    assert bool(ref.stlnet_levels(s, 3)[0].isnan().all())
