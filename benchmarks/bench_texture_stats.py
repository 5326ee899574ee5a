"""Benchmark the texture-statistics ops: reference eager, reference + torch.compile, C++ ('cpu'),
Triton and CUDA, forward and forward+backward, time and peak extra memory.

Usage (from the repository root, extension built in place):
    python benchmarks/bench_texture_stats.py --quick            # CPU: (2, 64, 128, 128), N = 128
    python benchmarks/bench_texture_stats.py --device cuda      # full sweep of the issue

Rows are appended to ``benchmarks/results/texture_stats.csv`` and a bar plot is written to
``benchmarks/results/texture_stats_<device>_<threads>threads[_quick].png``. ``peak_mb`` is the
peak of torch allocations during one call above what was live before it (harness.peak_memory);
``extra_mb`` is that minus the gradient of ``x`` (fwd+bwd), i.e. the memory an op needs beyond
its input and output. ``frac_of_copy_bw`` is the bandwidth of the x passes (2 reads forward,
+2 reads and 1 write backward, over the whole op's time: a lower bound) relative to ``x.clone()``.
On a shared machine, ``--threads 1`` gives the steadiest ratios.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (  # noqa: E402
    RESULTS,
    append_csv,
    env_info,
    peak_memory,
    plot_bars,
    time_fn,
)

from sstkd_ops import _backend  # noqa: E402
from sstkd_ops.reference import texture_stats as ref  # noqa: E402
from sstkd_ops.texture_stats import qco_1d, qco_1d_tem, qco_2d, texture_equalize  # noqa: E402

OFFSETS = ((1, 1),)


OPS = ("texture_equalize", "qco_1d", "qco_2d", "qco_1d_tem")


def _make_fn(op: str, backend: str, N: int, x: torch.Tensor):
    """(x) -> tuple of differentiable outputs.

    ``qco_2d``: one cell (scale 1); ``qco_1d_tem``: QCO 1-D of x, then the TEM product with
    fixed per-level features ``f (B, C, N)`` (STLNet's TEM step on the whole map).
    """
    if op == "texture_equalize":
        if backend == "ref+compile":
            compiled = torch.compile(lambda x: ref.texture_equalize(x, N, 2, 0.5, OFFSETS)[:3])
            return compiled
        return lambda x: tuple(texture_equalize(x, N, 2, 0.5, OFFSETS, backend=backend))[:3]
    if op == "qco_1d":
        if backend == "ref+compile":
            return torch.compile(lambda x: ref.qco_1d(x, N)[:2])
        return lambda x: tuple(qco_1d(x, N, backend=backend))[:2]
    if op == "qco_2d":
        if backend == "ref+compile":
            return torch.compile(lambda x: ref.qco_2d(x, N, 1))
        return lambda x: qco_2d(x, N, 1, backend=backend)
    if op == "qco_1d_tem":
        f = torch.randn(x.shape[0], x.shape[1], N, device=x.device, dtype=x.dtype)
        if backend == "ref+compile":
            def tem_ref(x):
                levels, _, cos = ref.qco_1d(x, N)
                return (ref.qco_1d_tem(f, cos, levels),)

            return torch.compile(tem_ref)

        def tem(x):
            q = qco_1d(x, N, backend=backend)
            return (qco_1d_tem(f, q.cos_sim, q.levels, backend=backend),)

        return tem
    raise ValueError(f"unknown op {op!r}; expected one of {OPS}")


def _copy_gbps(shape, device, dtype, warmup, reps) -> float:
    """Bandwidth of a plain copy of x (read + write), the yardstick of ``frac_of_copy_bw``."""
    x = torch.randn(shape, device=device, dtype=dtype)
    copy = time_fn(lambda: x.clone(), warmup=warmup, reps=reps, device=device)["median_ms"]
    return 2 * x.numel() * x.element_size() / copy / 1e6


def _bench_one(op, backend, shape, N, device, dtype, warmup, reps, copy_gbps):
    x = torch.randn(shape, device=device, dtype=dtype)
    if backend == "ref+compile":
        torch._dynamo.reset()  # one static-shape compilation per case, not recompiles
    fn = _make_fn(op, backend, N, x)
    with torch.no_grad():
        outs = fn(x)
    weights = [torch.randn_like(o) for o in outs]

    def fwd():
        with torch.no_grad():
            fn(x)

    def fwd_bwd():
        xx = x.detach().requires_grad_()
        outs = fn(xx)
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        loss.backward()

    # bandwidth: the fused passes over x read it twice forward and twice + write once backward;
    # compared with a plain copy (read + write) timed once per shape in the same run
    nbytes = x.numel() * x.element_size()
    rows = []
    for mode, f in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        t = time_fn(f, warmup=warmup, reps=reps, device=device)
        peak = peak_memory(f, device)
        grad_bytes = nbytes if mode == "fwd+bwd" else 0
        rows.append({"op": op, "mode": mode, "backend": backend, "shape": "x".join(map(str, shape)),
                     "N": N, "dtype": str(dtype).replace("torch.", ""),
                     "median_ms": round(t["median_ms"], 3), "iqr_ms": round(t["iqr_ms"], 3),
                     "peak_mb": round(peak / 2**20, 3),
                     "extra_mb": round(max(peak - grad_bytes, 0) / 2**20, 3)})
        x_gbps = (2 if mode == "fwd" else 5) * nbytes / t["median_ms"] / 1e6
        rows[-1].update({"x_pass_gbps": round(x_gbps, 2),
                         "frac_of_copy_bw": round(x_gbps / copy_gbps, 3)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized: (2, 64, 128, 128), N=128")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--no-compile", action="store_true", help="skip reference + torch.compile")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--csv", default=str(RESULTS / "texture_stats.csv"))
    p.add_argument("--shapes", default=None, help="comma-separated BxCxHxW (default: by --quick)")
    p.add_argument("--levels", default=None, help="comma-separated N (default: by --quick)")
    p.add_argument("--backends", default=None,
                   help="comma-separated fast backends (default: all available; Triton only on "
                        "a GPU)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args()

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        shapes, levels = [(2, 64, 128, 128)], [128]
    else:
        shapes, levels = [(8, 256, 128, 128), (8, 64, 128, 128)], [8, 32, 128]
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.levels:
        levels = [int(n) for n in args.levels.split(",")]
    reps = args.reps or (5 if device.type == "cpu" else 20)
    backends = ["reference"] + ([] if args.no_compile else ["ref+compile"])
    fast = [b for b in ("cpu", "triton", "cuda") if b in _backend.available_backends(device)]
    if device.type == "cpu":
        fast = [b for b in fast if b != "triton"]  # the interpreter is not a speed path
    if args.backends:
        fast = [b for b in args.backends.split(",") if b not in ("reference", "ref+compile")]
    env = env_info(device)
    all_rows = []
    copy_gbps = {shape: _copy_gbps(shape, device, torch.float32, 1, reps) for shape in shapes}
    for op in args.ops.split(","):
        for shape in shapes:
            for N in levels:
                rows = []
                for be in backends + fast:
                    try:
                        rows += _bench_one(op, be, shape, N, device, torch.float32, 1, reps,
                                           copy_gbps[shape])
                    except Exception as exc:  # record and go on (e.g. compile failure)
                        print(f"[skip] {op} {be} {shape} N={N}: {type(exc).__name__}: {exc}")
                for r in rows:
                    base = next(b for b in rows if b["backend"] == "reference"
                                and b["mode"] == r["mode"])
                    r["speedup_vs_ref"] = round(base["median_ms"] / r["median_ms"], 2)
                    ratio = base["extra_mb"] / max(r["extra_mb"], 1e-3)
                    r["extra_mem_ratio_vs_ref"] = round(ratio, 1)
                    r.update(env)
                    print(f"{r['op']:17s} {r['mode']:8s} {r['backend']:12s} {r['shape']:15s} "
                          f"N={r['N']:<4d} {r['median_ms']:9.2f} ms  peak {r['peak_mb']:8.2f} MB"
                          f"  extra {r['extra_mb']:8.2f} MB  x{r['speedup_vs_ref']:.2f} time, "
                          f"x{r['extra_mem_ratio_vs_ref']:.1f} less extra memory")
                all_rows += rows
    append_csv(args.csv, all_rows)
    if args.no_plot:
        return
    tag = "_quick" if args.quick else ""
    png = Path(args.csv).with_name(f"texture_stats_{device.type}_{env['threads']}threads{tag}.png")
    plot_bars([{**r, "case": f"{r['op']} {r['mode']} {r['shape']} N={r['N']}"} for r in all_rows],
              group="case", series="backend", value="median_ms", path=png,
              title=f"texture stats, {env['machine']} ({env['threads']} threads)")
    print(f"wrote {args.csv} and {png}")


if __name__ == "__main__":
    main()
