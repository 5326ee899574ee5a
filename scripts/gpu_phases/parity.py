"""Phase 2: correctness on the GPU.

* every op x fast backend (``cuda``, ``triton``; the dry run: ``cpu`` and the Triton
  interpreter) against the reference, forward and backward, float32 and float64, at test sizes
  and the SSTKD sizes (8, 256, 128, 128) and (8, 64, 128, 128) (``parity_cases.check``);
* determinism: two runs bitwise equal (at (8, 64, 128, 128), where atomics would show);
* ``pytest -m cuda``, ``compute-sanitizer --tool memcheck`` on a small case (when installed),
  and one training step's texture losses captured in a CUDA graph (``graph_check``).

Cases run in a worker process per backend that appends to ``cases_<backend>.jsonl``; a worker
that crashes (a CUDA error poisons its context) or hangs is restarted after the case it was
in, which is recorded as failed. ``gpu_parity.json`` lists every case and, under ``disable``,
the ``backend:op`` pairs that failed: ``SSTKD_DISABLE=<its "SSTKD_DISABLE" value>`` keeps
``auto`` away from them (``sstkd_ops._backend``).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import (  # noqa: E402
    parse_args,
    python,
    run,
    write_json,
    write_result,
)

SSTKD_SIZES = [(8, 256, 128, 128), (8, 64, 128, 128)]
TEST_SIZES = {"pdfb_dec": (2, 3, 32, 48), "qco_2d": (2, 5, 16, 20)}
TEST_SIZE = (2, 5, 19, 23)
DRY_SIZES = {"pdfb_dec": (1, 1, 8, 8), "qco_2d": (1, 2, 8, 8)}  # the interpreter is slow
DRY_SIZE = (1, 2, 7, 9)
MAX_RESTARTS = 4
OPS = ("pdfb_dec", "texture_equalize", "qco_1d", "qco_2d", "qco_1d_tem")  # parity_cases.SCALE
# errors after which a process's CUDA context is unusable
CUDA_FATAL = ("CUDA error", "illegal memory access", "device-side assert", "AcceleratorError",
              "misaligned address", "unspecified launch failure")
DRY_DETERMINISM = ("qco_1d",)
# ~20 s a call in the Triton interpreter (tests/test_contourlet_fused.py covers it there)
DRY_NOT_INTERPRETED = ("pdfb_dec",)


def cases(dry: bool, backend: str) -> list[tuple]:
    """(op, dtype, shape, sstkd) in the order they run: test sizes, then SSTKD float32, then
    SSTKD float64 (largest last: a timeout loses the least)."""
    out = []
    for op in OPS:
        if dry and backend == "triton" and op in DRY_NOT_INTERPRETED:
            continue
        for dt in ("float32", "float64"):
            size = (DRY_SIZES.get(op, DRY_SIZE) if dry else TEST_SIZES.get(op, TEST_SIZE))
            out.append((op, dt, size, False))
    if not dry:
        for dt in ("float32", "float64"):
            for shape in reversed(SSTKD_SIZES):
                out += [(op, dt, shape, True) for op in OPS]
    return out


def _key(op, dt, shape, sstkd) -> str:
    return f"{op}|{dt}|{'x'.join(map(str, shape))}|{int(sstkd)}"


def worker(backend: str, out: Path, dry: bool) -> int:
    """Run the cases of ``backend`` not yet in its jsonl; exit 3 after a CUDA error."""
    import torch

    from scripts.gpu_phases import parity_cases as pc

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from conftest import disable_tf32

    disable_tf32()
    device = "cpu" if dry else "cuda"
    path = out / f"cases_{backend}.jsonl"
    seen = set()
    if path.exists():
        seen = {json.loads(ln)["key"] for ln in path.read_text().splitlines() if ln.strip()}
    todo = [("parity", c) for c in cases(dry, backend)] + [
        ("determinism", op) for op in (DRY_DETERMINISM if dry else OPS)]
    with open(path, "a") as f:
        for kind, c in todo:
            key = f"{kind}|{_key(*c)}" if kind == "parity" else f"{kind}|{c}"
            if key in seen:
                continue
            f.write(json.dumps({"key": key, "started": True}) + "\n")
            f.flush()
            t0 = time.time()
            try:
                if kind == "parity":
                    op, dt, shape, sstkd = c
                    rec = pc.check(op, backend, getattr(torch, dt), shape, device, sstkd)
                else:
                    size = DRY_SIZES.get(c, DRY_SIZE) if dry else SSTKD_SIZES[1]
                    rec = {"op": c, "backend": backend,
                           "ok": pc.deterministic(c, backend, size, device)}
            except Exception as exc:  # recorded; the phase goes on
                rec = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000],
                       "traceback": traceback.format_exc()[-3000:]}
                if kind == "parity":
                    rec.update(op=c[0], backend=backend, dtype=c[1],
                               shape="x".join(map(str, c[2])))
                else:
                    rec.update(op=c, backend=backend)
            rec.update(key=key, kind=kind, seconds=round(time.time() - t0, 2))
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            print(f"{'ok  ' if rec['ok'] else 'FAIL'} {key} {rec['seconds']} s", flush=True)
            if not rec["ok"] and any(m in rec.get("error", "") for m in CUDA_FATAL):
                return 3  # the context may be poisoned: start afresh
    return 0


def read_cases(path: Path, backend: str) -> list[dict]:
    """Finished records, plus a failure for a case that started and never finished."""
    started, done = {}, {}
    for ln in path.read_text().splitlines() if path.exists() else []:
        rec = json.loads(ln)
        (started if rec.get("started") else done)[rec["key"]] = rec
    for key in started:
        if key not in done:
            kind, op, *rest = key.split("|")
            done[key] = {"key": key, "kind": kind, "op": op, "backend": backend, "ok": False,
                         "error": "the worker died or hung in this case"}
    return list(done.values())


def _run_backend(backend: str, args, deadline: float, env: dict[str, str]) -> None:
    path = args.out / f"cases_{backend}.jsonl"
    for _ in range(MAX_RESTARTS + 1):
        left = deadline - time.time()
        if left < 5:
            return
        cmd = [python(), __file__, "--worker", backend, "--out", str(args.out)]
        r = run(cmd + (["--dry-run"] if args.dry_run else []), args.out / f"{backend}.log", left,
                **env)
        if r["rc"] == 0:
            return
        for rec in read_cases(path, backend):  # mark the case it died in as finished (failed)
            if rec.get("error") == "the worker died or hung in this case":
                with open(path, "a") as f:
                    f.write(json.dumps(dict(rec, error=f"worker exit {r['rc']}: "
                                            + r["tail"][-1500:])) + "\n")


def write_parity(out: Path, backends: list[str], dry: bool, extra: dict):
    """``gpu_parity.json`` from the workers' records so far (and the GPU-only checks)."""
    records = [r for be in backends for r in read_cases(out / f"cases_{be}.jsonl", be)]
    parity = [r for r in records if r.get("kind") == "parity"]
    failed = sorted({f"{r['backend']}:{r['op']}" for r in parity if not r["ok"]})
    nondet = sorted({f"{r['backend']}:{r['op']}" for r in records
                     if r.get("kind") == "determinism" and not r["ok"] and "error" not in r})
    expected = sum(len(cases(dry, be)) for be in backends)
    write_json(out / "gpu_parity.json", {
        "disable": failed, "SSTKD_DISABLE": ",".join(failed), "nondeterministic": nondet,
        "cases_planned": expected, "checks": extra, "cases": parity,
        "how": "reference in the same dtype with TF32 off (and float64 for float32 cases); "
               "tolerances: tests/conftest.py TOL"})
    return parity, failed, nondet, expected


