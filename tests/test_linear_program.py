"""Linear programs: the kernels (through linprog.runtime.run, the production entry point) vs
the PyTorch interpreter, exact adjoints, argument checks of the compiled op."""

import dataclasses

import pytest
import torch
from conftest import requires

from sstkd_ops import _backend
from sstkd_ops.linprog import ProgramBuilder, run_torch
from sstkd_ops.linprog.program import (
    ACCUMULATE,
    AXPBY,
    AXPY,
    CHECKER_CORR2D,
    GATHER,
    GATHER_RUNS,
    SCALED_GATHER_RUNS,
    SEP_CORR_ROWS_FIRST,
    UPSAMPLED_SEP_CORR,
    checker_correlations,
    fuse_scaled_gathers,
    fuse_separable_pairs,
    gather_runs,
    scatter_layers,
    upsampled_sources,
)
from sstkd_ops.linprog.runtime import packed_on, run

needs_ext = requires(_backend.has_cpu_kernels(), reason="extension not built")
needs_triton = requires(_backend.has_triton() and _backend.triton_interpreted(),
                        reason="needs triton with TRITON_INTERPRET=1 (or a GPU)")


def run_compiled(x, prog):
    return run(prog, x, "cpu")


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
    torch.testing.assert_close(run_compiled(x, prog), run_torch(prog, x), rtol=tol,
                               atol=tol)
    y = torch.randn(4, prog.out_numel, dtype=dtype)
    torch.testing.assert_close(run_compiled(y, adj), run_torch(adj, y), rtol=tol,
                               atol=tol)


