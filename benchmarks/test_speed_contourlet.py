"""Contourlet transform speed: ``pdfb_dec`` (forward, backward, forward+backward) and
``pdfb_rec`` (forward, forward+backward), every provider checked against the reference first.

CPU: the target size (2, 64, 128, 128) and a sweep of (2, 64, s, s); CUDA: the SSTKD sizes
(8, 256, 128, 128) and (8, 64, 128, 128) and a sweep of (8, 64, s, s); ``tiny``: (1, 2, 32, 32).
9-7/pkva, nlevs (3, 3), float32. The image-scale sweep (few large planes, ``-m image_scale``):
test_speed_image_scale.py.
"""

from __future__ import annotations

import pytest
import torch

import sstkd_ops
from benchmarks.providers import Case, check_and_time, params

PFILT, DFILT, NLEVS = "9-7", "pkva", (3, 3)
quick, sweep = pytest.mark.quick, pytest.mark.sweep


def _cases(op: str) -> list[Case]:
    nl = {"nlevs": "-".join(map(str, NLEVS))}
    cpu = [Case(op, "cpu", (2, 64, s, s), nl, (quick,) if s < 256 else (sweep,))
           for s in (128, 32, 64, 256)]
    cuda = [Case(op, "cuda", shape, nl) for shape in ((8, 256, 128, 128), (8, 64, 128, 128))]
    cuda += [Case(op, "cuda", (8, 64, s, s), nl, (sweep,)) for s in (32, 64, 256)]
    tiny = [Case(op, "cpu", (1, 2, 32, 32), nl, (pytest.mark.tiny,),
                 providers=("reference", "cpu"))]
    return cpu + cuda + tiny


def _flat(low: torch.Tensor, bands) -> list[torch.Tensor]:
    return [low] + [b for level in bands for b in level]


def pdfb_dec(x: torch.Tensor, backend: str) -> list[torch.Tensor]:
    return _flat(*sstkd_ops.pdfb_dec(x, PFILT, DFILT, NLEVS, backend=backend))


def pdfb_rec(low: torch.Tensor, *flat: torch.Tensor, backend: str) -> list[torch.Tensor]:
    bands, i = [], 0
    for n in NLEVS:
        bands.append(list(flat[i:i + 2**n]))
        i += 2**n
    return [sstkd_ops.pdfb_rec(low, bands, PFILT, DFILT, backend=backend)]


def _bytes(ts: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


_moved: dict[str, int] = {}


def _moved_bytes(case: Case, x: torch.Tensor) -> int:
    """What a fused transform must move: the image and every coefficient, once."""
    if case.id not in _moved:
        with torch.no_grad():
            _moved[case.id] = _bytes([x] + pdfb_dec(x, "reference"))
    return _moved[case.id]


@pytest.mark.parametrize("case, provider, mode",
                         params(_cases("pdfb_dec"), ("forward", "backward", "forward+backward")))
def test_pdfb_dec(benchmark, settings, case, provider, mode):
    (x,) = case.inputs(lambda: [torch.randn(case.shape, device=case.device)])
    moved = _moved_bytes(case, x)
    check_and_time(benchmark, case, provider, mode, pdfb_dec, [x],
                   rounds=settings.rounds(case.device), env=settings.env(case.device),
                   nbytes={"forward": moved, "backward": moved, "forward+backward": 2 * moved})


@pytest.mark.parametrize("case, provider, mode",
                         params(_cases("pdfb_rec"), ("forward", "forward+backward")))
def test_pdfb_rec(benchmark, settings, case, provider, mode):
    def coefficients():
        with torch.no_grad():
            return pdfb_dec(torch.randn(case.shape, device=case.device), "reference")

    coeffs = case.inputs(coefficients)
    moved = _bytes(coeffs) + coeffs[0].element_size() * torch.Size(case.shape).numel()
    check_and_time(benchmark, case, provider, mode, pdfb_rec, coeffs,
                   rounds=settings.rounds(case.device), env=settings.env(case.device),
                   nbytes={"forward": moved, "forward+backward": 2 * moved})