def main() -> None:
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        backend = sys.argv.pop(i + 1)
        sys.argv.pop(i)
        args = parse_args(__doc__)
        raise SystemExit(worker(backend, args.out, args.dry_run))
    args = parse_args(__doc__)
    t0 = time.time()
    deadline = t0 + args.budget - 10
    notes, figures = [], {}
    tri = {"TRITON_INTERPRET": "1"} if args.dry_run else {}
    # 1. the cuda-marked tests (collection and skip on a machine without a GPU)
    tests = ["tests/test_contourlet_fused.py", "tests/test_texture_stats_fused.py"] \
        if args.dry_run else ["tests"]
    r = run([python(), "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *tests],
            args.out / "pytest_cuda.log", min(40, deadline - time.time()), **tri)
    figures["pytest_cuda"] = r["tail"].splitlines()[-1] if r["tail"] else "no output"
    pytest_ok = r["rc"] in (0, 5) and not r["timed_out"]  # 5: nothing collected/selected
    if not pytest_ok:
        notes.append("pytest -m cuda:\n" + r["tail"])
    # 2. op x backend parity and determinism, a worker per backend
    backends = ["cpu", "triton"] if args.dry_run else ["cuda", "triton"]
    if args.dry_run:
        notes.append("dry run: 'cpu' and the Triton interpreter stand in for 'cuda' and "
                     "'triton'; tiny sizes; no Triton pdfb_dec (slow when interpreted)")
    for i, be in enumerate(backends):
        share = (deadline - time.time() - (0 if args.dry_run else 45)) / (len(backends) - i)
        _run_backend(be, args, time.time() + share, tri)
        write_parity(args.out, backends, args.dry_run, {})  # kept if the phase is cut later
    # 3. CUDA-only checks
    extra = {}
    if args.dry_run:
        notes.append("dry run: compute-sanitizer and the CUDA-graph capture need a GPU: skipped")
    else:
        from scripts.gpu_phases import graph_check

        extra = graph_check.run_all(args.out, deadline)
    parity, failed, nondet, expected = write_parity(args.out, backends, args.dry_run, extra)
    figures.update(cases_run=len(parity), cases_planned=expected,
                   cases_failed=sum(not r["ok"] for r in parity), disable=failed,
                   nondeterministic=nondet, **{k: v.get("status") for k, v in extra.items()})
    if len(parity) < expected:
        notes.append(f"only {len(parity)} of {expected} parity cases ran (time budget)")
    ok = pytest_ok and not failed and len(parity) == expected and all(
        v.get("status") in ("pass", "skipped") for v in extra.values())
    write_result(args.out, "pass" if ok else "fail", figures, notes)


if __name__ == "__main__":
    main()