@needs_ext
def test_compiled_adjoint_is_exact_transpose():
    """What the contourlet backward relies on: the kernel running the adjoint program computes
    the transpose of the kernel running the program (and the adjoint of that is the program)."""
    prog = _random_program(6, 7, seed=3)
    adj = prog.adjoint()
    x = torch.randn(2, prog.in_numel, dtype=torch.float64)
    y = torch.randn(2, prog.out_numel, dtype=torch.float64)
    lhs = (run_compiled(x, prog) * y).sum()
    rhs = (x * run_compiled(y, adj)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(run_compiled(x, adj.adjoint()), run_compiled(x, prog),
                               rtol=1e-12, atol=1e-12)


def _expand_runs(runs: torch.Tensor) -> torch.Tensor:
    """The index table that gather_runs' runs stand for."""
    table = []
    for start, length, src, step in runs.tolist():
        assert start == len(table)
        table += [src + step * k if src >= 0 else -1 for k in range(length)]
    return torch.tensor(table, dtype=torch.int64)


def _greedy_run_count(table: list[int]) -> int:
    """Runs of the plain left-to-right greedy split (each run as long as its step allows)."""
    count, s, n = 0, 0, len(table)
    while s < n:
        count += 1
        e = s
        if table[s] < 0:
            while e + 1 < n and table[e + 1] < 0:
                e += 1
        elif s + 1 < n and table[s + 1] >= 0:
            e, step = s + 1, table[s + 1] - table[s]
            while e + 1 < n and table[e + 1] >= 0 and table[e + 1] - table[e] == step:
                e += 1
        s = e + 1
    return count


@needs_ext
def test_gather_runs_expand_to_the_table_and_are_greedy():
    g = torch.Generator().manual_seed(0)
    tables = [torch.tensor([0, 1, 2, -1, -1, 5, 6]), torch.tensor([3]), torch.tensor([-1]),
              torch.tensor([5, -1, 7]), torch.arange(100) % 7, torch.tensor([1, 1, 1, 2, 3])]
    tables += [torch.randint(-1, 4, (int(n),), generator=g)
               for n in torch.randint(1, 40, (400,), generator=g)]
    for t in tables:
        runs = gather_runs(t)
        assert torch.equal(_expand_runs(runs), t), t
        assert runs.shape[0] == _greedy_run_count(t.tolist()), t
    assert gather_runs(torch.tensor([0, 1, 2, -1, -1, 5, 6])).tolist() == [
        [0, 3, 0, 1], [3, 2, -1, 0], [5, 2, 5, 1]]
    assert gather_runs(torch.arange(1000) % 7).shape[0] == 143  # one run per period
    assert gather_runs(torch.zeros(0, dtype=torch.int64)).shape == (0, 4)


@needs_ext
def test_scatter_layers_add_every_source_once_in_order():
    table = torch.tensor([2, 0, 2, -1, 2, 1, 0])
    layers = scatter_layers(table, 4)
    assert [t.tolist() for t in layers] == [[1, 5, 0, -1], [6, -1, 2, -1], [-1, -1, 4, -1]]
    src = torch.randn(7, dtype=torch.float64)
    dst = torch.zeros(4, dtype=torch.float64).index_add_(0, table[table >= 0], src[table >= 0])
    summed = sum(torch.where(t >= 0, src[t.clamp(min=0)], 0.0) for t in layers)
    torch.testing.assert_close(summed, dst, rtol=0, atol=1e-15)
    assert scatter_layers(torch.tensor([-1, -1]), 3) == []
    with pytest.raises(RuntimeError, match=r"sstkd_ops::scatter_layers: table entry 4 at 1"):
        scatter_layers(torch.tensor([0, 4]), 4)
    with pytest.raises(RuntimeError, match="sstkd_ops::scatter_layers: n_dst must be >= 0"):
        scatter_layers(torch.tensor([0]), -1)
    for op, args in ((torch.ops.sstkd_ops.gather_runs, ()),
                     (torch.ops.sstkd_ops.scatter_layers, (4,))):
        with pytest.raises(RuntimeError, match="table must be a 1-D int64 CPU tensor"):
            op(torch.tensor([0, 1], dtype=torch.int32), *args)


@pytest.mark.parametrize("kind", ["in range", "negative", "broadcast", "out of range"])
def test_traced_gathers_index_like_tensors(kind):
    """The tracer's (:, rows, cols) selections (taken from the flattened plane when the indices
    are in range) select what the same key selects from a tensor."""
    from sstkd_ops.contourlet.tracer import SymPlanes

    h, w = 5, 7
    b = ProgramBuilder(h, w)
    planes = SymPlanes.of_region(b, b.input)
    plain = torch.arange(h * w).view(1, h, w)
    g = torch.Generator().manual_seed(9)
    rows, cols = torch.randint(0, h, (4, 6), generator=g), torch.randint(0, w, (4, 6), generator=g)
    if kind == "negative":
        rows[0, 0], cols[1, 2] = -1, -w
    elif kind == "broadcast":
        rows, cols = rows[:, :1], cols[:1, :]
    elif kind == "out of range":
        cols[2, 3] = w
        with pytest.raises(IndexError):
            planes[:, rows, cols]
        return
    picked = planes[:, rows, cols]
    assert picked.shape == plain[:, rows, cols].shape
    assert len(picked.terms) == 1 and torch.equal(picked.terms[0][2], plain[:, rows, cols])


def _both_forms(prog, x):
    """``prog`` on ``x`` through the C++ kernel from its table form (``packed``, as traced)
    and from its runs form (``packed_runs``, rewritten)."""
    out = []
    for runs in (False, True):
        instr, tables, coefs, ws = packed_on(prog, x.device, runs)
        out.append(torch.ops.sstkd_ops.linear_program(x, instr, tables, coefs, prog.out_numel,
                                                      ws))
    return out


def _same_bits_both_forms(prog, x):
    """The rewritten form gives the traced form's bits, and the interpreter's value."""
    tables, runs = _both_forms(prog, x)
    assert torch.equal(runs, tables)
    torch.testing.assert_close(runs, run_torch(prog, x))


@needs_ext
@pytest.mark.parametrize("h, w", [(16, 16), (12, 20), (20, 12)])
def test_cpu_kernel_runs_form_equals_table_form(h, w):
    """The C++ kernel runs both packed forms: gathers as runs are the same copies (bitwise);
    a scatter-add as layered gathers adds the same terms one at a time (round-off)."""
    from sstkd_ops.contourlet.tracer import programs

    dec, adj = programs("pdfb_dec", ((h, w),), "9-7", "pkva", (2,))  # gathers, no scatter
    ops = packed_on(dec, torch.device("cpu"), True)[0][:, 0] & ~ACCUMULATE
    assert GATHER_RUNS in ops and SCALED_GATHER_RUNS in ops  # combinations gather themselves
    tree = programs("pdfb_dec", ((h, w),), "5-3", "9-7", (2, 3))[0]  # quincunx filter banks
    assert CHECKER_CORR2D in packed_on(tree, torch.device("cpu"), True)[0][:, 0]
    for prog in (dec, tree):
        for dtype in (torch.float32, torch.float64):
            tables, runs = _both_forms(prog, torch.randn(3, prog.in_numel, dtype=dtype))
            assert torch.equal(runs, tables)
    for prog in (_random_program(h, w, seed=17), adj):  # scatter-adds: layered in runs form
        tables, runs = _both_forms(prog, torch.randn(3, prog.in_numel, dtype=torch.float64))
        torch.testing.assert_close(runs, tables, rtol=1e-13, atol=1e-13)


def _kinds(instrs):
    """(scaled gathers, plain gathers, AXPBY, AXPY) counts of an instruction list."""
    scaled = sum(i.op & ~ACCUMULATE == GATHER and bool(i.f1) for i in instrs)
    plain = sum(i.op & ~ACCUMULATE == GATHER and not i.f1 for i in instrs)
    return (scaled, plain, sum(i.op == AXPBY for i in instrs), sum(i.op == AXPY for i in instrs))


def _fusion_cases():
    """name -> (program, expected _kinds of its fused instructions). Values gathered from the
    input (h, w) = (6, 7) with a shift, combined, copied to the output."""
    h, w = 6, 7
    idx = torch.arange(h * w).view(h, w)
    shift = torch.roll(idx, 1, 1)
    flip = idx.flip(0)
    cases = {}

    b = ProgramBuilder(h, w)  # both terms gathered, then a third added: all fuse
    d = b.axpby(0.3, b.gather(b.input, shift), -1.7, b.gather(b.input, flip))
    b.axpy(d, 2.5, b.gather(b.input, idx.flip(1)))
    b.copy(d, b.output(h, w))
    cases["fuses"] = (b.build(), (3, 1, 0, 0))

    b = ProgramBuilder(h, w)  # one term gathered, the other a plain value: it goes first
    plain = b.sep_corr(b.input, [1.0, 2.0], [0.5], (h - 1, w))
    g = b.gather(b.input, shift[:h - 1])
    d = b.axpby(0.7, plain, -0.2, g)
    b.copy(d, b.output(h - 1, w))
    cases["one term"] = (b.build(), (1, 1, 0, 1))

    b = ProgramBuilder(h, w)  # the gathered value is read again later: kept
    g = b.gather(b.input, shift)
    d = b.axpby(0.3, g, -1.7, b.gather(b.input, flip))
    b.axpy(d, 1.1, g)
    b.copy(d, b.output(h, w))
    cases["read twice"] = (b.build(), (1, 2, 0, 2))

    b = ProgramBuilder(h, w)  # the gather's source changes before the combination: kept
    src = b.sep_corr(b.input, [1.0, -1.0], [2.0], (h - 1, w))
    g = b.gather(src, torch.arange((h - 1) * w).view(h - 1, w).flip(1))
    b.sep_corr(b.input, [3.0], [1.0], (h - 1, w), dst=src)
    d = b.axpby(0.5, g, 0.25, src)
    b.copy(d, b.output(h - 1, w))
    cases["source overwritten"] = (b.build(), (0, 2, 1, 0))
    return cases


@pytest.mark.parametrize("name", list(_fusion_cases()))
def test_fused_gathers_follow_the_rules(name):
    prog, kinds = _fusion_cases()[name]
    assert _kinds(fuse_scaled_gathers(prog.instrs)) == kinds


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(_fusion_cases()))
def test_fused_gathers_give_the_same_bits(name, dtype):
    """Fused (packed_runs) and unfused (packed) forms through the C++ kernel: bitwise equal,
    and equal to the PyTorch interpreter's value."""
    prog, _ = _fusion_cases()[name]
    x = torch.randn(4, prog.in_numel, dtype=dtype)
    x[0, :5] = 0.0  # zeros keep their sign through the products
    _same_bits_both_forms(prog, x)


