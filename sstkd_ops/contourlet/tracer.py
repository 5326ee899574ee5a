"""Compile the reference contourlet transforms into linear programs, by tracing them.

The reference functions (:mod:`sstkd_ops.contourlet.reference`) are run on :class:`SymPlanes`, a
symbolic stack of planes that implements exactly the operations they use: index selections
(``x[:, rows, cols]``, strided slices, ``torch.roll``, ``torch.stack`` + ``reshape``,
``torch.zeros_like``), ``conv2d`` with a fixed filter, and linear arithmetic. Selections are
kept lazy as integer index tables (composed, never copied, ``-1`` = zero) and only
materialised by a gather when filtering or arithmetic needs the data (or the reference asks
for a copy with ``.contiguous()``, which frees the region a view came from), so the same source
code is the oracle *and* defines the fused kernels: nothing of the toolbox's index logic is
written twice.

Each compiled program maps one plane's inputs (concatenated) to its outputs (concatenated)
and is cached per (op, sizes, filters, levels).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..linprog.program import Program, ProgramBuilder, Region
from .filters import pfilters
from .reference import dfb as _ref_dfb
from .reference import pyramid as _ref
from .shapes import num_bands

_Term = tuple[float, Region, torch.Tensor]  # value += coef * region.flatten()[table]


class SymPlanes:
    """A symbolic ``(1, ..., H, W)`` stack of planes: ``sum_i coef_i * gather(region_i)``."""

    dtype = torch.float64
    device = torch.device("cpu")

    def __init__(self, builder: ProgramBuilder, shape: Sequence[int], terms: list[_Term]):
        self.builder = builder
        self.shape = torch.Size(shape)
        self.terms = terms

    # -- construction ------------------------------------------------------------------
    @classmethod
    def of_region(cls, builder: ProgramBuilder, region: Region) -> SymPlanes:
        table = torch.arange(region.numel).view(1, region.h, region.w)
        return cls(builder, table.shape, [(1.0, region, table)])

    def _map_tables(self, fn) -> SymPlanes:
        terms = [(c, r, fn(t)) for c, r, t in self.terms]
        # the new shape from a table without data (a plane of zeros cost as much as a term)
        shape = fn(torch.empty(self.shape, dtype=torch.int64, device="meta")).shape
        return SymPlanes(self.builder, shape, terms)

    # -- selections ----------------------------------------------------------------------
    def __getitem__(self, key) -> SymPlanes:
        flat = self._flat_index(key)
        if flat is not None:  # the same values as t[key], by torch.take: ~3x faster
            return self._map_tables(lambda t: torch.take(t, flat).unsqueeze(0))
        return self._map_tables(lambda t: t[key])

    def _flat_index(self, key) -> torch.Tensor | None:
        """For ``key = (:, rows, cols)`` (integer tensors in range: the resamplings' and
        extensions' gathers) on one ``(1, H, W)`` plane, the index into the flattened plane
        that ``t[key]`` reads; None for any other key (``t[key]`` then runs as it is)."""
        if not (isinstance(key, tuple) and len(key) == 3 and key[0] == slice(None)
                and len(self.shape) == 3 and self.shape[0] == 1
                and all(torch.is_tensor(k) and k.dtype in (torch.int32, torch.int64)
                        for k in key[1:])):
            return None
        h, w = self.shape[1:]
        rows, cols = key[1], key[2]
        if rows.numel() == 0 or cols.numel() == 0 or int(rows.min()) < 0 \
                or int(rows.max()) >= h or int(cols.min()) < 0 or int(cols.max()) >= w:
            return None  # negative or out-of-range indices: t[key]'s own rules
        return rows.long() * w + cols.long()

    def reshape(self, *shape) -> SymPlanes:
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return self._map_tables(lambda t: t.reshape(shape))

    def contiguous(self) -> SymPlanes:
        """Materialise into a region of its own (what the reference's copy of a view is)."""
        region = self.materialize()
        return SymPlanes.of_region(self.builder, region).reshape(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    # -- linear arithmetic ----------------------------------------------------------------
    def __add__(self, other) -> SymPlanes:
        if not isinstance(other, SymPlanes) or other.shape != self.shape:
            return NotImplemented
        return SymPlanes(self.builder, self.shape, self.terms + other.terms)

    def __mul__(self, scale) -> SymPlanes:
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return SymPlanes(self.builder, self.shape,
                         [(c * float(scale), r, t) for c, r, t in self.terms])

    __rmul__ = __mul__

    def __truediv__(self, scale) -> SymPlanes:
        return self * (1.0 / float(scale))

    def __neg__(self) -> SymPlanes:
        return self * -1.0

    def __sub__(self, other) -> SymPlanes:
        return self + (-other)

    # -- torch functions ------------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.roll:
            x, shifts = args[0], args[1]
            dims = kwargs.get("dims", args[2] if len(args) > 2 else None)
            return x._map_tables(lambda t: torch.roll(t, shifts, dims=dims))
        if func is torch.zeros_like:
            return SymPlanes(args[0].builder, args[0].shape, [])
        if func is torch.stack:
            parts, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0)
            none = torch.full(parts[0].shape, -1, dtype=torch.int64)
            terms = []
            for i, p in enumerate(parts):
                for c, r, t in p.terms:
                    tables = [t if j == i else none for j in range(len(parts))]
                    terms.append((c, r, torch.stack(tables, dim=dim)))
            shape = torch.stack([none] * len(parts), dim=dim).shape
            return SymPlanes(parts[0].builder, shape, terms)
        if func is F.conv2d or func is torch.conv2d:
            return args[0]._conv2d(args[1], **{k: v for k, v in kwargs.items()})
        raise NotImplementedError(f"SymPlanes: {getattr(func, '__name__', func)} is not a "
                                  f"linear plane operation this tracer supports")

    def _conv2d(self, weight: torch.Tensor, bias=None, stride=1, padding=0) -> SymPlanes:
        if bias is not None or stride not in (1, (1, 1)) or padding not in (0, (0, 0)):
            raise NotImplementedError("SymPlanes: conv2d with bias/stride/padding")
        if weight.shape[:2] != (1, 1) or self.ndim != 4 or self.shape[:2] != (1, 1):
            raise NotImplementedError("SymPlanes: conv2d supports one plane and one filter")
        src = self.materialize()
        kh, kw = weight.shape[-2:]
        out_hw = (src.h - kh + 1, src.w - kw + 1)
        k = weight[0, 0].to(torch.float64)
        b = self.builder
        if kw == 1:
            dst = b.sep_corr(src, k[:, 0], (1.0,), out_hw)
        elif kh == 1:
            dst = b.sep_corr(src, (1.0,), k[0], out_hw)
        else:
            dst = b.corr2d(src, k, out_hw)
        table = torch.arange(dst.numel).view(1, 1, dst.h, dst.w)
        return SymPlanes(b, table.shape, [(1.0, dst, table)])

    # -- materialisation ------------------------------------------------------------------
    def materialize(self, dst: Region | None = None) -> Region:
        """Emit the gathers / linear combinations that compute this value; return its region."""
        b = self.builder
        h, w = self.shape[-2:]
        if any(s != 1 for s in self.shape[:-2]):
            raise NotImplementedError(f"SymPlanes: cannot materialise shape {tuple(self.shape)}")
        terms = [(c, r, t.reshape(h, w)) for c, r, t in self.terms if c != 0.0]
        if dst is None and len(terms) == 1 and terms[0][0] == 1.0:
            c, r, t = terms[0]
            if (r.h, r.w) == (h, w) and torch.equal(t.flatten(), torch.arange(r.numel)):
                return r  # already exactly this region
        if dst is None:
            dst = b.alloc(h, w)
        if not terms:
            return b.zero(dst)
        if all(c == 1.0 for c, _, _ in terms):
            for i, (_, r, t) in enumerate(terms):
                b.gather(r, t, dst=dst, accumulate=i > 0)
            return dst
        srcs = []
        for c, r, t in terms:
            identity = (r.h, r.w) == (h, w) and torch.equal(t.flatten(), torch.arange(r.numel))
            srcs.append((c, r if identity else b.gather(r, t)))
        (c0, r0), rest = srcs[0], srcs[1:]
        if rest:
            c1, r1 = rest.pop(0)
            b.axpby(c0, r0, c1, r1, dst=dst)
        else:
            b.axpby(c0, r0, 0.0, r0, dst=dst)
        for c, r in rest:
            b.axpy(dst, c, r)
        return dst


def _trace(in_shapes: Sequence[tuple[int, int]], fn) -> Program:
    """Run ``fn(*sym_inputs) -> list of outputs`` symbolically; outputs are flattened in
    order into the program's output space."""
    b = ProgramBuilder(1, 1)
    offset = 0
    inputs = []
    for h, w in in_shapes:
        inputs.append(SymPlanes.of_region(b, Region(0, offset, h, w)))
        offset += h * w
    b.input = Region(0, 0, 1, offset)
    outs = fn(*inputs)
    for sym in outs:
        h, w = sym.shape[-2:]
        sym.materialize(dst=b.output(h, w))
    return b.build()


def _flatten_bands(low, bands) -> list:
    return [low] + [t for level in bands for t in level]


@functools.lru_cache(maxsize=128)
def programs(op: str, shapes: tuple[tuple[int, int], ...], pfilt: str = "", dfilt: str = "",
             nlevs: tuple[int, ...] = ()) -> tuple[Program, Program]:
    """``(program, adjoint)`` of ``op`` for per-plane input ``shapes`` (one (h, w) per input).

    ``op`` is one of ``lp_dec`` (outputs c, d), ``lp_rec``, ``dfb_dec`` (the 2**n bands),
    ``dfb_rec``, ``pdfb_dec`` (lowpass then the bands of each level, coarse to fine),
    ``pdfb_rec``.
    """
    if op == "lp_dec":
        def fn(x):
            h, g = pfilters(pfilt, torch.float64, "cpu")
            return list(_ref.lp_dec_planes(x, h, g))
    elif op == "lp_rec":
        def fn(c, d):
            h, g = pfilters(pfilt, torch.float64, "cpu")
            return [_ref.lp_rec_planes(c, d, h, g)]
    elif op == "dfb_dec":
        def fn(x):
            return list(_ref_dfb.dfb_dec(x, dfilt, nlevs[0]))
    elif op == "dfb_rec":
        def fn(*bands):
            return [_ref_dfb.dfb_rec(list(bands), dfilt)]
    elif op == "pdfb_dec":
        def fn(x):
            return _flatten_bands(*_ref.pdfb_dec_planes(x, pfilt, dfilt, nlevs))
    elif op == "pdfb_rec":
        counts = [num_bands(n) for n in nlevs]

        def fn(low, *flat):
            bands, i = [], 0
            for n in counts:
                bands.append(list(flat[i:i + n]))
                i += n
            return [_ref.pdfb_rec_planes(low, bands, pfilt, dfilt)]
    else:
        raise ValueError(f"unknown contourlet op {op!r}")
    prog = _trace(shapes, fn)
    return prog, prog.adjoint()
