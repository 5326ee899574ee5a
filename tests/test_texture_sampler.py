"""DTIEM's anchor-based importance sampler: weighted counts of ``texture_equalize`` on every
backend (forward, backward, fallbacks, errors) and the weights of ``texture_importance``."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CPU_BACKENDS, assert_close, noncontig, requires_cuda, weighted_loss

import sstkd_ops
from sstkd_ops import _backend, texture_equalize, texture_importance
from sstkd_ops.texture import reference as ref
from sstkd_ops.texture.sampler import select_anchors, texture_energy

FAST = ("cpu", "triton")  # parity against the reference; 'cuda' in its own test


def _weights(shape, dtype, seed=3, zero_frac=0.3):
    """Random non-negative weights (B, H, W) with some exact zeros."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.rand(shape, generator=gen, dtype=dtype) * 3
    return torch.where(torch.rand(shape, generator=gen, dtype=dtype) < zero_frac, 0, w)


def _run(x, w, backend, N=6, K=2, theta=0.5, offs=((1, 1), (0, -2)), per_image=False):
    """Outputs and the input gradient of one weighted DTIEM call; ``per_image``: a loss whose
    gradient of an image does not depend on the batch (sum of squares), else seeded random
    output weights."""
    x = x.detach().clone().requires_grad_()
    out = texture_equalize(x, N, K, theta, offs, weights=w, backend=backend)
    loss = sum(t.square().sum() for t in out[:3]) if per_image else weighted_loss(out[:3])
    (g,) = torch.autograd.grad(loss, x)
    return tuple(t.detach() for t in out) + (g,)


def _check_parity(backend, x, w, dtype, scale, **kw):
    expected = _run(x, w, "reference", **kw)
    actual = _run(x, w, backend, **kw)
    for name, a, e in zip(("q", "cooc", "hist", "levels", "grad_x"), actual, expected):
        assert_close(a, e, dtype, scale=scale, msg=f"{backend} {name}")


# ----------------------------------------------------------------------- weighted counts


def test_hand_computed_weighted_counts():
    """1 x 3 map, N = 2, no Lloyd step, no denoising: hist, cooc and Q by hand."""
    x = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64).view(1, 2, 1, 3)
    w = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    # S_i = cos(v_i, g), g = mean = (1, 2/3): S = 3/sqrt(13), 8/sqrt(65), 2/sqrt(13)
    s = [3 / math.sqrt(13), 8 / math.sqrt(65), 2 / math.sqrt(13)]
    lo, hi = min(s), max(s)
    l0, l1 = lo + (hi - lo) / 4, lo + 3 * (hi - lo) / 4  # STLNet's bin centres
    e1 = [min(max((v - l0) / (l1 - l0), 0.0), 1.0) for v in s]  # hat code, weight on level 1
    E = [[1 - v for v in e1], e1]  # E[n][i]
    h = [(w[0, 0] * torch.tensor(E[n], dtype=torch.float64)).sum() / 6 for n in range(2)]
    cdf = [h[0] / 2, h[0] + h[1] / 2]
    q = [E[0][i] * cdf[0] + E[1][i] * cdf[1] for i in range(3)]
    # d = (0, 1): pairs (0, 1), (1, 2) weighted by w_0 = 1, w_1 = 2
    m_right = [[(1 * E[n][0] * E[m][1] + 2 * E[n][1] * E[m][2]) / 3 for m in range(2)]
               for n in range(2)]
    # d = (0, -1): pairs (1, 0), (2, 1) weighted by w_1 = 2, w_2 = 3
    m_left = [[(2 * E[n][1] * E[m][0] + 3 * E[n][2] * E[m][1]) / 5 for m in range(2)]
              for n in range(2)]
    expected_cooc = torch.tensor([m_right, m_left], dtype=torch.float64)[None]
    for backend in CPU_BACKENDS:
        if backend not in _backend.available_backends("cpu"):
            continue
        out = texture_equalize(x, 2, 0, 1.0, ((0, 1), (0, -1)), weights=w, backend=backend)
        assert_close(out.hist, torch.stack(h)[None], msg=backend)
        assert_close(out.q, torch.stack([torch.as_tensor(v) for v in q]).view(1, 1, 3),
                     msg=backend)
        assert_close(out.cooc, expected_cooc, msg=backend)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(1, 3, 7, 5), (2, 4, 1, 9), (3, 2, 6, 6)])
