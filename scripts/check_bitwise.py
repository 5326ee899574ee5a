"""Check that the public ops give bitwise the same outputs and input gradients as before.

``--save DIR`` runs every public op of ``sstkd_ops`` (contourlet: ``lp_dec``, ``lp_rec``,
``dfb_dec``, ``dfb_rec``, ``pdfb_dec``, ``pdfb_rec``, ``pdfb_pad``; texture statistics:
``qco_1d``, ``qco_2d``, ``qco_1d_tem``, ``texture_equalize``) on every backend that runs on
CPU tensors here (``reference``, ``cpu``, and ``triton`` under ``TRITON_INTERPRET=1`` on tiny
inputs), for fixed seeded inputs (float32 and float64, shapes including odd and prime sizes,
two filter / level settings), and saves every output and every input gradient with
``torch.save``. ``--compare DIR`` recomputes the same tensors and checks each with
``torch.equal`` against the saved ones: one summary line, exit code 1 on any difference or on
a case missing on either side.

Run with ``OMP_NUM_THREADS=1``; before a refactor save, after it compare::

    OMP_NUM_THREADS=1 python scripts/check_bitwise.py --save /tmp/bitwise_before
    OMP_NUM_THREADS=1 python scripts/check_bitwise.py --compare /tmp/bitwise_before
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the Triton kernels are decorated
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import sstkd_ops  # noqa: E402

DTYPES = (torch.float32, torch.float64)
# (pfilt, dfilt): a ladder DFB and a general-tree one; shorter filters for the interpreter
FILTERS = (("9-7", "pkva"), ("5-3", "dmaxflat7"))
TINY_FILTERS = (("9-7", "pkva"), ("5-3", "haar"))
Case = tuple[str, Callable[[], dict[str, torch.Tensor]]]


def _input(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _flatten(item)]


def _run(fn: Callable, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``fn()``'s outputs and the gradients of a seeded weighted sum of them w.r.t. ``inputs``."""
    outs = _flatten(fn())
    result = {f"out{i}": o.detach().clone() for i, o in enumerate(outs)}
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum()
               for o in outs if o.requires_grad and o.is_floating_point())
    leaves = list(inputs.values())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    for name, g in zip(inputs, grads):
        if g is not None:
            result[f"grad_{name}"] = g
    return result


