"""Texture-statistics speed: ``texture_equalize``, ``qco_1d``, ``qco_2d`` and ``qco_1d_tem``
(QCO 1-D, then the TEM product with fixed per-level features ``f (B, C, N)``: STLNet's TEM step
on the whole map), forward and forward+backward, every provider checked against the reference
first.

Sizes: (8, 256, 128, 128) and (8, 64, 128, 128) with N = 8, 32, 128 (on CUDA N = 32 at both is
the core, the rest ``sweep``); ``quick``: (2, 64, 128, 128), N = 128 on the CPU; ``tiny``:
(1, 2, 16, 16), N = 8. float32.
``gbps`` counts the passes over x (2 reads forward, + 2 reads and 1 write backward: a lower
bound); ``extra_mb`` is the peak memory beyond the gradients of the inputs.
"""

from __future__ import annotations

import pytest
import torch

import sstkd_ops
from benchmarks.providers import Case, check_and_time, params

OFFSETS = ((1, 1),)
OPS = ("texture_equalize", "qco_1d", "qco_2d", "qco_1d_tem")
SCALE = 10.0  # long reductions and soft histograms: the tolerance the texture tests use
quick, sweep = pytest.mark.quick, pytest.mark.sweep


def _cases(op: str) -> list[Case]:
    cases = [Case(op, "cpu", (2, 64, 128, 128), {"N": 128}, (quick,), SCALE)]
    for device in ("cpu", "cuda"):
        for shape in ((8, 256, 128, 128), (8, 64, 128, 128)):
            for n in (32, 8, 128):
                marks = () if device == "cuda" and n == 32 else (sweep,)
                cases.append(Case(op, device, shape, {"N": n}, marks, SCALE))
    cases.append(Case(op, "cpu", (1, 2, 16, 16), {"N": 8}, (pytest.mark.tiny,), SCALE,
                      providers=("reference", "cpu")))
    return cases


def _op(op: str, n: int):
    """(inputs..., backend) -> the differentiable outputs of ``op`` with ``n`` levels."""
    if op == "texture_equalize":
        return lambda x, backend: list(
            sstkd_ops.texture_equalize(x, n, 2, 0.5, OFFSETS, backend=backend))[:3]
    if op == "qco_1d":
        return lambda x, backend: list(sstkd_ops.qco_1d(x, n, backend=backend))[:2]
    if op == "qco_2d":
        return lambda x, backend: list(sstkd_ops.qco_2d(x, n, 1, backend=backend))

    def tem(x, f, backend):
        q = sstkd_ops.qco_1d(x, n, backend=backend)
        return [sstkd_ops.qco_1d_tem(f, q.cos_sim, q.levels, backend=backend)]

    return tem


@pytest.mark.parametrize("case, provider, mode",
                         [p for op in OPS for p in params(_cases(op),
                                                          ("forward", "forward+backward"))])
def test_texture_op(benchmark, settings, case, provider, mode):
    n = case.params["N"]

    def make():
        x = torch.randn(case.shape, device=case.device)
        f = torch.randn(case.shape[0], case.shape[1], n, device=case.device)
        return [x, f] if case.op == "qco_1d_tem" else [x]

    inputs = case.inputs(make)
    x_bytes = inputs[0].numel() * inputs[0].element_size()
    check_and_time(benchmark, case, provider, mode, _op(case.op, n), inputs,
                   rounds=settings.rounds(case.device), env=settings.env(case.device),
                   nbytes={"forward": 2 * x_bytes, "forward+backward": 5 * x_bytes})
