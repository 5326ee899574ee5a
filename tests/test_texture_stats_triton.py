"""Triton DTIEM kernels against the reference (CPU: TRITON_INTERPRET=1, tiny inputs)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close

from sstkd_ops import _backend
from sstkd_ops.texture_stats import texture_equalize

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif("triton" not in _backend.available_backends(DEVICE),
                                reason="Triton unavailable (needs CUDA or TRITON_INTERPRET=1)")

CASES = [  # (shape, N, iters, theta, offsets)
    ((2, 3, 5, 7), 6, 2, 0.5, ((1, 1), (0, -2))),
    ((1, 4, 6, 6), 1, 1, 0.5, ((1, 1),)),
    ((1, 2, 1, 1), 4, 1, 0.5, ((1, 1), (0, 0))),
    ((1, 5, 4, 9), 20, 0, 1.0, ((2, -1),)),
]


def _run(x, backend, case):
    _, N, K, theta, offs = case
    x = x.detach().clone().requires_grad_()
    out = texture_equalize(x, N, K, theta, offs, backend=backend)
    gen = torch.Generator().manual_seed(3)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)).sum()
               for o in out[:3])
    (g,) = torch.autograd.grad(loss, x)
    return (*out, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference(case, dtype):
    x = torch.randn(case[0], dtype=dtype, device=DEVICE)
    x = x.transpose(-1, -2).contiguous().transpose(-1, -2)  # non-contiguous input
    for a, b in zip(_run(x, "triton", case), _run(x, "reference", case)):
        assert_close(a, b, dtype, scale=10.0)


def test_triton_deterministic():
    x = torch.randn(2, 3, 6, 5, device=DEVICE)
    first = _run(x, "triton", CASES[0])
    for a, b in zip(first, _run(x, "triton", CASES[0])):
        assert torch.equal(a, b)


def test_triton_non_finite_raises():
    x = torch.randn(1, 2, 3, 3, device=DEVICE)
    x[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        texture_equalize(x, 4, backend="triton")


def test_triton_opcheck():
    from sstkd_ops.triton import texture_stats as tts

    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.library.opcheck(tts.texstat_cos_sim, (x, 1))
    s = torch.randn(2, 4, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    torch.library.opcheck(tts.texstat_dtiem, (s, 5, 1, 0.5, [1, 1, 0, -1]))


def test_triton_torch_compile_fullgraph():
    def step(x):
        te = texture_equalize(x, 8, 2, 0.5, ((1, 1),), backend="triton")
        return te.q.square().sum() + te.cooc.sum() + te.hist.square().sum()

    x = torch.randn(1, 3, 6, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    (g_c,) = torch.autograd.grad(compiled(x), x)
    (g_e,) = torch.autograd.grad(step(x), x)
    assert_close(g_c, g_e)
