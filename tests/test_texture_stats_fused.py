"""Fused texture-statistics backends (C++ 'cpu'; 'cuda' when present) against the reference,
forward and backward; torch.library.opcheck; torch.compile(fullgraph=True); determinism."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close, noncontig, requires, requires_cuda, weighted_loss

from sstkd_ops import _backend
from sstkd_ops.texture import autograd as tso
from sstkd_ops.texture import qco_1d, qco_1d_tem, qco_2d, texture_equalize

pytestmark = requires("cpu" in _backend.available_backends("cpu"),
                      reason="compiled extension sstkd_ops._C not built")

DTYPES = [torch.float64, torch.float32]
# (B, C, H, W): odd, prime and minimal sizes, batch 1 and > 1
SHAPES = [(1, 3, 7, 5), (2, 5, 11, 13), (3, 2, 1, 9), (2, 16, 16, 16)]


def _grads(fn, inputs, weights_seed=1):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return outs, torch.autograd.grad(weighted_loss(outs, weights_seed), inputs)


def _parity(fn_ref, fn_fast, inputs, dtype, scale=1.0):
    outs_r, grads_r = _grads(fn_ref, inputs)
    outs_f, grads_f = _grads(fn_fast, inputs)
    for a, b in zip(outs_f, outs_r):
        assert_close(a, b, dtype, scale=scale, msg="forward")
    for a, b in zip(grads_f, grads_r):
        assert_close(a, b, dtype, scale=scale, msg="backward")


def _fast_backends(device):
    return [b for b in ("cpu", "cuda") if b in _backend.available_backends(device)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("contig", [True, False])
def test_texture_equalize_parity(shape, dtype, contig):
    x = torch.randn(shape, dtype=dtype)
    x = x if contig else noncontig(x)
    for N, K, theta, offs in ((8, 2, 0.5, ((1, 1),)), (13, 0, 1.0, ((0, 1), (-2, 3))),
                              (32, 3, 0.2, ((1, 1), (1, 0)))):
        def run(t, be, N=N, K=K, theta=theta, offs=offs):
            return tuple(texture_equalize(t, N, K, theta, offs, backend=be))

        for be in _fast_backends("cpu"):
            # the float32 gradient through the Lloyd levels and the soft co-occurrence
            # needs 1.3x the table (max abs error 4.6e-5); float64 2e-4x of it
            _parity(lambda t: run(t, "reference"), lambda t, be=be: run(t, be), [x], dtype,
                    scale=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("contig", [True, False])
def test_qco_parity(shape, dtype, contig):
    x = torch.randn(shape, dtype=dtype)
    x = x if contig else noncontig(x)
    for be in _fast_backends("cpu"):
        for L in (1, 5, 16):
            _parity(lambda t, L=L: tuple(qco_1d(t, L, backend="reference")),
                    lambda t, L=L, be=be: tuple(qco_1d(t, L, backend=be)), [x], dtype)
        H, W = shape[-2:]
        for L, S in ((2, 1), (4, 2), (3, 1)):
            try:
                qco_2d(x, L, S, backend="reference")
            except ValueError:
                continue  # sizes STLNet cannot handle
            _parity(lambda t, L=L, S=S: qco_2d(t, L, S, backend="reference"),
                    lambda t, L=L, S=S, be=be: qco_2d(t, L, S, backend=be), [x], dtype)
        q = qco_1d(x, 8, backend="reference")
        f = torch.randn(shape[0], 3, 8, dtype=dtype)
        _parity(lambda a, b, c: qco_1d_tem(a, b, c, backend="reference"),
                lambda a, b, c, be=be: qco_1d_tem(a, b, c, backend=be),
                [f, q.cos_sim, q.levels], dtype)


def test_auto_picks_compiled_and_reference_fallback():
    x = torch.randn(1, 2, 4, 4)
    assert _backend.select_backend("texture_equalize", x, None, ("cpu", "cuda")) == "cpu"


def test_deterministic_bitwise_across_runs_and_threads():
    x = torch.randn(2, 16, 33, 31, requires_grad=True)
    before = torch.get_num_threads()
    results = []
    try:
        torch.use_deterministic_algorithms(True)
        for threads in (before, 1, before):
            torch.set_num_threads(threads)
            out = texture_equalize(x, 32, 2, 0.5, ((1, 1), (0, 2)), backend="cpu")
            q1 = qco_1d(x, 16, backend="cpu")
            loss = out.q.square().sum() + out.cooc.sum() + (q1.sta * q1.levels).sum()
            (g,) = torch.autograd.grad(loss, x)
            results.append((out.q, out.cooc, out.hist, q1.sta, g))
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_opcheck():
    assert tso.ensure_registered()
    ops = torch.ops.sstkd_ops
    x = torch.randn(2, 3, 6, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(ops.texstat_cos_sim.default, (x, 1))
    torch.library.opcheck(ops.texstat_cos_sim.default, (x, 2))
    s = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(ops.texstat_qco.default, (s, 4, False))
    torch.library.opcheck(ops.texstat_qco.default, (s, 3, True))
    f = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    s2 = torch.randn(2, 7, dtype=torch.float64, requires_grad=True)
    lv = torch.sort(torch.randn(2, 4, dtype=torch.float64), -1).values.requires_grad_()
    delta = torch.full((2,), 0.5, dtype=torch.float64)
    torch.library.opcheck(ops.texstat_qco_tem.default, (f, s2, lv, delta))
    torch.library.opcheck(ops.texstat_dtiem.default, (s, 6, 2, 0.5, [1, 1, 0, -1]))


def test_torch_compile_fullgraph():
    def step(x, f):
        te = texture_equalize(x, 16, 2, 0.5, ((1, 1),), backend="cpu")
        q1 = qco_1d(x, 8, backend="cpu")
        lv2, sta2 = qco_2d(x, 4, 2, backend="cpu")
        tem = qco_1d_tem(f, q1.cos_sim, q1.levels, backend="cpu")
        return (te.q.square().sum() + te.cooc.sum() + te.hist.square().sum() + q1.sta.sum()
                + sta2.square().sum() + tem.square().sum())

    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 3, 8, dtype=torch.float64)
    compiled = torch.compile(step, fullgraph=True)
    loss_c = compiled(x, f)
    (g_c,) = torch.autograd.grad(loss_c, x)
    loss_e = step(x, f)
    (g_e,) = torch.autograd.grad(loss_e, x)
    assert_close(loss_c, loss_e)
    assert_close(g_c, g_e)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_parity(dtype):
    x = torch.randn(2, 8, 19, 23, dtype=dtype, device="cuda")
    for be in ("reference", "cuda"):
        assert be in _backend.available_backends("cuda") or be == "reference"
    _parity(lambda t: tuple(texture_equalize(t, 16, 2, 0.5, ((1, 1),), backend="reference")),
            lambda t: tuple(texture_equalize(t, 16, 2, 0.5, ((1, 1),), backend="cuda")), [x],
            dtype, scale=10.0)  # not measured (needs a GPU): the CPU's need is 1.3x
    _parity(lambda t: tuple(qco_1d(t, 8, backend="reference")),
            lambda t: tuple(qco_1d(t, 8, backend="cuda")), [x], dtype)
    _parity(lambda t: qco_2d(t, 4, 1, backend="reference"),
            lambda t: qco_2d(t, 4, 1, backend="cuda"), [x[..., :16, :20]], dtype)


def _split_case(x, f, backend):
    """Every texture op on images of several CUDA blocks (split passes): outputs, grads."""
    x = x.detach().requires_grad_()
    f = f.detach().requires_grad_()
    o = qco_1d(x, 8, backend=backend)
    tem = qco_1d_tem(f, o.cos_sim, o.levels, backend=backend)
    lv2, sta2 = qco_2d(x, 8, 2, backend=backend)
    te = texture_equalize(x, 16, 2, 0.5, ((1, 1), (0, -3), (5, 2)), backend=backend)
    outs = [o.levels, o.sta, tem, lv2, sta2, *te]
    return [*outs, *torch.autograd.grad(weighted_loss(outs), (x, f))]


@requires_cuda
@pytest.mark.cuda
def test_cuda_split_passes_match_cpu_bitwise_repeatable_and_flag_nan():
    x = torch.randn(3, 6, 40, 36, dtype=torch.float64)
    f = torch.randn(3, 5, 8, dtype=torch.float64)
    want = _split_case(x, f, "cpu")
    got = _split_case(x.cuda(), f.cuda(), "cuda")
    for a, b in zip(got, want):
        assert_close(a.cpu(), b, torch.float64)
    for a, b in zip(got, _split_case(x.cuda(), f.cuda(), "cuda")):
        assert torch.equal(a, b)
    bad = x.clone()
    bad[1, 0, 3, 3] = float("nan")  # image 1 only: NaN outputs there, nothing read on the host
    te = texture_equalize(bad.cuda(), 16, backend="cuda")
    assert bool(te.q[1].isnan().all()) and bool(te.cooc[1].isnan().all())
    assert bool(torch.isfinite(te.q[[0, 2]]).all()) and bool(torch.isfinite(te.hist[0]).all())
    assert bool(qco_1d(bad.cuda(), 8, backend="cuda").sta[1].isnan().all())


@requires_cuda
@pytest.mark.cuda
def test_cuda_forward_captures_in_a_cuda_graph():
    """No host synchronisation in the fused CUDA forward: it can be captured."""
    x = torch.randn(2, 4, 24, 20, device="cuda")

    def step():
        return (qco_1d(x, 8, backend="cuda").sta, qco_2d(x, 4, 1, backend="cuda")[1],
                texture_equalize(x, 8, backend="cuda").q)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        want = step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = step()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(got, want):
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))


def peak_memory(fn) -> int:
    """Peak bytes torch allocates on the CPU during ``fn()``: the profiler's memory events (each
    event's self memory, running maximum)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0)),
                    key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def test_fused_never_allocates_n_times_pixels():
    """Extra memory of the fused forward + backward stays below one N*H*W tensor."""
    B, C, H, W, N = 1, 4, 32, 32, 64
    x = torch.randn(B, C, H, W)

    def fwd_bwd(backend):
        xx = x.clone().requires_grad_()
        out = texture_equalize(xx, N, 2, 0.5, ((1, 1), (0, 1)), backend=backend)
        (out.q.sum() + out.cooc.sum() + out.hist.sum()).backward()

    fwd_bwd("cpu")
    fused = peak_memory(lambda: fwd_bwd("cpu")) - x.numel() * 4 * 2  # x copy and grad
    reference = peak_memory(lambda: fwd_bwd("reference"))
    assert fused < B * N * H * W * 4 < reference
