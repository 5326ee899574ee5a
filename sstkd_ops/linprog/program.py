"""Fixed linear maps of image planes, compiled to a small instruction list ("program").

The fused backends of the contourlet transform run such programs (:mod:`.runtime`): ``_C``
(C++, one plane per task with the plane's intermediates in a cache-sized workspace), CUDA and
Triton. A program is
built once per (transform, plane size, dtype-independent) configuration with
:class:`ProgramBuilder`; its exact transpose (the adjoint, i.e. the gradient) is derived
mechanically by :meth:`Program.adjoint`, so backward needs nothing but shapes, and the adjoint
of the adjoint is the forward again (double backward for free).

Instruction semantics are documented in ``csrc/linprog/linear_program.h``;
:func:`sstkd_ops.linprog.interpreter.run_torch` is a plain-PyTorch interpreter of the same
instructions, used to check programs and kernels.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math

import torch

N_COLS = 18
SPACE_SHIFT = 40
IN, OUT, WS = 0, 1, 2

GATHER, SCATTER_ADD, ZERO, SEP_CORR, SEP_CORR_T, AXPBY, CORR2D, CORR2D_T, AXPY = range(9)
GATHER_RUNS = 9  # packed form only (the C++ kernel): a gather stored as runs, see gather_runs
SCALED_GATHER_RUNS = 10  # packed form only: a gather fused into a combination (fuse_scaled_gathers)
CHECKER_CORR2D = 11  # packed form only: half the outputs of a CORR2D (checker_correlations)
SEP_CORR_ROWS_FIRST = 12  # packed form only: two 1-D SEP_CORRs as one (fuse_separable_pairs)
UPSAMPLED_SEP_CORR = 13  # packed form only: filter of an upsampled plane (upsampled_sources)
ACCUMULATE = 256
RUN_COLS = 4
_OVERWRITE_OPS = {GATHER, SEP_CORR, CORR2D, AXPBY}


@dataclasses.dataclass(frozen=True)
class Region:
    """A (h, w) block of one address space (0 input, 1 output, 2 workspace)."""

    space: int
    offset: int
    h: int
    w: int

    @property
    def numel(self) -> int:
        return self.h * self.w

    @property
    def operand(self) -> int:
        return (self.space << SPACE_SHIFT) | self.offset


@dataclasses.dataclass
class Instr:
    op: int
    dst: Region
    a: Region | None = None
    b: Region | None = None
    table: torch.Tensor | None = None  # int64, indices into a (GATHER) or dst (SCATTER_ADD)
    stride: tuple[int, int, int, int] = (1, 0, 1, 0)  # s1, p1, s2, p2
    f1: tuple[float, ...] = ()
    f2: tuple[float, ...] = ()
    kshape: tuple[int, int] = (0, 0)  # CORR2D kernel (rows, cols); f1 holds it row-major
    parity: int = 0  # CHECKER_CORR2D: the outputs kept have (i + j) % 2 == parity
    # UPSAMPLED_SEP_CORR: the parities (rows, columns) of the virtual source's nonzero entries
    phases: tuple[int, int] = (0, 0)


class ProgramBuilder:
    """Record a linear map of an ``(h, w)`` input plane as instructions.

    Workspace regions come from :meth:`alloc` (each value its own region, so the recorded
    program is easy to read); :meth:`build` then places them by lifetime. Outputs are regions
    of space 1 from :meth:`output`; they are write-only (reading one is refused), which keeps
    the adjoint's input read-only.
    """

    def __init__(self, h: int, w: int):
        self.input = Region(IN, 0, h, w)
        self.instrs: list[Instr] = []
        self._out_numel = 0
        self._ws_top = 0

    # -- memory -------------------------------------------------------------------------
    def alloc(self, h: int, w: int) -> Region:
        """A fresh workspace region; :meth:`build` later lets regions whose lifetimes do not
        overlap share memory."""
        r = Region(WS, self._ws_top, h, w)
        self._ws_top += h * w
        return r

    def output(self, h: int, w: int) -> Region:
        r = Region(OUT, self._out_numel, h, w)
        self._out_numel += h * w
        return r

    # -- instructions ---------------------------------------------------------------------
    def _src(self, r: Region) -> Region:
        if r.space == OUT:
            raise ValueError("linear program: output regions are write-only")
        return r

    def _dst(self, h: int, w: int, dst: Region | None) -> Region:
        if dst is None:
            return self.alloc(h, w)
        if (dst.h, dst.w) != (h, w):
            raise ValueError(f"linear program: destination is {dst.h}x{dst.w}, needs {h}x{w}")
        return dst

    def gather(self, src: Region, index: torch.Tensor, dst: Region | None = None,
               accumulate: bool = False) -> Region:
        """``dst (+)= src.flatten()[index]``; ``index`` is an integer (h, w) tensor whose
        entries -1 read zero."""
        index = torch.as_tensor(index, dtype=torch.int64)
        if index.dim() != 2:
            raise ValueError("linear program: gather index must be 2-D")
        if index.numel() and (int(index.min()) < -1 or int(index.max()) >= src.numel):
            raise ValueError("linear program: gather index out of range")
        dst = self._dst(*index.shape, dst)
        op = GATHER | ACCUMULATE if accumulate else GATHER
        self.instrs.append(Instr(op, dst, self._src(src), table=index.flatten()))
        return dst

    def zero(self, dst: Region) -> Region:
        self.instrs.append(Instr(ZERO, dst))
        return dst

    def scatter_add(self, dst: Region, src: Region, index: torch.Tensor) -> Region:
        """``dst.flatten()[index] += src`` (``index`` shaped like ``src``)."""
        index = torch.as_tensor(index, dtype=torch.int64).flatten()
        if index.numel() != src.numel:
            raise ValueError("linear program: scatter index must match the source size")
        self.instrs.append(Instr(SCATTER_ADD, dst, self._src(src), table=index))
        return dst

    def sep_corr(self, src: Region, f1, f2, out_hw: tuple[int, int],
                 stride: tuple[int, int, int, int] = (1, 0, 1, 0),
                 dst: Region | None = None) -> Region:
        """Valid separable correlation ``dst[i,j] = sum f1[a] f2[b] src[s1 i+p1+a, s2 j+p2+b]``."""
        f1, f2 = tuple(float(v) for v in f1), tuple(float(v) for v in f2)
        s1, p1, s2, p2 = stride
        ho, wo = out_hw
        if (ho - 1) * s1 + p1 + len(f1) > src.h or (wo - 1) * s2 + p2 + len(f2) > src.w:
            raise ValueError("linear program: sep_corr reads outside its source")
        dst = self._dst(ho, wo, dst)
        self.instrs.append(Instr(SEP_CORR, dst, self._src(src), stride=stride, f1=f1, f2=f2))
        return dst

    def sep_corr_t(self, dst: Region, src: Region, f1, f2,
                   stride: tuple[int, int, int, int] = (1, 0, 1, 0)) -> Region:
        """Accumulate the transpose of :meth:`sep_corr` of ``src`` into ``dst`` (``+=``)."""
        f1, f2 = tuple(float(v) for v in f1), tuple(float(v) for v in f2)
        s1, p1, s2, p2 = stride
        if (src.h - 1) * s1 + p1 + len(f1) > dst.h or (src.w - 1) * s2 + p2 + len(f2) > dst.w:
            raise ValueError("linear program: sep_corr_t writes outside its destination")
        self.instrs.append(Instr(SEP_CORR_T, dst, self._src(src), stride=stride, f1=f1, f2=f2))
        return dst

    def corr2d(self, src: Region, kernel: torch.Tensor, out_hw: tuple[int, int],
               stride: tuple[int, int, int, int] = (1, 0, 1, 0),
               dst: Region | None = None) -> Region:
        """Valid 2-D correlation with ``kernel`` (k1, k2), strided like :meth:`sep_corr`."""
        kernel = torch.as_tensor(kernel, dtype=torch.float64)
        s1, p1, s2, p2 = stride
        ho, wo = out_hw
        k1, k2 = kernel.shape
        if (ho - 1) * s1 + p1 + k1 > src.h or (wo - 1) * s2 + p2 + k2 > src.w:
            raise ValueError("linear program: corr2d reads outside its source")
        dst = self._dst(ho, wo, dst)
        self.instrs.append(Instr(CORR2D, dst, self._src(src), stride=stride,
                                 f1=tuple(kernel.flatten().tolist()), kshape=(k1, k2)))
        return dst

    def axpby(self, alpha: float, a: Region, beta: float, b: Region,
              dst: Region | None = None) -> Region:
        """``dst = alpha a + beta b`` (elementwise, same sizes)."""
        if a.numel != b.numel:
            raise ValueError("linear program: axpby operands differ in size")
        dst = self._dst(a.h, a.w, dst)
        self.instrs.append(Instr(AXPBY, dst, self._src(a), self._src(b),
                                 f1=(float(alpha),), f2=(float(beta),)))
        return dst

    def axpy(self, dst: Region, alpha: float, src: Region) -> Region:
        """``dst += alpha src``."""
        if dst.numel != src.numel:
            raise ValueError("linear program: axpy operands differ in size")
        self.instrs.append(Instr(AXPY, dst, self._src(src), f1=(float(alpha),)))
        return dst

    def copy(self, src: Region, dst: Region | None = None, scale: float = 1.0) -> Region:
        index = torch.arange(src.numel).view(src.h, src.w)
        if scale == 1.0:
            return self.gather(src, index, dst)
        return self.axpby(scale, src, 0.0, src, dst)

    def build(self, reuse: bool = True) -> Program:
        """Freeze the instructions; with ``reuse``, workspace regions whose lifetimes do not
        overlap share memory (first fit over the instruction order)."""
        instrs = list(self.instrs)
        ws_numel = self._ws_top
        if reuse:
            instrs, ws_numel = _assign_workspace(instrs)
        return Program(self.input.numel, self._out_numel, ws_numel, instrs,
                       unplaced=list(self.instrs) if reuse else None)


def _assign_workspace(instrs: list[Instr]) -> tuple[list[Instr], int]:
    """Re-place workspace regions so that regions with disjoint lifetimes share memory."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    for q, ins in enumerate(instrs):
        for r in (ins.dst, ins.a, ins.b):
            if r is not None and r.space == WS:
                first.setdefault(r.offset, q)
                last[r.offset] = q
                size[r.offset] = max(size.get(r.offset, 0), r.numel)
    placed: dict[int, int] = {}
    active: list[tuple[int, int, int]] = []  # (end, offset, size)
    peak = 0
    for off in sorted(first, key=lambda o: (first[o], o)):
        start = first[off]
        active = [a for a in active if a[0] >= start]
        taken = sorted((a[1], a[1] + a[2]) for a in active)
        pos = 0
        for lo, hi in taken:
            if pos + size[off] <= lo:
                break
            pos = max(pos, hi)
        placed[off] = pos
        active.append((last[off], pos, size[off]))
        peak = max(peak, pos + size[off])

    def move(r: Region | None) -> Region | None:
        if r is None or r.space != WS:
            return r
        return dataclasses.replace(r, offset=placed[r.offset])

    out = [dataclasses.replace(ins, dst=move(ins.dst), a=move(ins.a), b=move(ins.b))
           for ins in instrs]
    return out, peak


