"""Contourlet transform speed: reference (eager and torch.compile) vs the fused backends.

Times ``pdfb_dec`` forward, backward (the vector-Jacobian product alone) and forward+backward
for every backend available on the device, after checking each against the reference.
Rows are appended to ``benchmarks/results/contourlet.csv`` (with machine, versions and
commit) and plotted to ``benchmarks/results/contourlet_<device>.png``.

Examples::

    python benchmarks/bench_contourlet.py                 # CPU: the target size + a sweep
    python benchmarks/bench_contourlet.py --quick         # smaller, fewer repetitions
    python benchmarks/bench_contourlet.py --device cuda   # GPU: SSTKD sizes + sweep
    python benchmarks/bench_contourlet.py --image-scale [--quick]

``--image-scale`` times ``pdfb_dec`` forward on a few large planes (1, 4, 16 planes of 512^2,
1024^2, 2048^2; ``--quick``: 1 and 4 of 512^2, 1 of 1024^2) with 1 and 2 threads, float32 and
float64, 9-7/pkva (3, 3) and 5-3/9-7 (2), reference vs the fused ``cpu`` backend, and
appends to ``benchmarks/results/contourlet_image_scale.csv`` (plot beside it). The
torch.compile'd reference is left out there: compiling at these sizes takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sstkd_ops  # noqa: E402
from benchmarks.harness import RESULTS, append_csv, env_info, plot_bars, time_fn  # noqa: E402


def _outputs(x, backend, nlevs, compiled=None):
    fn = compiled if compiled is not None else (
        lambda t: sstkd_ops.pdfb_dec(t, "9-7", "pkva", nlevs, backend=backend))
    low, bands = fn(x)
    return [low] + [b for level in bands for b in level]


def _check(x, backend, nlevs, ref):
    out = _outputs(x, backend, nlevs)
    err = max(float((a - b).abs().max()) for a, b in zip(out, ref))
    scale = max(float(b.abs().max()) for b in ref)
    if err > 1e-4 * max(scale, 1.0):
        raise SystemExit(f"{backend}: max |diff| vs reference {err:.3e} -- refusing to time")
    return err


def bench_case(shape, nlevs, device, backends, reps, with_compile):
    x = torch.randn(shape, device=device)
    ref = _outputs(x, "reference", nlevs)
    cots = [torch.randn_like(t) for t in ref]
    # bytes a fused forward must move: read x, write every output (the backward: the reverse)
    nbytes = x.numel() * x.element_size() + sum(t.numel() * t.element_size() for t in ref)
    copy_ms = time_fn(lambda: x.clone(), warmup=1, reps=reps, device=device)["median_ms"]
    copy_gbps = 2 * x.numel() * x.element_size() / copy_ms / 1e6
    variants = []
    for b in backends:
        err = 0.0 if b == "reference" else _check(x, b, nlevs, ref)
        variants.append((b, b, None, err))
    if with_compile:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch._dynamo.reset()  # one static-shape compilation per case
            compiled = torch.compile(
                lambda t: sstkd_ops.pdfb_dec(t, "9-7", "pkva", nlevs, backend="reference"),
                dynamic=False)
            out = _outputs(x, "reference", nlevs, compiled)  # compiles here, untimed
        err = max(float((a - r).abs().max()) for a, r in zip(out, ref))
        variants.append(("reference+compile", "reference", compiled, err))
    rows = []
    for name, backend, compiled, err in variants:
        def fwd(c=compiled, b=backend):
            with torch.no_grad():
                _outputs(x, b, nlevs, c)

        def fwd_bwd(c=compiled, b=backend):
            xr = x.detach().requires_grad_()
            torch.autograd.grad(_outputs(xr, b, nlevs, c), xr, cots)

        xr = x.detach().requires_grad_()
        outs = _outputs(xr, backend, nlevs, compiled)

        def bwd(o=outs, xr=xr):
            torch.autograd.grad(o, xr, cots, retain_graph=True)

        for mode, fn in (("forward", fwd), ("backward", bwd), ("forward+backward", fwd_bwd)):
            t = time_fn(fn, warmup=1, reps=reps, device=device)
            gbps = (1 if mode != "forward+backward" else 2) * nbytes / t["median_ms"] / 1e6
            rows.append({"op": "pdfb_dec", "shape": "x".join(map(str, shape)),
                         "nlevs": "-".join(map(str, nlevs)), "dtype": "float32",
                         "backend": name, "mode": mode, "median_ms": round(t["median_ms"], 3),
                         "iqr_ms": round(t["iqr_ms"], 3), "reps": t["reps"],
                         "max_err_vs_ref": f"{err:.2e}", "gbps": round(gbps, 2),
                         "copy_gbps": round(copy_gbps, 2),
                         "frac_of_copy_bw": round(gbps / copy_gbps, 3)})
            print(f"  {rows[-1]['shape']:>16s} {name:18s} {mode:17s} "
                  f"{t['median_ms']:10.2f} ms", flush=True)
    return rows


IMAGE_FILTERS = (("9-7", "pkva", (3, 3)), ("5-3", "9-7", (2,)))


def _image_forward(x, pfilt, dfilt, nlevs, backend):
    with torch.no_grad():
        low, bands = sstkd_ops.pdfb_dec(x, pfilt, dfilt, nlevs, backend=backend)
    return [low] + [t for level in bands for t in level]


def _image_cases(quick, sizes=None):
    """(planes, size) pairs of the image-scale sweep, smallest planes first."""
    if quick:
        cases = [(1, 512), (4, 512), (1, 1024)]
    else:
        cases = [(p, s) for s in (512, 1024, 2048) for p in (1, 4, 16)]
    return [(p, s) for p, s in cases if sizes is None or s in sizes]


def bench_image_scale(backends, reps, quick, out, sizes=None):
    """Run the image-scale sweep (see the module docstring), appending each case's rows to
    ``out`` as it finishes (a cut-short run keeps what it measured); return all rows."""
    rows = []
    for planes, size in _image_cases(quick, sizes):
        for pfilt, dfilt, nlevs in IMAGE_FILTERS:
            for dtype in (torch.float32, torch.float64):
                x = torch.randn(planes, 1, size, size, dtype=dtype)
                case = []
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    info = env_info("cpu")
                    ref = None
                    for backend in backends:
                        fwd = functools.partial(_image_forward, x, pfilt, dfilt, nlevs, backend)
                        t0 = time.perf_counter()
                        outs = fwd()  # first call: traces the program on a new shape
                        first_ms = (time.perf_counter() - t0) * 1e3
                        ref = outs if ref is None else ref
                        err = max(float((a - r).abs().max()) for a, r in zip(outs, ref))
                        t = time_fn(fwd, warmup=0, reps=reps)
                        case.append(dict(info, **{
                            "op": "pdfb_dec", "shape": f"{planes}x1x{size}x{size}",
                            "nlevs": "-".join(map(str, nlevs)), "pfilt": pfilt, "dfilt": dfilt,
                            "dtype": str(dtype).removeprefix("torch."), "backend": backend,
                            "mode": "forward", "median_ms": round(t["median_ms"], 3),
                            "iqr_ms": round(t["iqr_ms"], 3), "reps": t["reps"],
                            "max_err_vs_ref": f"{err:.2e}", "first_call_ms": round(first_ms, 1)}))
                        r = case[-1]
                        print(f"  {pfilt}/{dfilt} {r['shape']:>14s} {r['dtype']:8s} "
                              f"{threads}t {backend:10s} {r['median_ms']:10.2f} ms "
                              f"(first call {first_ms:.0f} ms)", flush=True)
                append_csv(out, case)
                rows += case
    return rows


def _image_summary(rows):
    """Print cpu 2-thread/1-thread and cpu/reference (1 thread) ratios of one run."""
    ms = {(r["pfilt"], r["dfilt"], r["shape"], r["dtype"], int(r["threads"]), r["backend"]):
          float(r["median_ms"]) for r in rows}
    for (pf, df, shape, dtype, threads, backend), t in ms.items():
        if backend != "cpu" or threads != 1:
            continue
        line = f"{pf}/{df} {shape:>14s} {dtype:8s} cpu vs reference (1 thread): "
        line += f"{ms[(pf, df, shape, dtype, 1, 'reference')] / t:5.1f}x"
        if (pf, df, shape, dtype, 2, "cpu") in ms:
            line += f"; cpu 2 threads vs 1: {t / ms[(pf, df, shape, dtype, 2, 'cpu')]:.2f}x"
        print(line)


def _image_plot(out):
    """Plot the latest 9-7/pkva float64 row of each case in the CSV ``out`` beside it."""
    with out.open(newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if (r["pfilt"], r["dfilt"], r["dtype"]) == ("9-7", "pkva", "float64")]
    latest = {}
    for r in rows:  # later rows replace earlier ones
        planes, size = r["shape"].split("x")[0], r["shape"].split("x")[-1]
        latest[(planes, size, r["threads"], r["backend"])] = dict(
            r, case=f"{planes}x{size}^2 {r['threads']}t", median_ms=float(r["median_ms"]))
    png = out.with_suffix(".png")
    plot_bars(list(latest.values()), group="case", series="backend", value="median_ms",
              path=png, title="pdfb_dec 9-7/pkva (3, 3) float64 forward, planes x size^2, "
                              "threads")
    return png


def main_image_scale(args):
    backends = args.backends.split(",") if args.backends else ["reference", "cpu"]
    backends = ["reference"] + [b for b in backends if b != "reference"]
    out = args.out if args.out != RESULTS / "contourlet.csv" else \
        RESULTS / "contourlet_image_scale.csv"
    if not args.plot_only:
        sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else None
        rows = bench_image_scale(backends, args.reps or (2 if args.quick else 3), args.quick,
                                 out, sizes)
        _image_summary(rows)
        print(f"results appended to {out}")
    if not args.no_plot:
        print(f"plot {_image_plot(out)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument("--no-compile", action="store_true", help="skip reference+compile")
    parser.add_argument("--out", type=Path, default=RESULTS / "contourlet.csv")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated BxCxHxW instead of the default sizes and sweep")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends (default: all available; Triton only "
                             "on a GPU)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--image-scale", action="store_true",
                        help="few large planes, threads 1 and 2 (CPU; see the docstring)")
    parser.add_argument("--sizes", default=None,
                        help="with --image-scale: comma-separated plane sizes of the sweep to run")
    parser.add_argument("--plot-only", action="store_true",
                        help="with --image-scale: only re-plot the CSV's newest rows")
    args = parser.parse_args(argv)
    if args.image_scale:
        if args.device != "cpu":
            parser.error("--image-scale runs on the CPU only")
        main_image_scale(args)
        return
    device = torch.device(args.device)
    backends = [b for b in sstkd_ops.available_backends(device)
                if b != "triton" or device.type == "cuda"]
    if args.backends:
        backends = ["reference"] + [b for b in args.backends.split(",") if b != "reference"]
    nlevs = (3, 3)
    if device.type == "cuda":
        shapes = [(8, 256, 128, 128), (8, 64, 128, 128)]
    else:
        shapes = [(2, 64, 128, 128)]  # the CPU target size of the issue
    sweep_batch = (2, 64) if device.type == "cpu" else (8, 64)
    sizes = (32, 64, 128) if args.quick else (32, 64, 128, 256)
    shapes += [(*sweep_batch, s, s) for s in sizes if (*sweep_batch, s, s) not in shapes]
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    reps = args.reps or (3 if args.quick else 5)
    info = env_info(device)
    print(f"pdfb_dec 9-7/pkva nlevs={nlevs} on {info['machine']} (torch {info['torch']}), "
          f"backends: {', '.join(backends)}")
    rows = []
    for shape in shapes:
        rows += bench_case(shape, nlevs, device, backends, reps, not args.no_compile)
    rows = [dict(info, **r) for r in rows]
    append_csv(args.out, rows)
    for mode in ("forward", "forward+backward"):
        base = {r["shape"]: r["median_ms"] for r in rows
                if r["mode"] == mode and r["backend"] == "reference"}
        for r in rows:
            if r["mode"] == mode and r["backend"] != "reference":
                print(f"{mode:17s} {r['shape']:>16s} {r['backend']:18s} "
                      f"speed-up vs eager reference: {base[r['shape']] / r['median_ms']:.1f}x")
    if args.no_plot:
        return
    png = args.out.with_name(f"contourlet_{device.type}.png")
    by_size = sorted(rows, key=lambda r: [int(v) for v in r["shape"].split("x")])
    plot_bars([r for r in by_size if r["mode"] == "forward+backward"], group="shape",
              series="backend", value="median_ms", path=png,
              title=f"pdfb_dec (9-7, pkva, nlevs {nlevs}) forward+backward, {info['machine']}")
    print(f"results appended to {args.out}; plot {png}")


if __name__ == "__main__":
    main()
