"""Providers of the op benchmarks and the step every benchmark runs: check against the
reference, then time with pytest-benchmark (and record what it does not measure).

A provider is a backend of the public ops (``reference``, ``cpu``, ``triton``, ``cuda``) or
``reference+compile`` (the reference under ``torch.compile``, one static-shape compilation per
case). Only the public API of ``sstkd_ops`` is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
import torch

import sstkd_ops
from benchmarks.harness import clock_for, copy_gbps, peak_memory

PROVIDERS_BY_DEVICE = {"cpu": ("reference", "reference+compile", "cpu"),
                       "cuda": ("reference", "reference+compile", "triton", "cuda")}
# Parity tolerance (rtol, atol) of a fast path against the reference in the same dtype: the
# table of tests/conftest.py. ``Case.scale`` widens it for the long reductions of the texture
# ops (as their tests do); the linear contourlet ops keep it as is.
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5)}

# An op under test: (inputs..., backend) -> list of output tensors.
OpFn = Callable[..., list[torch.Tensor]]


@dataclass(frozen=True)
class Case:
    """One op call to time: its inputs' shape, parameters and pytest marks."""

    op: str
    device: str
    shape: tuple[int, ...]
    params: dict = field(default_factory=dict)  # recorded, and named in the id
    marks: tuple = ()
    scale: float = 1.0  # widens TOL
    dtype: torch.dtype = torch.float32
    providers: tuple[str, ...] | None = None  # default: every provider of the device

    @property
    def id(self) -> str:
        extra = "-".join(f"{k}{v}" for k, v in self.params.items())
        dtype = "" if self.dtype == torch.float32 else str(self.dtype)[6:]
        return "-".join(filter(None, [self.op, self.device, "x".join(map(str, self.shape)),
                                      dtype, extra]))

    def inputs(self, make: Callable[[], list[torch.Tensor]]) -> list[torch.Tensor]:
        """``make()`` (seeded) once per case: the tests of one case share its inputs."""
        if self.id not in _inputs:
            _inputs.clear()
            torch.manual_seed(0)
            _inputs[self.id] = make()
        return _inputs[self.id]


def params(cases: Sequence[Case], modes: Sequence[str]) -> list:
    """``pytest.param(case, provider, mode)`` for every provider of each case's device, mode
    innermost (a compiled provider compiles once per case); marks: the case's, ``gpu`` and
    the CUDA-event timer on CUDA, ``compile`` for ``reference+compile``."""
    out = []
    for case in cases:
        for provider in case.providers or PROVIDERS_BY_DEVICE[case.device]:
            marks = [*case.marks, pytest.mark.benchmark(timer=clock_for(case.device))]
            if case.device == "cuda":
                marks.append(pytest.mark.gpu)
            if provider == "reference+compile":
                marks.append(pytest.mark.compile)
            for mode in modes:
                out.append(pytest.param(case, provider, mode, marks=marks,
                                        id=f"{case.id}-{provider}-{mode}"))
    return out


def skip_reason(provider: str, device: str) -> str | None:
    """Why ``provider`` cannot be timed on ``device`` here, or ``None`` when it can."""
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device here"
    if provider == "triton" and device != "cuda":
        return "Triton is timed on CUDA only (its CPU interpreter is no speed path)"
    backend = "reference" if provider == "reference+compile" else provider
    if backend in sstkd_ops.available_backends(device):
        return None
    info = sstkd_ops.build_info()
    why = {"cpu": f"compiled extension not importable ({info['extension_error']})",
           "cuda": "extension built without CUDA kernels",
           "triton": "Triton not installed"}.get(backend, "")
    return f"backend {backend!r} does not run on {device} here: {why}"


_inputs: dict[str, list[torch.Tensor]] = {}
_compiled: dict[str, Callable] = {}
_first_calls: set[tuple[str, str]] = set()
_reference: dict[tuple, tuple] = {}
_copy: dict[tuple, float] = {}


def _provider_fn(fn: OpFn, provider: str, key: str) -> Callable[..., list[torch.Tensor]]:
    if provider != "reference+compile":
        return lambda *xs: fn(*xs, backend=provider)
    if key not in _compiled:  # one static-shape compilation per case, no recompiles across
        _compiled.clear()
        torch._dynamo.reset()
        _compiled[key] = torch.compile(lambda *xs: fn(*xs, backend="reference"), dynamic=False)
    return _compiled[key]


def _grads(run: Callable, inputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]):
    xs = [x.detach().requires_grad_() for x in inputs]
    outs = run(*xs)
    loss = sum((o * w).sum() for o, w in zip(outs, weights) if o.requires_grad)
    return torch.autograd.grad(loss, xs)