def gather_runs(table: torch.Tensor) -> torch.Tensor:
    """An index table as runs: ``(R, 4)`` int64 rows ``(dst_start, length, src_start, step)``
    meaning ``dst[dst_start + k] = src[src_start + step k]`` for ``k < length`` (a run of
    ``-1`` entries has ``src_start = -1``: zeros). The runs tile ``[0, numel)`` in order; each
    starts where the last ended and keeps its first step for as long as it holds (greedy).

    Constant-step stretches (periodic extension, shears, polyphase splits) become one run, so
    an image-scale gather is a few strided copies per row instead of one table entry per
    element. Computed by the compiled op ``sstkd_ops::gather_runs`` (packing for the C++ CPU
    kernel, which needs the extension anyway).
    """
    return torch.ops.sstkd_ops.gather_runs(table.flatten().to(torch.int64))


def scatter_layers(table: torch.Tensor, n_dst: int) -> list[torch.Tensor]:
    """A scatter-add ``dst[table[k]] += src[k]`` as gather tables ``layer[m]`` of ``n_dst``
    entries: ``dst[i] += src[layer[m][i]]`` for m = 0, 1, ... (``-1``: nothing), where
    ``layer[m][i]`` is the m-th source of destination ``i`` in increasing ``k``
    (compiled op ``sstkd_ops::scatter_layers``)."""
    layers = torch.ops.sstkd_ops.scatter_layers(table.flatten().to(torch.int64), n_dst)
    return list(layers.unbind(0))