def _contourlet_cases(backend: str, tiny: bool) -> Iterator[Case]:
    sizes = [(1, 1, 8, 8)] if tiny else [(1, 2, 16, 16), (2, 3, 32, 24)]
    odd = [(1, 1, 7, 5)] if tiny else [(1, 1, 13, 11), (2, 1, 31, 17)]
    nlev_cases = (1, 2) if tiny else (1, 3)
    nlevs_cases = ((1, 2), (0, 1)) if tiny else ((2, 3), (0, 2))
    padded_nlevs = (1, 2) if tiny else (2, 3)
    for dtype in DTYPES:
        for pfilt, dfilt in TINY_FILTERS if tiny else FILTERS:
            for k, shape in enumerate(sizes):
                tag = f"{backend}/{dtype}/{pfilt}/{dfilt}/{shape}"
                x = _input(shape, dtype, 10 + k)

                def lp(x=x, pfilt=pfilt):
                    return _run(lambda: sstkd_ops.lp_dec(x, pfilt, backend=backend), {"x": x})

                yield f"lp_dec/{tag}", lp
                c, d = (_input((shape[0], shape[1], shape[2] // 2, shape[3] // 2), dtype, 20 + k),
                        _input(shape, dtype, 30 + k))

                def lpr(c=c, d=d, pfilt=pfilt):
                    return _run(lambda: sstkd_ops.lp_rec(c, d, pfilt, backend=backend),
                                {"c": c, "d": d})

                yield f"lp_rec/{tag}", lpr
                for nlev in nlev_cases:
                    def dfb(x=x, nlev=nlev, dfilt=dfilt):
                        return _run(lambda: sstkd_ops.dfb_dec(x, dfilt, nlev, backend=backend),
                                    {"x": x})

                    yield f"dfb_dec/{nlev}/{tag}", dfb
                    bands = [_input((*shape[:2], h, w), dtype, 40 + i)
                             for i, (h, w) in enumerate(
                                 sstkd_ops.contourlet.dfb_band_shapes(*shape[2:], nlev))]

                    def dfbr(bands=bands, dfilt=dfilt):
                        return _run(lambda: sstkd_ops.dfb_rec(bands, dfilt, backend=backend),
                                    {f"b{i}": b for i, b in enumerate(bands)})

                    yield f"dfb_rec/{nlev}/{tag}", dfbr
                for nlevs in nlevs_cases:
                    def pd(x=x, nlevs=nlevs, pfilt=pfilt, dfilt=dfilt):
                        return _run(lambda: sstkd_ops.pdfb_dec(x, pfilt, dfilt, nlevs,
                                                               backend=backend), {"x": x})

                    yield f"pdfb_dec/{nlevs}/{tag}", pd

                    def pr(x=x, nlevs=nlevs, pfilt=pfilt, dfilt=dfilt):
                        low, bands = sstkd_ops.pdfb_dec(x.detach(), pfilt, dfilt, nlevs,
                                                        backend="reference")
                        low = low.clone().requires_grad_()
                        bands = [[b.clone().requires_grad_() for b in lv] for lv in bands]
                        leaves = {"low": low}
                        leaves.update({f"b{i}_{j}": b for i, lv in enumerate(bands)
                                       for j, b in enumerate(lv)})
                        return _run(lambda: sstkd_ops.pdfb_rec(low, bands, pfilt, dfilt,
                                                               backend=backend), leaves)

                    yield f"pdfb_rec/{nlevs}/{tag}", pr
            for k, shape in enumerate(odd):
                tag = f"{backend}/{dtype}/{pfilt}/{dfilt}/{shape}"
                x = _input(shape, dtype, 50 + k)

                def padded(x=x, pfilt=pfilt, dfilt=dfilt):
                    def fn():
                        low, bands = sstkd_ops.pdfb_dec(x, pfilt, dfilt, padded_nlevs, pad=True,
                                                        backend=backend)
                        rec = sstkd_ops.pdfb_rec(low, bands, pfilt, dfilt,
                                                 size=tuple(x.shape[2:]), backend=backend)
                        return low, bands, rec
                    return _run(fn, {"x": x})

                yield f"pdfb_pad_dec_rec/{tag}", padded
                if backend == "reference":
                    def pad_only(x=x, dfilt=dfilt):
                        return _run(lambda: sstkd_ops.pdfb_pad(x, (2, 3), dfilt)[0], {"x": x})

                    yield f"pdfb_pad/{dtype}/{dfilt}/{shape}", pad_only


def _texture_cases(backend: str, tiny: bool) -> Iterator[Case]:
    shapes = [(1, 3, 7, 5), (2, 4, 8, 12)] if tiny else [(1, 3, 7, 5), (2, 4, 8, 12),
                                                         (2, 5, 13, 11)]
    for dtype in DTYPES:
        for k, shape in enumerate(shapes):
            for levels in (4, 7):
                tag = f"{backend}/{dtype}/{shape}/L{levels}"
                x = _input(shape, dtype, 60 + k)

                def q1(x=x, levels=levels):
                    return _run(lambda: sstkd_ops.qco_1d(x, levels, backend=backend), {"x": x})

                yield f"qco_1d/{tag}", q1

                def tem(x=x, levels=levels, k=k, shape=shape, dtype=dtype):
                    f = _input((shape[0], 3, levels), dtype, 70 + k)

                    def fn():
                        o = sstkd_ops.qco_1d(x, levels, backend=backend)
                        return sstkd_ops.qco_1d_tem(f, o.cos_sim, o.levels, backend=backend)
                    return _run(fn, {"x": x, "f": f})

                yield f"qco_1d_tem/{tag}", tem
                pooled = shape[2:]
                if shape[2] >= levels or shape[3] >= levels:  # STLNet pools to multiples of L
                    pooled = (shape[2] // levels * levels, shape[3] // levels * levels)
                for scale in (1, 2):
                    if 0 in pooled or pooled[0] % scale or pooled[1] % scale:
                        continue

                    def q2(x=x, levels=levels, scale=scale):
                        return _run(lambda: sstkd_ops.qco_2d(x, levels, scale, backend=backend),
                                    {"x": x})

                    yield f"qco_2d/s{scale}/{tag}", q2
                for iters, theta, offsets in ((2, 0.5, ((1, 1),)), (0, 1.0, ((0, 1), (-1, 2)))):
                    def te(x=x, levels=levels, iters=iters, theta=theta, offsets=offsets):
                        return _run(lambda: sstkd_ops.texture_equalize(
                            x, levels, iters, theta, offsets, backend=backend), {"x": x})

                    yield f"texture_equalize/{iters}/{theta}/{offsets}/{tag}", te


def cases() -> Iterator[Case]:
    for backend in sstkd_ops.available_backends("cpu")[::-1]:
        yield from _contourlet_cases(backend, tiny=backend == "triton")
        yield from _texture_cases(backend, tiny=backend == "triton")


def compute(verbose: bool) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, fn in cases():
        start = time.perf_counter()
        for key, t in fn().items():
            tensors[f"{name}/{key}"] = t
        if verbose:
            print(f"  {time.perf_counter() - start:6.2f} s  {name}", flush=True)
    return tensors


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``torch.equal``, with NaN equal to NaN in the same places (same dtype and shape)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    if not a.is_floating_point():
        return False
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, metavar="DIR", help="save the tensors to DIR")
    mode.add_argument("--compare", type=Path, metavar="DIR",
                      help="recompute and compare with the tensors saved in DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="time every case")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.compare is not None and not (args.compare / "tensors.pt").is_file():
        print(f"check_bitwise: --compare {args.compare}: no tensors.pt there (run --save first)",
              file=sys.stderr)
        return 2
    tensors = compute(args.verbose)
    backends = ", ".join(sstkd_ops.available_backends("cpu"))
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        torch.save(tensors, args.save / "tensors.pt")
        print(f"saved {len(tensors)} tensors (backends: {backends}) to {args.save}")
        return 0
    before = torch.load(args.compare / "tensors.pt")
    diffs = sorted(k for k in set(before) & set(tensors) if not _identical(before[k], tensors[k]))
    missing = sorted(set(before) - set(tensors))
    extra = sorted(set(tensors) - set(before))
    if not (diffs or missing or extra):
        print(f"{len(tensors)} tensors (backends: {backends}): all identical")
        return 0
    print(f"{len(tensors)} tensors (backends: {backends}): {len(diffs)} differ, {len(missing)} "
          f"missing, {len(extra)} new")
    for label, keys in (("differs", diffs), ("missing", missing), ("new", extra)):
        for k in keys:
            print(f"  {label}: {k}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