def _check(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor], scale: float,
           what: str, exact: Callable[[], Sequence[torch.Tensor]]) -> float:
    """Fail the test unless ``got`` matches the reference ``want``; the max |difference|.

    Within ``TOL`` passes. Beyond it a float32 result still passes where its error against
    the reference run in float64 (``exact()``) is at most twice the float32 reference's own
    plus the tolerance: where float32 itself is ill-conditioned (a pixel crossing a level
    boundary of a quantisation), the reference is no closer to the truth than the fast path.
    """
    if len(got) != len(want):
        raise AssertionError(f"{what}: {len(got)} outputs, the reference has {len(want)}")
    err = 0.0
    for i, (a, b) in enumerate(zip(got, want)):
        rtol, atol = TOL[b.dtype]
        try:
            torch.testing.assert_close(a, b, rtol=rtol * scale, atol=atol * scale,
                                       msg=lambda m, i=i: f"{what}, output {i} vs reference: {m}")
        except AssertionError:
            if b.dtype != torch.float32:
                raise
            e = exact()[i]
            fast, ref = float((a.double() - e).abs().max()), float((b.double() - e).abs().max())
            if fast > 2 * ref + atol * scale:
                raise AssertionError(
                    f"{what}, output {i}: max |error| vs the float64 reference {fast:.3e}, more "
                    f"than twice the float32 reference's {ref:.3e}") from None
        err = max(err, float((a.double() - b.double()).abs().max()) if a.numel() else 0.0)
    return err


def check_and_time(benchmark, case: Case, provider: str, mode: str, fn: OpFn,
                   inputs: Sequence[torch.Tensor], *, rounds: int, nbytes: dict[str, int],
                   env: dict) -> None:
    """Check ``provider`` against the reference on ``inputs`` (the forward always, the
    gradients where ``mode`` times a backward), then time ``mode`` with ``benchmark``.

    ``mode``: ``forward`` (no autograd), ``backward`` (the gradient alone, the graph built
    untimed before each round) or ``forward+backward``. ``nbytes``: the least bytes each mode
    must move (``gbps`` is that over the median time). ``extra_info`` records the case, the
    error against the reference, the first call's time, peak memory and the copy bandwidth.
    """
    run = _provider_fn(fn, provider, case.id)
    key = (case.id, tuple(x.data_ptr() for x in inputs))
    if key not in _reference:
        _reference.clear()
        with torch.no_grad():
            outs = fn(*inputs, backend="reference")
        gen = torch.Generator().manual_seed(1)
        weights = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device)
                   for o in outs]
        _reference[key] = (outs, weights, None)
    ref_outs, weights, ref_grads = _reference[key]
    exact: dict[str, Sequence[torch.Tensor]] = {}

    def exact_outs():
        if "outs" not in exact:
            with torch.no_grad():
                exact["outs"] = fn(*[x.double() for x in inputs], backend="reference")
        return exact["outs"]

    def exact_grads():
        if "grads" not in exact:
            exact["grads"] = _grads(lambda *xs: fn(*xs, backend="reference"),
                                    [x.double() for x in inputs], [w.double() for w in weights])
        return exact["grads"]

    clock = clock_for(case.device)
    with torch.no_grad():
        t0 = clock()
        outs = run(*inputs)
        first_ms = (clock() - t0) * 1e3
        err = _check(outs, ref_outs, case.scale, f"{case.id} {provider} forward", exact_outs)
    del outs
    if mode != "forward":
        if ref_grads is None:
            ref_grads = _grads(lambda *xs: fn(*xs, backend="reference"), inputs, weights)
            _reference[key] = (ref_outs, weights, ref_grads)
        err = max(err, _check(_grads(run, inputs, weights), ref_grads, case.scale,
                              f"{case.id} {provider} gradient", exact_grads))

    def forward():
        with torch.no_grad():
            run(*inputs)

    def graph():  # untimed setup of ``backward``: a fresh graph each round
        xs = [x.detach().requires_grad_() for x in inputs]
        outs = run(*xs)
        loss = sum((o * w).sum() for o, w in zip(outs, weights) if o.requires_grad)
        return (loss, xs), {}

    def backward(loss, xs):
        torch.autograd.grad(loss, xs)

    def forward_backward():
        _grads(run, inputs, weights)

    target, setup = {"forward": (forward, None), "backward": (backward, graph),
                     "forward+backward": (forward_backward, None)}[mode]
    info = dict(env, op=case.op, mode=mode, backend=provider, device=case.device,
                shape="x".join(map(str, case.shape)), dtype=str(inputs[0].dtype)[6:],
                max_err_vs_ref=f"{err:.2e}", nbytes=nbytes[mode],
                timer="cuda_event" if case.device == "cuda" else "perf_counter",
                **case.params)
    if (case.id, provider) not in _first_calls:  # tracing a program, or compiling, included
        _first_calls.add((case.id, provider))
        info["first_call_ms"] = round(first_ms, 1)
    if not benchmark.disabled:
        grad_bytes = sum(x.numel() * x.element_size() for x in inputs) if mode != "forward" \
            else 0
        args = setup()[0] if setup else ()
        peak = peak_memory(lambda: target(*args), case.device)
        del args
        ck = (case.device, tuple(inputs[0].shape))
        if ck not in _copy:
            _copy[ck] = copy_gbps(inputs[0])
        info.update(peak_mb=round(peak / 2**20, 3),
                    extra_mb=round(max(peak - grad_bytes, 0) / 2**20, 3),
                    copy_gbps=round(_copy[ck], 2))
    benchmark.extra_info.update(info)
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=1)