def _overlap(r: Region | None, s: Region | None) -> bool:
    return (r is not None and s is not None and r.space == s.space
            and r.offset < s.offset + s.numel and s.offset < r.offset + r.numel)


def _reads(ins: Instr) -> list[Region]:
    base = ins.op & ~ACCUMULATE
    regions = [] if base == ZERO else [ins.a]
    if base == AXPBY:
        regions.append(ins.b)
    if ins.op & ACCUMULATE or base in (SCATTER_ADD, SEP_CORR_T, CORR2D_T, AXPY):
        regions.append(ins.dst)
    return [r for r in regions if r is not None]


def _overwrites(ins: Instr) -> bool:
    """Whether ``ins`` writes all of its destination without reading what was there."""
    base = ins.op & ~ACCUMULATE
    return (base in _OVERWRITE_OPS or base == ZERO) and not ins.op & ACCUMULATE


class _Uses:
    """Which instructions of a list touch (read or write) each workspace region, for the
    rewrites' scans: where the regions are each either identical or disjoint (a program before
    its workspace is placed), the instructions touching a region are listed once, so a scan
    visits those alone; otherwise a scan visits every instruction."""

    def __init__(self, instrs: list[Instr]):
        self.n = len(instrs)
        self.by_offset: dict[int, list[int]] | None = {}
        sizes: dict[int, int] = {}
        for q, ins in enumerate(instrs):
            for r in {ins.dst, ins.a, ins.b} - {None}:
                if r.space == WS:
                    if sizes.setdefault(r.offset, r.numel) != r.numel:
                        self.by_offset = None
                        return
                    uses = self.by_offset.setdefault(r.offset, [])
                    if not uses or uses[-1] != q:
                        uses.append(q)
        ends = sorted((off, off + size) for off, size in sizes.items())
        if any(a[1] > b[0] for a, b in zip(ends, ends[1:])):
            self.by_offset = None

    def between(self, regions: list[Region], lo: int, hi: int) -> list[int]:
        """Instruction indices in ``[lo, hi)`` that may touch any of ``regions``, in order."""
        lo, hi = max(lo, 0), min(hi, self.n)
        if self.by_offset is None:
            return list(range(lo, hi))
        found: set[int] = set()
        for r in regions:
            if r.space == WS:
                uses = self.by_offset.get(r.offset, [])
                found.update(uses[bisect.bisect_left(uses, lo):bisect.bisect_left(uses, hi)])
            elif r.space != IN:  # the input is never written; an output region: scan all
                return list(range(lo, hi))
        return sorted(found)


