"""The linear-program interpreter: C++ kernel vs the PyTorch interpreter, exact adjoints."""

import pytest
import torch

from sstkd_ops import _backend
from sstkd_ops._linear_program import ProgramBuilder, run_torch
from sstkd_ops._program_op import run_program

needs_ext = pytest.mark.skipif(not _backend.has_cpu_kernels(), reason="extension not built")
needs_triton = pytest.mark.skipif(not (_backend.has_triton() and _backend.triton_interpreted()),
                                  reason="needs triton with TRITON_INTERPRET=1 (or a GPU)")


def run_compiled(x, prog, adj):
    return run_program(x, prog, adj, "cpu")


def _random_program(h: int, w: int, seed: int):
    return _random_builder(h, w, seed).build()


def _random_builder(h: int, w: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    b = ProgramBuilder(h, w)
    x = b.input
    rows = (torch.arange(h + 4) - 2) % h
    cols = (torch.arange(w + 6) - 3) % w
    ext = b.gather(x, rows[:, None] * w + cols[None, :])               # periodic extension
    ho, wo = (h + 4 - 5) // 2 + 1, (w + 6 - 7) // 2 + 1
    low = b.sep_corr(ext, torch.randn(5, generator=g), torch.randn(7, generator=g), (ho, wo),
                     stride=(2, 0, 2, 0))
    k = torch.randn(3, 4, generator=g)
    k[1, 2] = 0.0
    c2 = b.corr2d(ext, k, (h, w - 1), stride=(1, 1, 1, 2))
    up = b.zero(b.alloc(2 * ho + 6, 2 * wo + 8))
    b.sep_corr_t(up, low, torch.randn(7, generator=g), torch.randn(9, generator=g),
                 stride=(2, 1, 2, 0))
    folded = b.zero(b.alloc(h, w))
    idx = (torch.arange(up.h)[:, None] % h) * w + torch.arange(up.w)[None, :] % w
    b.scatter_add(folded, up, idx)
    holes = torch.arange(h * w).view(h, w)
    holes[::2, 1::2] = -1  # -1 entries read zero
    mix = b.axpby(0.5, folded, -2.0, x)
    b.gather(x, holes, dst=mix, accumulate=True)
    out1 = b.output(h, w)
    b.copy(mix, out1)
    out2 = b.output(ho, wo)
    b.copy(low, out2, scale=3.0)
    out3 = b.output(h, w - 1)
    b.copy(c2, out3)
    return b


@pytest.mark.parametrize("h, w", [(9, 11), (8, 8), (5, 13)])
def test_adjoint_is_exact_transpose(h, w):
    prog = _random_program(h, w, seed=h * w)
    adj = prog.adjoint()
    x = torch.randn(3, prog.in_numel, dtype=torch.float64)
    y = torch.randn(3, prog.out_numel, dtype=torch.float64)
    lhs = (run_torch(prog, x) * y).sum()
    rhs = (x * run_torch(adj, y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    # the adjoint of the adjoint is the forward map again
    torch.testing.assert_close(run_torch(adj.adjoint(), x), run_torch(prog, x))


def test_workspace_is_reused_without_changing_results():
    prog = _random_program(9, 11, seed=1)
    total = sum(ins.dst.numel for ins in prog.instrs if ins.dst.space == 2)
    assert 0 < prog.ws_numel < total
    x = torch.randn(2, prog.in_numel, dtype=torch.float64)
    b = _random_builder(9, 11, seed=1)
    torch.testing.assert_close(run_torch(b.build(reuse=False), x), run_torch(prog, x))


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("h, w", [(9, 11), (8, 8), (5, 13)])
def test_cpu_kernel_matches_torch_interpreter(h, w, dtype):
    prog = _random_program(h, w, seed=7)
    adj = prog.adjoint()
    x = torch.randn(4, prog.in_numel, dtype=dtype)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(run_compiled(x, prog, adj), run_torch(prog, x), rtol=tol,
                               atol=tol)
    y = torch.randn(4, prog.out_numel, dtype=dtype)
    torch.testing.assert_close(run_compiled(y, adj, prog), run_torch(adj, y), rtol=tol,
                               atol=tol)


@needs_ext
def test_compiled_op_gradients_of_first_and_second_order():
    prog = _random_program(6, 7, seed=3)
    adj = prog.adjoint()
    x = torch.randn(2, prog.in_numel, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: run_compiled(t, prog, adj), (x,))
    assert torch.autograd.gradgradcheck(lambda t: run_compiled(t, prog, adj) ** 2, (x,))


@needs_ext
def test_compiled_op_passes_opcheck():
    from sstkd_ops._program_op import packed_on

    prog = _random_program(6, 7, seed=4)
    adj = prog.adjoint()
    fi, ft, fc = packed_on(prog, torch.device("cpu"), False)
    ai, at, ac = packed_on(adj, torch.device("cpu"), False)
    x = torch.randn(2, prog.in_numel, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.sstkd_ops.linear_program,
                          (x, fi, ft, fc, prog.out_numel, prog.ws_numel, ai, at, ac,
                           adj.ws_numel))


@needs_ext
def test_no_state_is_kept_without_grad():
    prog = _random_program(6, 7, seed=5)
    x = torch.randn(2, prog.in_numel)
    y = run_compiled(x, prog, prog.adjoint())
    assert y.grad_fn is None and not y.requires_grad


@needs_ext
@pytest.mark.parametrize("corrupt", ["opcode", "offset", "table"])
def test_malformed_program_raises_instead_of_crashing(corrupt):
    from sstkd_ops._program_op import packed_on

    prog = _random_program(6, 7, seed=6)
    fi, ft, fc = (t.clone() for t in packed_on(prog, torch.device("cpu"), False))
    if corrupt == "opcode":
        fi[0, 0] = 99
    elif corrupt == "offset":
        fi[0, 1] = (2 << 40) + 10**6
    else:
        ft[0] = 10**6
    x = torch.randn(2, prog.in_numel)
    with pytest.raises(RuntimeError, match="sstkd_ops::linear_program"):
        torch.ops.sstkd_ops.linear_program(x, fi, ft, fc, prog.out_numel, prog.ws_numel,
                                           fi, ft, fc, prog.ws_numel)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernels_match_torch_interpreter(dtype):
    prog = _random_program(5, 6, seed=8)
    adj = prog.adjoint()
    x = torch.randn(2, prog.in_numel, dtype=dtype)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(run_program(x, prog, adj, "triton"), run_torch(prog, x),
                               rtol=tol, atol=tol)
    y = torch.randn(2, prog.out_numel, dtype=dtype)
    torch.testing.assert_close(run_program(y, adj, prog, "triton"), run_torch(adj, y),
                               rtol=tol, atol=tol)


@needs_triton
def test_triton_op_gradient():
    prog = _random_program(4, 5, seed=9)
    adj = prog.adjoint()
    x = torch.randn(1, prog.in_numel, dtype=torch.float64, requires_grad=True)
    y = run_program(x, prog, adj, "triton")
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, run_torch(adj, g), rtol=1e-12, atol=1e-12)
