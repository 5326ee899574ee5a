"""Contourlet speed at image scale (``-m image_scale``; left out of a run that does not name
it): ``pdfb_dec`` forward on 1, 4, 16 planes of 512^2, 1024^2, 2048^2, threads 1 and 2,
float32 and float64, 9-7/pkva (3, 3) and 5-3/9-7 (2); reference vs the fused ``cpu`` backend
(the torch.compile'd reference is left out: compiling at these sizes takes minutes).

``-m "image_scale and quick"``: 1 and 4 planes of 512^2, 1 of 1024^2. ``-k 1024x1024``: one
size. ``first_call_ms`` records the first call of each provider (``cpu`` traces its program
on a new shape).
"""

from __future__ import annotations

import pytest
import torch

import sstkd_ops
from benchmarks.providers import Case, check_and_time, params

FILTERS = (("9-7", "pkva", (3, 3)), ("5-3", "9-7", (2,)))
QUICK = ((1, 512), (4, 512), (1, 1024))


def _cases() -> list[Case]:
    cases = []
    for size in (512, 1024, 2048):
        for planes in (1, 4, 16):
            marks = (pytest.mark.image_scale,) + (
                (pytest.mark.quick,) if (planes, size) in QUICK else ())
            for pfilt, dfilt, nlevs in FILTERS:
                for dtype in (torch.float32, torch.float64):
                    for threads in (1, 2):
                        cases.append(Case(
                            "pdfb_dec", "cpu", (planes, 1, size, size),
                            {"pfilt": pfilt, "dfilt": dfilt,
                             "nlevs": "-".join(map(str, nlevs)), "threads": threads},
                            marks, dtype=dtype, providers=("reference", "cpu")))
    return cases


@pytest.fixture
def threads(request):
    """The case's thread count for this test, the run's restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.node.callspec.params["case"].params["threads"])
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case, provider, mode", params(_cases(), ("forward",)))
def test_pdfb_dec_image(benchmark, settings, threads, case, provider, mode):
    pfilt, dfilt = case.params["pfilt"], case.params["dfilt"]
    nlevs = tuple(int(n) for n in case.params["nlevs"].split("-"))

    def fn(x, backend):
        low, bands = sstkd_ops.pdfb_dec(x, pfilt, dfilt, nlevs, backend=backend)
        return [low] + [b for level in bands for b in level]

    (x,) = case.inputs(lambda: [torch.randn(case.shape, dtype=case.dtype)])
    x_bytes = x.numel() * x.element_size()
    check_and_time(benchmark, case, provider, mode, fn, [x],
                   rounds=settings.rounds("cpu", default=3), env=settings.env("cpu"),
                   nbytes={"forward": x_bytes})