def _hits(live: list[tuple[int, int]], r: Region) -> bool:
    """Whether workspace intervals ``live`` and region ``r`` share an element."""
    return r.space == WS and any(r.offset < hi and lo < r.offset + r.numel for lo, hi in live)


def _cut(live: list[tuple[int, int]], r: Region) -> list[tuple[int, int]]:
    """Workspace intervals ``live`` less region ``r``'s elements."""
    return [piece for lo, hi in live
            for piece in ((lo, min(hi, r.offset)), (max(lo, r.offset + r.numel), hi))
            if piece[0] < piece[1]]


def _dead_after(instrs: list[Instr], x: int, r: Region, uses: _Uses | None = None) -> bool:
    """Whether nothing after instruction ``x`` reads workspace region ``r``'s value: each part
    of it is overwritten before anything reads it (or nothing touches it again)."""
    live = [(r.offset, r.offset + r.numel)]  # the parts of r not yet overwritten
    uses = uses or _Uses(instrs)
    for y in uses.between([r], x + 1, len(instrs)):
        later = instrs[y]
        if any(_hits(live, q) for q in _reads(later)):
            return False
        if later.dst.space == WS and _overwrites(later):
            live = _cut(live, later.dst)
            if not live:
                return True
    return True


def _gather_writers(instrs: list[Instr], x: int, r: Region, uses: _Uses) -> list[int] | None:
    """The instructions that make the value of workspace region ``r`` read by instruction
    ``x``, if they are all gathers of the whole region (the first overwriting, the others
    accumulating; scaled or not) and nothing else touches ``r`` in between; else None."""
    writers = []
    for y in reversed(uses.between([r], 0, x)):
        ins = instrs[y]
        gather = (ins.op & ~ACCUMULATE == GATHER and not _overlap(ins.a, r)
                  and (ins.dst.offset, ins.dst.numel) == (r.offset, r.numel))
        if _overlap(ins.dst, r) or any(_overlap(q, r) for q in _reads(ins)):
            if not gather:
                return None
            writers.append(y)
            if not ins.op & ACCUMULATE:
                return writers
    return None