def _checker_case(name: str):
    """A 2-D correlation of a periodically extended (h, w) input, its outputs gathered; `name`
    says what the program does besides (only "quincunx" is a checkerboard correlation)."""
    h, w = 7, 12
    b = ProgramBuilder(h, w)
    rows, cols = (torch.arange(h + 2) - 1) % h, (torch.arange(w + 3) - 1) % w
    ext = b.gather(b.input, rows[:, None] * w + cols[None, :])
    k = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    c = b.corr2d(ext, k, (h, w), stride=(1, 0, 1, 0))
    i = torch.arange(h)[:, None]
    checker = i * w + 2 * torch.arange(w // 2)[None, :] + (i + 1) % 2  # (i + j) odd
    if name == "both parities":
        checker[0, 0] -= 1
    b.gather(c, checker, dst=b.output(h, w // 2))
    if name == "read by a combination":
        b.axpby(1.0, c, 2.0, c, dst=b.output(h, w))
    if name == "source read again":
        b.copy(ext, b.output(h + 2, w + 3))
    return b.build()


@pytest.mark.parametrize("name, kept", [("quincunx", True), ("both parities", False),
                                        ("read by a combination", False),
                                        ("source read again", False)])
def test_checkerboard_correlations_follow_the_rules(name, kept):
    prog = _checker_case(name)
    ops = [i.op for i in checker_correlations(fuse_scaled_gathers(prog.instrs))]
    assert (CHECKER_CORR2D in ops) == kept


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checkerboard_correlation_gives_the_same_bits(dtype):
    prog = _checker_case("quincunx")
    for runs in (False, True):
        assert (CHECKER_CORR2D in packed_on(prog, torch.device("cpu"), runs)[0][:, 0]) == runs
    _same_bits_both_forms(prog, torch.randn(3, prog.in_numel, dtype=dtype))


def _separable_case(name: str):
    """A filter along columns, then one along rows of its result (strides and phases that
    compose); `name` says what the program does besides ("pair" and "accumulating" fuse)."""
    h, w = 11, 14
    g = torch.Generator().manual_seed(5)
    b = ProgramBuilder(h, w)
    cols = b.sep_corr(b.input, torch.randn(3, generator=g), [1.0], (4, w - 1),
                      stride=(2, 1, 1, 1))
    out = b.output(3, 5)
    if name == "accumulating":
        b.gather(b.input, torch.arange(15).view(3, 5), dst=out)
    b.sep_corr(cols, [1.0], torch.randn(4, generator=g), (3, 5), stride=(1, 1, 2, 1), dst=out)
    if name == "accumulating":  # as in an adjoint: dst += the filtered value
        b.instrs[-1] = dataclasses.replace(b.instrs[-1], op=b.instrs[-1].op | ACCUMULATE)
    if name == "read again":
        b.copy(cols, b.output(4, w - 1))
    return b.build()


@pytest.mark.parametrize("name, fused", [("pair", True), ("accumulating", True),
                                         ("read again", False)])
def test_separable_pairs_follow_the_rules(name, fused):
    prog = _separable_case(name)
    ops = [i.op & ~ACCUMULATE for i in fuse_separable_pairs(prog.instrs)]
    assert (SEP_CORR_ROWS_FIRST in ops) == fused


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["pair", "accumulating"])
def test_separable_pair_gives_the_same_bits(name, dtype):
    prog = _separable_case(name)
    _same_bits_both_forms(prog, torch.randn(3, prog.in_numel, dtype=dtype))


def _upsampled_case(name: str, phases=(0, 1), acc: bool = False):
    """The (h, w) input zero-interleaved (nonzero rows and columns of parities `phases`) and
    periodically extended by one gather, then filtered along columns and along rows (fused to
    one SEP_CORR_ROWS_FIRST); `name` says what the program does besides ("upsampled" alone is
    rewritten to UPSAMPLED_SEP_CORR)."""
    h, w = 5, 7
    g = torch.Generator().manual_seed(8)
    b = ProgramBuilder(h, w)
    hu, wu = 2 * h + 4, 2 * w + 5
    table = torch.full((hu, wu), -1, dtype=torch.int64)
    rows, cols = torch.arange(phases[0], hu, 2), torch.arange(phases[1], wu, 2)
    table[rows[:, None], cols[None, :]] = (rows[:, None] // 2 % h) * w + cols[None, :] // 2 % w
    if name == "nonzero off the grid":
        table[1 - phases[0], 0] = 3
    up = b.gather(b.input, table)
    ho, wo = hu - 4, wu - 3
    cols_f = b.sep_corr(up, torch.randn(5, generator=g), [1.0], (ho, wu), stride=(1, 0, 1, 0))
    out = b.output(ho, wo - 1)
    if acc:
        b.gather(b.input, torch.arange(ho * (wo - 1)).view(ho, wo - 1) % (h * w), dst=out)
    b.sep_corr(cols_f, [1.0], torch.randn(4, generator=g), (ho, wo - 1), stride=(1, 0, 1, 1),
               dst=out)
    if acc:  # as in an adjoint: dst += the filtered value
        b.instrs[-1] = dataclasses.replace(b.instrs[-1], op=b.instrs[-1].op | ACCUMULATE)
    if name == "source read again":
        b.copy(up, b.output(hu, wu))
    return b.build()


@pytest.mark.parametrize("name, kept", [("upsampled", True), ("nonzero off the grid", False),
                                        ("source read again", False)])
def test_upsampled_sources_follow_the_rules(name, kept):
    prog = _upsampled_case(name)
    ops = [i.op & ~ACCUMULATE for i in upsampled_sources(fuse_separable_pairs(prog.instrs))]
    assert (UPSAMPLED_SEP_CORR in ops) == kept


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("phases", [(0, 0), (0, 1), (1, 0), (1, 1)])
@pytest.mark.parametrize("acc", [False, True])
def test_upsampled_filter_gives_the_same_bits(phases, acc, dtype):
    """Skipping the zeros' taps changes no bit, signed zeros, infinities and NaNs included."""
    prog = _upsampled_case("upsampled", phases, acc)
    assert UPSAMPLED_SEP_CORR in packed_on(prog, torch.device("cpu"), True)[0][:, 0] & ~ACCUMULATE
    x = torch.randn(4, prog.in_numel, dtype=dtype)
    x[1] = 0.0
    x[2, ::2] = -0.0
    x[3, 3], x[3, 9], x[3, 20] = float("inf"), float("-inf"), float("nan")
    tables, runs = _both_forms(prog, x)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    assert torch.equal(runs.view(bits), tables.view(bits))
    torch.testing.assert_close(runs[:3], run_torch(prog, x)[:3])


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_kernel_builds_agree_bitwise(monkeypatch, dtype):
    """The CPU kernels are built per instruction set (baseline, AVX2, AVX-512; the widest the
    CPU has runs): no FMA contraction and a fixed order of every sum, so all give the same
    bits. Programs with every instruction kind, large enough for full vector blocks."""
    from sstkd_ops.contourlet.tracer import programs

    ext = _backend.extension()
    monkeypatch.delenv("SSTKD_CPU_ISA", raising=False)
    widest = ext.cpu_isa()
    assert widest in ("base", "avx2", "avx512")
    dec, adj = programs("pdfb_dec", ((40, 72),), "9-7", "pkva", (2, 3))
    tree = programs("pdfb_dec", ((40, 272),), "5-3", "9-7", (2, 3))[0]  # checkerboard blocks
    progs = [_random_program(33, 70, seed=21), dec, adj, tree]
    inputs = [torch.randn(3, p.in_numel, dtype=dtype) for p in progs]
    results = {}
    for isa in ("base", "avx2", "widest"):
        if isa == "widest":
            monkeypatch.delenv("SSTKD_CPU_ISA")
        else:
            monkeypatch.setenv("SSTKD_CPU_ISA", isa)
        assert ext.cpu_isa() == (widest if isa == "widest" or widest == "base" else isa)
        results[isa] = [run_compiled(x, p) for x, p in zip(inputs, progs)]
    for isa in ("avx2", "widest"):
        for got, want in zip(results[isa], results["base"]):
            assert torch.equal(got, want), isa


@needs_ext
def test_compiled_op_schema_passes_opcheck():
    prog = _random_program(6, 7, seed=4)
    fi, ft, fc, fws = packed_on(prog, torch.device("cpu"))
    x = torch.randn(2, prog.in_numel, dtype=torch.float64)
    torch.library.opcheck(torch.ops.sstkd_ops.linear_program,
                          (x, fi, ft, fc, prog.out_numel, fws), test_utils="test_schema")


@needs_ext
def test_run_refuses_planes_of_the_wrong_size():
    prog = _random_program(6, 7, seed=5)
    with pytest.raises(ValueError, match=f"linprog.run: argument 'x' expected {prog.in_numel}"):
        run(prog, torch.randn(2, prog.in_numel + 1), "cpu")


def _packed_copy(prog, runs=False):
    instr, tables, coefs, ws_total = packed_on(prog, torch.device("cpu"), runs)
    return instr.clone(), tables.clone(), coefs.clone(), ws_total


def _first_run_row(fi):
    return int(torch.nonzero(fi[:, 0] & ~ACCUMULATE == GATHER_RUNS)[0])


@needs_ext
@pytest.mark.parametrize("corrupt", ["opcode", "offset", "table", "scratch", "rowptr",
                                     "run start", "run length", "run source", "run step",
                                     "run count", "run coefficient", "checker parity",
                                     "checker width", "upsampled phases", "upsampled rows"])
def test_malformed_program_raises_instead_of_crashing(corrupt):
    prog = _random_program(6, 7, seed=6)
    if corrupt == "run coefficient":  # a scaled gather's coefficient must be in the array
        prog = _fusion_cases()["fuses"][0]
    elif corrupt.startswith("checker"):
        prog = _checker_case("quincunx")
    elif corrupt.startswith("upsampled"):
        prog = _upsampled_case("upsampled")
    fi, ft, fc, ws = _packed_copy(prog, runs=corrupt.startswith(("run ", "checker", "upsampled")))
    if corrupt.startswith("upsampled"):  # phases 0..3; the rows read inside the source
        q = int(torch.nonzero(fi[:, 0] == UPSAMPLED_SEP_CORR)[0])
        if corrupt == "upsampled phases":
            fi[q, 3] = 4
        else:
            fi[q, 8] += 2
    elif corrupt.startswith("checker"):  # a parity of 0 or 1, an even width
        q = int(torch.nonzero(fi[:, 0] == CHECKER_CORR2D)[0])
        if corrupt == "checker parity":
            fi[q, 3] = 2
        else:
            fi[q, 9] -= 1
    elif corrupt == "run coefficient":
        q = int(torch.nonzero(fi[:, 0] & ~ACCUMULATE == SCALED_GATHER_RUNS)[0])
        fi[q, 14] = fc.numel()
    elif corrupt.startswith("run "):  # a run is (dst_start, length, src_start, step)
        q = _first_run_row(fi)
        run = int(fi[q, 5])
        if corrupt == "run start":  # runs must tile the destination in order
            ft[run] = 1
        elif corrupt == "run length":
            ft[run + 1] += 1
        elif corrupt == "run source":
            ft[run + 2] = 10**6
        elif corrupt == "run step":  # the last element read leaves the source
            ft[run + 3] = 10**5
        else:
            fi[q, 6] += 10**6
    elif corrupt == "opcode":
        fi[0, 0] = 99
    elif corrupt == "offset":
        fi[0, 1] = (2 << 40) + 10**6
    elif corrupt == "table":
        ft[0] = 10**6
    elif corrupt == "scratch":  # the separable pass's intermediate must not leave the workspace
        q = int(torch.nonzero(fi[:, 0] == 3)[0])
        fi[q, 3] = (2 << 40) + ws
    else:  # a scatter-add's CSR must be monotone
        q = int(torch.nonzero(fi[:, 0] == 1)[0])
        ft[int(fi[q, 5]) + 1] = -5
    x = torch.randn(2, prog.in_numel)
    with pytest.raises(RuntimeError, match="sstkd_ops::linear_program"):
        torch.ops.sstkd_ops.linear_program(x, fi, ft, fc, prog.out_numel, ws)
    with pytest.raises(RuntimeError, match="sstkd_ops::linear_program"):
        torch.ops.sstkd_ops.linear_program_check(fi, ft, fc, prog.in_numel, prog.out_numel, ws)


def _bad_arguments(x, fi, ft, fc, out_numel, ws):
    """(name, arguments) pairs, each with one bad argument of sstkd_ops::linear_program."""
    good = [x, fi, ft, fc, out_numel, ws]
    cases = {
        "x int": {0: x.to(torch.int32)},
        "x 1-D": {0: x.flatten()},
        "x 3-D": {0: x[None]},
        "instr int32": {1: fi.to(torch.int32)},
        "instr columns": {1: fi[:, :17]},
        "instr 1-D": {1: fi.flatten()},
        "tables int64": {2: ft.to(torch.int64)},
        "tables 2-D": {2: ft[None]},
        "tables empty": {2: ft[:0]},
        "coefs float32": {3: fc.to(torch.float32)},
        "coefs empty": {3: fc[:0]},
        "out_numel negative": {4: -1},
        "ws_numel negative": {5: -1},
        "ws_numel huge": {5: 1 << 41},
        "ws too small": {5: 1},
        "out too small": {4: 1},
    }
    for name, change in cases.items():
        args = list(good)
        for i, v in change.items():
            args[i] = v
        yield name, args


@needs_ext
def test_every_argument_is_checked():
    prog = _random_program(6, 7, seed=6)
    fi, ft, fc, ws = _packed_copy(prog)
    x = torch.randn(2, prog.in_numel)
    for name, args in _bad_arguments(x, fi, ft, fc, prog.out_numel, ws):
        try:
            torch.ops.sstkd_ops.linear_program(*args)
        except RuntimeError as e:
            assert "sstkd_ops::linear_program" in str(e), (name, str(e))
        else:
            pytest.fail(f"sstkd_ops::linear_program accepted a bad argument ({name})")
    # the reference arguments themselves are accepted
    torch.ops.sstkd_ops.linear_program(x, fi, ft, fc, prog.out_numel, ws)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_argument_is_checked_on_cuda():
    if not _backend.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    prog = _random_program(6, 7, seed=6)
    fi, ft, fc, ws = (t.cuda() if torch.is_tensor(t) else t for t in _packed_copy(prog))
    x = torch.randn(2, prog.in_numel, device="cuda")
    for name, args in _bad_arguments(x, fi, ft, fc, prog.out_numel, ws):
        if name in ("ws too small", "out too small"):
            continue  # checked once per program (linear_program_check), not per call
        with pytest.raises(RuntimeError, match="sstkd_ops::linear_program"):
            torch.ops.sstkd_ops.linear_program(*args)
    for i in (1, 2, 3):  # every tensor on x's device
        args = [x, fi, ft, fc, prog.out_numel, ws]
        args[i] = args[i].cpu()
        with pytest.raises(RuntimeError, match="sstkd_ops::linear_program"):
            torch.ops.sstkd_ops.linear_program(*args)


@needs_ext
def test_validation_runs_once_per_program(monkeypatch):
    from sstkd_ops.linprog import runtime as _program_op

    prog = _random_program(5, 6, seed=11)
    adj = prog.adjoint()
    calls = []
    real = _program_op.validate
    monkeypatch.setattr(_program_op, "validate",
                        lambda p, runs=False: (calls.append(p), real(p, runs)))
    x = torch.randn(2, prog.in_numel, dtype=torch.float64)
    for _ in range(3):
        y = run_compiled(x, prog)
        run_compiled(torch.ones_like(y), adj)
    assert [id(p) for p in calls] == [id(prog), id(adj)]


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_kernels_match_torch_interpreter(dtype):
    prog = _random_program(5, 6, seed=8)
    adj = prog.adjoint()
    x = torch.randn(2, prog.in_numel, dtype=dtype)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(run(prog, x, "triton"), run_torch(prog, x), rtol=tol, atol=tol)
    y = torch.randn(2, prog.out_numel, dtype=dtype)
    torch.testing.assert_close(run(adj, y, "triton"), run_torch(adj, y), rtol=tol, atol=tol)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_split_planes_give_the_same_bits(dtype):
    """An image on a GPU runs each instruction on its own launch, its blocks of outputs spread
    over several program instances per plane: every output computed as by one instance."""
    from sstkd_ops.linprog.triton_kernel import BLOCK
    from sstkd_ops.linprog.triton_kernel import run as run_triton

    prog = _random_program(40, 60, seed=12)  # every kind of instruction, several blocks each
    for p in (prog, prog.adjoint()):
        instr, tables, coefs, ws = packed_on(p, torch.device("cpu"))
        x = torch.randn(2, p.in_numel, dtype=dtype)
        whole = run_triton(x, instr, tables, coefs, p.out_numel, ws, split=0)
        assert p.out_numel > 2 * BLOCK
        for parts in (3,):
            split = run_triton(x, instr, tables, coefs, p.out_numel, ws, split=parts)
            assert torch.equal(split, whole), parts


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_image_split_gives_the_bits_of_whole_planes(backend, dtype):
    """One 320^2 plane (an image: fewer planes than SMs) runs each instruction over the whole
    GPU; as many copies of it as SMs run whole planes per block. The same bits, and the
    interpreter's value."""
    from sstkd_ops.contourlet.tracer import programs

    if backend == "cuda" and not _backend.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for prog in programs("pdfb_dec", ((320, 320),), "5-3", "9-7", (2, 3)):  # and its adjoint
        x = torch.randn(1, prog.in_numel, dtype=dtype, device="cuda")
        image = run(prog, x, backend)
        planes = run(prog, x.expand(sms, -1), backend)
        assert torch.equal(image[0], planes[0]) and torch.equal(planes[0], planes[-1])
        tol = {torch.float32: 1e-4, torch.float64: 1e-10}[dtype]
        torch.testing.assert_close(image.cpu(), run_torch(prog, x.cpu()), rtol=tol, atol=tol)
