"""Phase 3: op speed with the project's benchmarks, ``pytest benchmarks/`` (pytest-benchmark,
or its fallback fixture where the plugin is missing; CUDA-event timing, GB/s against a
device-to-device copy measured in the same run; each provider checked against the reference
before it is timed).

``pdfb_dec`` (forward, backward, forward+backward), ``pdfb_rec`` and the texture ops
(``texture_equalize``, ``qco_1d``, ``qco_2d``, ``qco_1d_tem``), providers ``reference``,
``triton``, ``cuda`` at the SSTKD sizes first, then a small sweep, then
``reference + torch.compile`` (slow to compile) at one size per op family. Each run's
``--benchmark-json`` is turned by ``benchmarks/report.py`` into this phase's ``contourlet.csv``
and ``texture_stats.csv`` (``python scripts/gpu_run.py --merge`` appends them to
``benchmarks/results/``).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import parse_args, python, run, write_result  # noqa: E402


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    args = parse_args(__doc__)
    deadline = time.time() + args.budget - 5
    bench = [python(), "-m", "pytest", "benchmarks/", "--benchmark-only", "-q", "-rs",
             "-p", "no:cacheprovider"]
    if args.dry_run:  # CPU, tiny: the machinery, not the figures
        runs = [("tiny", ["-m", "tiny", "--bench-rounds", "1"])]
        env = {"TRITON_INTERPRET": "1"}
        notes_pre = []
    else:  # most valuable first
        fast, dropped = _fast_backends(args.out.parent / "parity" / "gpu_parity.json")
        notes_pre = [f"not timed (missing, or failed parity): {', '.join(dropped)}"] \
            if dropped else []
        gpu = ["--bench-rounds", "10", "--bench-providers", ",".join(["reference", *fast])]
        runs = [("sstkd_sizes", gpu + ["-m", "gpu and not sweep and not compile"]),
                ("sweep", gpu + ["-m", "gpu and sweep and not compile", "-k",
                                 "8x64x64x64 or 8x64x256x256 or (8x64x128x128 and not N32)"]),
                ("compile", ["--bench-rounds", "10", "-m", "gpu and compile", "-k",
                             "8x64x128x128 and (pdfb_dec or N32)"])]
        env = {}
    notes, ok = list(notes_pre), True
    for i, (name, sel) in enumerate(runs):
        left = deadline - time.time() - 20 * (len(runs) - i - 1)  # keep 20 s for each later
        if left < 10:
            ok = False
            notes.append(f"{name}: not run (time budget): {' '.join(sel)}")
            continue
        js = args.out / f"{name}.json"
        log = args.out / f"{name}.log"
        r = run(bench + sel + ["--benchmark-json", str(js)], log, left, **env)
        if r["rc"] != 0:
            ok = False
            notes.append(f"{name} {' '.join(sel)}: exit {r['rc']}"
                         f"{' (timed out)' if r['timed_out'] else ''}\n" + r["tail"])
        notes += [ln for ln in log.read_text(errors="replace").splitlines()
                  if ln.startswith("SKIPPED")]
        if js.exists():
            rep = run([python(), "-m", "benchmarks.report", str(js), "--results", str(args.out),
                       "--no-plot"], args.out / "report.log", 60)
            if rep["rc"] != 0:
                ok = False
                notes.append(f"report {name}: exit {rep['rc']}\n" + rep["tail"])
    figures = {name: _key_figures(_rows(args.out / f"{name}.csv"))
               for name in ("contourlet", "texture_stats")}
    if not any(figures.values()):
        ok = False
    write_result(args.out, "pass" if ok else "fail", figures, notes)


def _fast_backends(parity_json: Path) -> tuple[list[str], list[str]]:
    """'triton' and 'cuda' where they run here and passed ``pdfb_dec`` parity (a backend that
    died or hung in parity is not started again here)."""
    import json

    from sstkd_ops import available_backends

    have = available_backends("cuda")
    try:
        disabled = set(json.loads(parity_json.read_text())["disable"])
    except (OSError, ValueError, KeyError):
        disabled = set()
    fast = [b for b in ("triton", "cuda") if b in have and f"{b}:pdfb_dec" not in disabled]
    return fast, [b for b in ("triton", "cuda") if b not in fast]


def _key_figures(rows: list[dict]) -> dict:
    """Per case at the largest shape: the best backend's forward+backward ms and GB/s share."""
    fb = [r for r in rows if r.get("mode") in ("forward+backward", "fwd+bwd")]
    if not fb:
        return {}
    size = max(fb, key=lambda r: [int(v) for v in r["shape"].split("x")])["shape"]
    out = {}
    for r in fb:
        if r["shape"] != size:
            continue
        case = f"{r['op']} {size}" + (f" N={r['N']}" if r.get("N") else "")
        out.setdefault(case, {})[r["backend"]] = {
            "ms": float(r["median_ms"]),
            "frac_of_copy_bw": float(r["frac_of_copy_bw"]) if r.get("frac_of_copy_bw") else None}
    return out


if __name__ == "__main__":
    main()