def fuse_scaled_gathers(instrs: list[Instr]) -> list[Instr]:
    """The C++ CPU kernel's form of the linear combinations: where ``AXPBY`` / ``AXPY`` reads a
    workspace value made by a ``GATHER`` and read by nothing else, the gather is dropped and
    the combination gathers that value's source itself, scaled (a ``GATHER`` with ``f1 =
    (alpha,)``, packed as ``SCALED_GATHER_RUNS``): ``d = a x[t] + b y[u]`` becomes ``d = a
    x[t]; d += b y[u]``, one pass over ``d`` per term instead of a temporary per term and a pass
    per combination. Every element gets the same products added in the same order (IEEE
    addition commutes), so results are bitwise those of the instructions it replaces.

    A fusion needs: the gather the last writer of the value before the combination, nothing
    in between reading the value or writing the gather's source, the value dead afterwards
    (each part of it overwritten before anything reads it again), and the combination's
    destination disjoint from every source it now reads after writing it.
    """
    dropped: set[int] = set()
    uses = _Uses(instrs)

    def producer(x: int, r: Region) -> int | None:
        if r.space != WS:
            return None
        for g in reversed(uses.between([r], 0, x)):
            ins = instrs[g]
            if _overlap(ins.dst, r):
                break
            if any(_overlap(q, r) for q in _reads(ins)):
                return None
        else:
            return None
        if (ins.op != GATHER or ins.f1 or g in dropped or ins.dst.offset != r.offset
                or ins.dst.numel != r.numel):
            return None
        if any(_overlap(instrs[y].dst, ins.a) for y in uses.between([ins.a], g + 1, x)):
            return None  # the source changes before the combination
        return g if _dead_after(instrs, x, r, uses) else None

    out: dict[int, list[Instr]] = {}
    for x, ins in enumerate(instrs):
        base = ins.op & ~ACCUMULATE
        if base not in (AXPBY, AXPY) or _overlap(ins.dst, ins.a) or _overlap(ins.dst, ins.b):
            continue
        terms = [(ins.a, ins.f1[0])] + ([(ins.b, ins.f2[0])] if base == AXPBY else [])
        if base == AXPBY and _overlap(ins.a, ins.b):
            continue
        made = [producer(x, r) for r, _ in terms]
        if all(g is None for g in made):
            continue
        if base == AXPBY and made[0] is None:  # the gathered term first (it overwrites d)
            terms, made = terms[::-1], made[::-1]
        sources = [instrs[g].a if g is not None else r for (r, _), g in zip(terms, made)]
        if any(_overlap(ins.dst, src) for src in sources):
            continue
        seq = []
        for i, ((r, alpha), g) in enumerate(zip(terms, made)):
            acc = ACCUMULATE if (i > 0 or base == AXPY) else 0
            if g is None:
                seq.append(Instr(AXPY, ins.dst, r, f1=(alpha,)))
            else:
                seq.append(Instr(GATHER | acc, ins.dst, instrs[g].a, table=instrs[g].table,
                                 f1=(alpha,)))
                dropped.add(g)
        out[x] = seq
    fused: list[Instr] = []
    for q, ins in enumerate(instrs):
        if q not in dropped:
            fused.extend(out.get(q, [ins]))
    return fused


def fuse_separable_pairs(instrs: list[Instr]) -> list[Instr]:
    """The C++ CPU kernel's form of a separable filter applied as two passes (the reference's
    ``conv2d`` with an ``(l, 1)`` then a ``(1, l)`` kernel): a ``SEP_CORR`` filtering along
    columns only (``f2 = (1,)``, unit column stride) whose value only a ``SEP_CORR`` filtering
    along rows only (``f1 = (1,)``, unit row stride) reads becomes one ``SEP_CORR_ROWS_FIRST``,
    which filters each output row's source rows into one row and then that row: the same sums
    in the same order, without the intermediate plane.

    Needs the intermediate read by nothing else and dead after, the first pass's source
    unchanged in between, and the second's destination disjoint from that source.
    """
    out = list(instrs)
    dropped: set[int] = set()
    uses = _Uses(instrs)
    for x, first in enumerate(instrs):
        mid = first.dst
        if (first.op != SEP_CORR or first.f2 != (1.0,) or first.stride[2] != 1
                or mid.space != WS):
            continue
        for y in uses.between([mid, first.a], x + 1, len(instrs)):
            later = instrs[y]
            if any(_overlap(q, mid) for q in _reads(later)) or _overlap(later.dst, mid) \
                    or _overlap(later.dst, first.a):
                break
        else:
            continue
        second = instrs[y]
        if (second.op & ~ACCUMULATE != SEP_CORR or second.f1 != (1.0,) or second.stride[0] != 1
                or second.a != mid or _overlap(second.dst, mid)
                or _overlap(second.dst, first.a) or not _dead_after(instrs, y, mid, uses)):
            continue
        s1, p1, _, p2 = first.stride
        _, q1, t2, q2 = second.stride
        out[y] = dataclasses.replace(second, op=SEP_CORR_ROWS_FIRST | second.op & ACCUMULATE,
                                     a=first.a, f1=first.f1,
                                     stride=(s1, s1 * q1 + p1, t2, q2 + p2))
        dropped.add(x)
    return [ins for q, ins in enumerate(out) if q not in dropped]