def test_weighted_parity(backend, dtype, shape):
    """Forward and backward against the reference; one image of the batch has all-zero
    weights (uniform fallback) when B > 1; non-contiguous x in the last case."""
    x = torch.randn(shape, dtype=dtype)
    x = noncontig(x) if shape[0] == 3 else x
    B, _, H, W = shape
    w = _weights((B, H, W), dtype)
    if B > 1:
        w[1] = 0
    # measured at most 0.07x the table (float32 grad_x, N = 6 and 1): no widening
    _check_parity(backend, x, w, dtype, 1.0)
    _check_parity(backend, x, w, dtype, 1.0, N=1, K=0, theta=0.5, offs=((0, 1),))
    # float32 grad_x through the weighted soft co-occurrence of 20 levels (d Q / d s divides by
    # the level spacing): measured 0.77x the table (C++ and Triton alike)
    _check_parity(backend, x, w, dtype, 2.0, N=20, K=1, theta=0.3,
                  offs=((1, 0), (H + 1, 0), (-1, 1)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_uniform_weights_equal_unweighted(backend):
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    plain = _run(x, None, backend)
    for c in (1.0, 0.25, 7.0):
        w = torch.full((2, 6, 7), c, dtype=torch.float64)
        for a, b in zip(_run(x, w, backend), plain):
            assert_close(a, b)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_weight_sum_falls_back_to_uniform(backend):
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    w = _weights((2, 5, 4), torch.float64, zero_frac=0.0)
    w[0] = 0
    out = _run(x, w, backend, per_image=True)
    plain = _run(x[:1], None, backend, per_image=True)
    one = _run(x[1:], w[1:], backend, per_image=True)
    for a, b, c in zip(out, plain, one):
        assert_close(a[:1], b)  # image 0: the unweighted statistics
        assert_close(a[1:], c)  # image 1: unaffected by image 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_pair_weight_gives_zero_cooc(backend):
    """Weight only on the last row: no pair with offset (1, 0) starts there."""
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    w = torch.zeros(1, 4, 5, dtype=torch.float64)
    w[0, -1] = 1.0
    out = _run(x, w, backend, offs=((1, 0), (0, 1)))
    assert bool((out[1][:, 0] == 0).all())
    assert_close(out[1][:, 1].sum((-1, -2)), torch.ones(1, dtype=torch.float64))
    assert bool(torch.isfinite(out[4]).all())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weights_properties_and_no_gradient(backend):
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = _weights((2, 5, 6), torch.float64).requires_grad_()
    out = texture_equalize(x, 8, 1, 0.5, ((1, 1),), weights=w, backend=backend)
    assert_close(out.hist.sum(-1), torch.ones(2, dtype=torch.float64))
    assert_close(out.cooc.sum((-1, -2)), torch.ones(2, 1, dtype=torch.float64))
    assert bool((out.q >= 0).all()) and bool((out.q <= 1).all())
    (out.q.sum() + out.cooc.sum() + out.hist.sum()).backward()
    assert x.grad is not None and w.grad is None  # weights are used detached
    # levels stay unweighted
    assert torch.equal(out.levels, texture_equalize(x, 8, 1, 0.5, backend=backend).levels)


def test_reference_weighted_gradcheck(monkeypatch):
    """float64 finite differences of the weighted reference DTIEM with frozen levels."""
    x = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    s = ref.cosine_similarity_map(x).reshape(1, -1)
    levels = ref.lloyd_levels(s, 4, 1)
    monkeypatch.setattr(ref, "lloyd_levels", lambda *a: levels)
    w = _weights((1, 5, 6), torch.float64)

    def fn(t):
        out = ref.texture_equalize(t, 4, 1, 0.6, ((1, 1), (0, -1)), w)
        return out[0], out[1], out[2]

    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(fn, (xg,), eps=1e-7, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("backend", FAST)
def test_weighted_deterministic_and_opcheck(backend):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float32)
    w = _weights((2, 7, 6), torch.float32)
    a, b = _run(x, w, backend), _run(x, w, backend)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    s = ref.cosine_similarity_map(x)
    op = (torch.ops.sstkd_ops.texstat_dtiem.default if backend == "cpu"
          else torch.ops.sstkd_ops.texstat_dtiem_triton.default)
    torch.library.opcheck(op, (s.double(), 5, 1, 0.5, [1, 1, 0, -1], w.double()))


@requires_cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_weighted_parity_cuda(backend):
    if backend not in _backend.available_backends("cuda"):
        pytest.skip(f"backend {backend!r} not available on CUDA")
    from conftest import disable_tf32

    disable_tf32()
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(3, 8, 33, 17, dtype=dtype, device="cuda")
        w = _weights((3, 33, 17), dtype).cuda()
        w[2] = 0
        # 2x not measured (needs a GPU): on these inputs the CPU backends need at most 0.12x
        # the table (float32 grad_x)
        _check_parity(backend, x, w, dtype, 2.0, N=32, K=2)
        _check_parity(backend, x, w, dtype, 2.0, N=5, K=0, offs=((1, 1),))


@pytest.mark.parametrize(("make", "exc", "pattern"), [
    (lambda x: [[1.0]], TypeError, r"texture_equalize: argument 'weights' expected a torch"),
    (lambda x: torch.ones(2, 5, 5), ValueError, r"argument 'weights' expected shape \(2, 5, 6\)"),
    (lambda x: torch.ones(2, 1, 5, 6), ValueError, r"argument 'weights' expected shape"),
    (lambda x: torch.ones(2, 5, 6), ValueError, r"argument 'weights' expected dtype "
                                                r"torch.float64"),
    (lambda x: torch.ones(2, 5, 6, dtype=torch.float64, device="meta"), ValueError,
     r"argument 'weights' expected a tensor on cpu"),
    (lambda x: -torch.ones(2, 5, 6, dtype=torch.float64), ValueError,
     r"argument 'weights' expected finite values >= 0, got min -1.0"),
    (lambda x: torch.full((2, 5, 6), math.nan, dtype=torch.float64), ValueError,
     r"argument 'weights' expected finite values >= 0"),
    (lambda x: torch.full((2, 5, 6), math.inf, dtype=torch.float64), ValueError,
     r"argument 'weights' expected finite values >= 0"),
])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weights_errors(backend, make, exc, pattern):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    with pytest.raises(exc, match=pattern):
        texture_equalize(x, 4, weights=make(x), backend=backend)


# -------------------------------------------------------------------------------- sampler


def _patch_map(dtype=torch.float64):
    """7 x 7 map of vector (1, 0) with a 3 x 3 patch of (-1, 0) at rows / cols 2..4: S = +-1
    exactly, so every energy below is exact."""
    x = torch.zeros(1, 2, 7, 7, dtype=dtype)
    x[:, 0] = 1.0
    x[:, 0, 2:5, 2:5] = -1.0
    return x


def test_energy_and_anchors_by_hand():
    x = _patch_map()
    e = texture_energy(ref.cosine_similarity_map(x))
    # a window with k of its 9 pixels in the patch (S = -1 vs +1): variance 4 k (9 - k) / 81
    k = torch.zeros(7, 7, dtype=torch.float64)
    for y in range(7):
        for c in range(7):
            k[y, c] = sum(2 <= min(max(y + dy, 0), 6) <= 4 and 2 <= min(max(c + dx, 0), 6) <= 4
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert_close(e[0], 4 * k * (9 - k) / 81)
    # the four patch corners (k = 4, the largest variance) are the only local maxima with e > 0,
    # in raster order (equal energies: the lower index first)
    index, valid = select_anchors(e, 8)
    assert index[0, :4].tolist() == [2 * 7 + 2, 2 * 7 + 4, 4 * 7 + 2, 4 * 7 + 4]
    assert valid[0].tolist() == [True] * 4 + [False] * 4
    index, valid = select_anchors(e, 2)
    assert index[0].tolist() == [16, 18] and bool(valid.all())


def test_importance_weights_by_hand():
    x = _patch_map()
    radius, gain = 1.5, 2.0
    w = texture_importance(x, num_anchors=2, radius=radius, gain=gain)
    anchors = [(2, 2), (2, 4)]
    expected = torch.empty(1, 7, 7, dtype=torch.float64)
    for y in range(7):
        for c in range(7):
            near = max(math.exp(-((y - ay) ** 2 + (c - ax) ** 2) / (2 * radius ** 2))
                       for ay, ax in anchors)
            expected[0, y, c] = 1 + gain * near
    assert_close(w, expected)
    assert w.dtype == x.dtype and not w.requires_grad


def test_importance_plain_cases():
    x = torch.randn(2, 4, 12, 11, dtype=torch.float32, requires_grad=True)
    for kw in ({"gain": 0.0}, {"num_anchors": 0}):
        w = texture_importance(x, **kw)
        assert w.shape == (2, 12, 11) and w.dtype == torch.float32 and bool((w == 1).all())
    assert bool((texture_importance(torch.ones(1, 3, 4, 5)) == 1).all())  # no texture
    assert bool((texture_importance(torch.randn(2, 3, 1, 1)) == 1).all())  # 1 pixel: e = 0
    w = texture_importance(x, num_anchors=3, radius=1.0, gain=0.5)
    assert not w.requires_grad and bool((w >= 1).all()) and bool((w <= 1.5).all())
    assert torch.equal(w, texture_importance(x, num_anchors=3, radius=1.0, gain=0.5))
    _, valid = select_anchors(texture_energy(ref.cosine_similarity_map(x.detach())), 3)
    assert bool(valid.all()) and int((w == 1.5).sum()) == 2 * 3  # three anchors per image
    # plateau of equal energy: a single anchor (the strict order suppresses its neighbours)
    e = torch.zeros(1, 4, 4)
    e[0, 1:3, 1:3] = 1.0
    index, valid = select_anchors(e, 4)
    assert index[0, 0].item() == 5 and valid[0].tolist() == [True, False, False, False]


def test_importance_feeds_texture_equalize():
    """The teacher's weights, shared by student and teacher statistics."""
    teacher = torch.randn(2, 6, 9, 8, dtype=torch.float64)
    student = torch.randn(2, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    w = texture_importance(teacher, num_anchors=4, radius=2.0, gain=3.0)
    ts = texture_equalize(teacher, 8, weights=w, backend="reference")
    ss = texture_equalize(student, 8, weights=w, backend="reference")
    loss = torch.nn.functional.mse_loss(ss.q, ts.q) + (ss.cooc - ts.cooc).square().sum()
    loss.backward()
    assert bool(torch.isfinite(student.grad).all())
    assert "texture_importance" in sstkd_ops.__all__


@pytest.mark.parametrize(("kw", "exc", "pattern"), [
    ({"x": torch.ones(2, 3, 4)}, ValueError, r"texture_importance: argument 'x' expected a 4-D"),
    ({"x": torch.ones(1, 2, 3, 3, dtype=torch.int64)}, TypeError, r"argument 'x' expected dtype"),
    ({"x": torch.ones(1, 2, 0, 3)}, ValueError, r"argument 'x' expected size >= 1"),
    ({"num_anchors": -1}, ValueError, r"argument 'num_anchors' expected an int >= 0"),
    ({"num_anchors": 2.0}, TypeError, r"argument 'num_anchors' expected an int"),
    ({"radius": 0.0}, ValueError, r"argument 'radius' expected a finite value > 0, got 0.0"),
    ({"radius": math.inf}, ValueError, r"argument 'radius' expected a finite value > 0"),
    ({"radius": "2"}, TypeError, r"argument 'radius' expected a float"),
    ({"gain": -1.0}, ValueError, r"argument 'gain' expected a value >= 0.0, got -1.0"),
    ({"gain": math.inf}, ValueError, r"argument 'gain' expected a finite value >= 0"),
    ({"gain": math.nan}, ValueError, r"argument 'gain' expected a finite float, got nan"),
])
def test_importance_errors(kw, exc, pattern):
    args = {"x": torch.randn(1, 2, 4, 4), **kw}
    with pytest.raises(exc, match=pattern):
        texture_importance(**args)


def test_compiled_op_checks_weights():
    """The compiled op re-checks the weights (shape, dtype; values on the CPU kernel)."""
    if "cpu" not in _backend.available_backends("cpu"):
        pytest.skip("compiled extension not built")
    op = torch.ops.sstkd_ops.texstat_dtiem
    s = torch.rand(2, 4, 5, dtype=torch.float64)
    for w, pattern in ((torch.ones(2, 4, 4, dtype=torch.float64), r"'weights' expected shape"),
                       (torch.ones(2, 4, 5), r"'weights' expected dtype Double"),
                       (-torch.ones(2, 4, 5, dtype=torch.float64),
                        r"'weights' expected finite values >= 0, got -1 in image 0")):
        with pytest.raises(RuntimeError, match=pattern):
            op(s, 4, 1, 0.5, [1, 1], w)
    g = torch.ones(2, 4, 5, dtype=torch.float64)
    q, cooc, hist, levels, raw = op(s, 4, 1, 0.5, [1, 1], g)
    with pytest.raises(RuntimeError, match=r"texstat_dtiem_backward: argument 'weights' expected"):
        torch.ops.sstkd_ops.texstat_dtiem_backward(q, cooc, hist, s, levels, raw, 0.5, [1, 1],
                                                   g[:1])