def upsampled_sources(instrs: list[Instr]) -> list[Instr]:
    """The C++ CPU kernel's form of a filter of an upsampled plane (the LP's synthesis filter):
    a ``SEP_CORR_ROWS_FIRST`` (unit strides) whose source is made by one gather, read by
    nothing else, that puts zeros at every row or column but those of one parity (zero
    interleaving, with the periodic extension) gathers the nonzero entries alone, into a
    quarter-size plane, and becomes an ``UPSAMPLED_SEP_CORR`` that skips the zeros' taps.
    Skipping a zero's product changes no sum: each starts from +0, adding a product of a
    finite weight and a zero (+-0) leaves a sum that is +0 or nonzero unchanged, and no sum
    becomes -0 (weights that are not finite: not rewritten).
    """
    out = list(instrs)
    uses = _Uses(instrs)
    top = max((r.offset + r.numel for ins in instrs for r in (ins.dst, ins.a, ins.b)
               if r is not None and r.space == WS), default=0)
    for x, ins in enumerate(instrs):
        src = ins.a
        if ins.op & ~ACCUMULATE != SEP_CORR_ROWS_FIRST or ins.stride[0] != 1 \
                or ins.stride[2] != 1 or src.space != WS or min(src.h, src.w) < 2 \
                or not all(math.isfinite(v) for v in ins.f1 + ins.f2):
            continue
        writers = _gather_writers(instrs, x, src, uses)
        if writers is None or len(writers) != 1 or instrs[writers[0]].f1 \
                or not _dead_after(instrs, x, src, uses):
            continue
        g = writers[0]
        table = instrs[g].table.view(src.h, src.w)
        nonzero = table >= 0
        count = int(nonzero.sum())
        phases = [(a, b) for a in (0, 1) for b in (0, 1)
                  if int(nonzero[a::2, b::2].sum()) == count]
        if not count or not phases:
            continue
        a, b = phases[0]
        compact = table[a::2, b::2]
        plane = Region(WS, top, *compact.shape)
        top += plane.numel
        out[g] = dataclasses.replace(instrs[g], dst=plane, table=compact.flatten())
        out[x] = dataclasses.replace(ins, op=UPSAMPLED_SEP_CORR | ins.op & ACCUMULATE,
                                     a=plane, phases=(a, b))
    return out


def checker_correlations(instrs: list[Instr]) -> list[Instr]:
    """The C++ CPU kernel's form of the quincunx filter banks: a ``CORR2D`` (unit strides, even
    width) whose outputs only gathers read, and only outputs ``(i, j)`` with ``i + j`` of one
    parity, computes those alone (``CHECKER_CORR2D``: half the multiply-adds; zeros at the
    others). Each kept output is the same sum in the same order. Its source, made by gathers
    alone and read by nothing else, is stored with each row split into its even and its odd
    columns (the gathers' tables permuted), so that every tap reads contiguous elements.

    The correlation's readers are the gathers from its region before anything writes into it;
    after that, nothing may read what is left of it.
    """
    out = list(instrs)
    uses = _Uses(instrs)
    for x, ins in enumerate(instrs):
        r = ins.dst
        if ins.op != CORR2D or r.space != WS or ins.stride[0] != 1 or ins.stride[2] != 1 \
                or r.w % 2:
            continue
        readers, live, written = [], [(r.offset, r.offset + r.numel)], False
        for y in uses.between([r], x + 1, len(instrs)):
            later = instrs[y]
            touching = [q for q in _reads(later) if _hits(live, q)]
            if touching:
                a = later.a
                if written or later.op & ~ACCUMULATE != GATHER or touching != [a] \
                        or (a.offset, a.numel) != (r.offset, r.numel):
                    readers = None
                    break
                readers.append(later.table)
            if _hits(live, later.dst):
                written = True
                live = _cut(live, later.dst)
                if not live:
                    break
        if not readers:
            continue
        src = ins.a
        writers = _gather_writers(instrs, x, src, uses) if src.space == WS else None
        if writers is None or not _dead_after(instrs, x, src, uses):
            continue
        used = torch.cat([t[t >= 0] for t in readers])
        parities = torch.unique((used // r.w + used % r.w) % 2)
        if parities.numel() != 1:
            continue
        out[x] = dataclasses.replace(ins, op=CHECKER_CORR2D, parity=int(parities[0]))
        # the source's rows split (even columns, then odd ones) by its gathers themselves
        split = torch.cat([torch.arange(0, src.w, 2), torch.arange(1, src.w, 2)])
        for y in writers:
            table = out[y].table.view(src.h, src.w)[:, split].flatten()
            out[y] = dataclasses.replace(out[y], table=table)
    return out


@dataclasses.dataclass(eq=False)  # hashed by identity: programs are cached, never compared
class Program:
    """A compiled linear map ``(P, in_numel) -> (P, out_numel)``."""

    in_numel: int
    out_numel: int
    ws_numel: int
    instrs: list[Instr]
    # the instructions before the workspace was placed (each value its own region), where the
    # builder made them: the C++ CPU kernel's form rewrites these, then places the workspace
    unplaced: list[Instr] | None = None

    def adjoint(self) -> Program:
        """The exact transpose: a program ``(P, out_numel) -> (P, in_numel)``."""
        def swap(r: Region | None) -> Region | None:
            if r is None or r.space == WS:
                return r
            return dataclasses.replace(r, space=OUT if r.space == IN else IN)

        out: list[Instr] = [Instr(ZERO, Region(OUT, 0, 1, self.in_numel))]
        if self.ws_numel:
            out.append(Instr(ZERO, Region(WS, 0, 1, self.ws_numel)))
        for ins in reversed(self.instrs):
            dst, a, b = swap(ins.dst), swap(ins.a), swap(ins.b)
            op = ins.op & ~ACCUMULATE
            if op == ZERO:
                pass
            elif op == GATHER:
                out.append(Instr(SCATTER_ADD, a, dst, table=ins.table))
            elif op == SCATTER_ADD:
                out.append(Instr(GATHER | ACCUMULATE, a, dst, table=ins.table))
            elif op == SEP_CORR:
                out.append(dataclasses.replace(ins, op=SEP_CORR_T, dst=a, a=dst))
            elif op == SEP_CORR_T:
                out.append(dataclasses.replace(ins, op=SEP_CORR | ACCUMULATE, dst=a, a=dst))
            elif op == CORR2D:
                out.append(dataclasses.replace(ins, op=CORR2D_T, dst=a, a=dst))
            elif op == CORR2D_T:
                out.append(dataclasses.replace(ins, op=CORR2D | ACCUMULATE, dst=a, a=dst))
            elif op == AXPBY:
                out.append(Instr(AXPY, a, dst, f1=ins.f1))
                out.append(Instr(AXPY, b, dst, f1=ins.f2))
            elif op == AXPY:
                out.append(Instr(AXPY, a, dst, f1=ins.f1))
            else:  # pragma: no cover - the builder emits nothing else
                raise ValueError(f"linear program: unknown opcode {ins.op}")
            # an overwritten value's adjoint is consumed here (never for the read-only input)
            overwrote = op in _OVERWRITE_OPS and not ins.op & ACCUMULATE or op == ZERO
            if overwrote and dst.space == WS:
                out.append(Instr(ZERO, dst))
        return Program(self.out_numel, self.in_numel, self.ws_numel, out)

    @functools.cached_property
    def packed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """``(instr int64 (n, 18), tables int32, coefs float64, ws_total)`` for the CUDA and
        Triton kernels: gathers as index tables, scatter-adds as a CSR of the inverse table.

        The row layout is documented in ``csrc/linprog/linear_program.h``. The separable passes'
        intermediate is a workspace region after the program's own (operand in column 3), so
        ``ws_total`` (the kernels' workspace per plane) is ``ws_numel`` plus the largest one;
        a scatter-add's column 6 holds its largest number of sources per destination.
        """
        return self._pack(runs=False)

    @functools.cached_property
    def packed_runs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """:attr:`packed` for the C++ CPU kernel: a gather whose runs (:func:`gather_runs`)
        take less room than its table becomes ``GATHER_RUNS`` (strided copies, validated
        per run, ~1/25 of the table at image scale), and a scatter-add becomes one
        accumulating gather per layer (:func:`scatter_layers`): each destination adds its
        sources one at a time in increasing source index, where the CSR form adds their
        sum (same terms, rounded differently). The instructions are first rewritten, each
        value computed with the same operations in the same order (bitwise the same results):
        :func:`fuse_scaled_gathers`, :func:`fuse_separable_pairs`,
        :func:`upsampled_sources`, :func:`checker_correlations`; then the workspace is placed
        afresh."""
        return self._pack(runs=True)

    def _pack(self, runs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        rows, tables, coefs = [], [], []
        t_off = c_off = scratch = 0
        instrs, ws_numel = self.instrs, self.ws_numel
        if runs:  # the C++ CPU kernel's rewrites, then the workspace placed for what is left
            instrs = fuse_separable_pairs(fuse_scaled_gathers(self.unplaced or self.instrs))
            instrs = checker_correlations(upsampled_sources(instrs))
            if self.unplaced is not None:
                instrs, ws_numel = _assign_workspace(instrs)
        scratch_operand = (WS << SPACE_SHIFT) | ws_numel

        def gather_row(op: int, dst: Region, src: Region, table: torch.Tensor,
                       scale: tuple[float, ...] = ()) -> list[int]:
            nonlocal t_off, c_off
            row = [0] * N_COLS
            row[1], row[2], row[4], row[5] = dst.operand, src.operand, dst.numel, t_off
            r = gather_runs(table) if runs else None
            # a scaled gather (only fuse_scaled_gathers makes these) is always runs
            if scale or (r is not None and RUN_COLS * r.shape[0] < table.numel()):
                row[0] = (SCALED_GATHER_RUNS if scale else GATHER_RUNS) | op & ACCUMULATE
                row[6] = r.shape[0]
                tables.append(r.flatten().to(torch.int32))
                if scale:
                    row[14] = c_off
                    coefs.extend(scale)
                    c_off += 1
            else:
                row[0] = op
                tables.append(table.to(torch.int32))
            t_off += tables[-1].numel()
            return row

        for ins in instrs:
            base = ins.op & ~ACCUMULATE
            if base == GATHER:
                rows.append(gather_row(ins.op, ins.dst, ins.a, ins.table, ins.f1))
                continue
            if runs and base == SCATTER_ADD:
                for layer in scatter_layers(ins.table, ins.dst.numel):
                    rows.append(gather_row(GATHER | ACCUMULATE, ins.dst, ins.a, layer))
                continue
            row = [0] * N_COLS
            row[0] = ins.op
            row[1] = ins.dst.operand
            row[2] = ins.a.operand if ins.a is not None else 0
            row[3] = ins.b.operand if ins.b is not None else 0
            if base == SCATTER_ADD:
                # packed as a deterministic gather-sum: for destination k, the sources
                # col[rowptr[k]:rowptr[k+1]] (CSR of the inverse table; no atomics needed)
                n_dst = ins.dst.numel
                valid = torch.nonzero(ins.table >= 0).flatten()  # -1 entries send nothing
                targets = ins.table[valid]
                counts = torch.bincount(targets, minlength=n_dst)
                rowptr = torch.zeros(n_dst + 1, dtype=torch.int64)
                rowptr[1:] = torch.cumsum(counts, 0)
                col = valid[torch.argsort(targets, stable=True)]
                row[4] = n_dst
                row[5] = t_off
                row[6] = int(counts.max()) if n_dst else 0
                tables += [rowptr.to(torch.int32), col.to(torch.int32)]
                t_off += n_dst + 1 + col.numel()
            elif base in (ZERO, AXPBY, AXPY):
                row[4] = ins.dst.numel
            corr2d = base in (CORR2D, CORR2D_T, CHECKER_CORR2D)
            if ins.a is not None:
                forward = base in (SEP_CORR, SEP_CORR_ROWS_FIRST, UPSAMPLED_SEP_CORR, CORR2D,
                                   CHECKER_CORR2D)
                src, res = (ins.a, ins.dst) if forward else (ins.dst, ins.a)
                if corr2d or base in (SEP_CORR, SEP_CORR_T, SEP_CORR_ROWS_FIRST,
                                      UPSAMPLED_SEP_CORR):
                    row[6], row[7], row[8], row[9] = src.h, src.w, res.h, res.w
            row[10:14] = ins.stride
            if base == SEP_CORR:
                row[3] = scratch_operand
                scratch = max(scratch, ((res.h - 1) * ins.stride[0] + len(ins.f1)) * res.w)
            elif base == SEP_CORR_T:
                row[3] = scratch_operand
                scratch = max(scratch, res.h * ((res.w - 1) * ins.stride[2] + len(ins.f2)))
            elif base == CHECKER_CORR2D:
                row[3] = ins.parity
            elif base == UPSAMPLED_SEP_CORR:
                row[3] = ins.phases[0] | ins.phases[1] << 1
            row[14], row[15] = c_off, ins.kshape[0] if corr2d else len(ins.f1)
            coefs.extend(ins.f1)
            c_off += len(ins.f1)
            row[16] = row[14] if corr2d else c_off
            row[17] = ins.kshape[1] if corr2d else len(ins.f2)
            coefs.extend(ins.f2)
            c_off += len(ins.f2)
            rows.append(row)
        instr = torch.tensor(rows, dtype=torch.int64).view(-1, N_COLS)
        table = torch.cat(tables) if tables else torch.zeros(1, dtype=torch.int32)
        coef = torch.tensor(coefs if coefs else [0.0], dtype=torch.float64)
        return instr, table, coef, ws_numel + scratch
