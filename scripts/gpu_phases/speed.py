"""Phase 3: op speed with the project's benchmarks (CUDA-event timing, GB/s against a
device-to-device copy measured in the same run).

``benchmarks/bench_contourlet.py`` (``pdfb_dec`` forward, backward, forward+backward) and
``benchmarks/bench_texture_stats.py`` (``texture_equalize``, ``qco_1d``, ``qco_2d``,
``qco_1d_tem``), providers ``reference``, ``reference + torch.compile``, ``triton``, ``cuda``,
at the SSTKD sizes and a small sweep. The rows go to this phase's ``contourlet.csv`` and
``texture_stats.csv``; on the GPU they are also appended to ``benchmarks/results/*.csv`` of
the copy it runs in (the dry run leaves the repository alone).
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
    c_bench = [python(), "benchmarks/bench_contourlet.py", "--no-plot"]
    t_bench = [python(), "benchmarks/bench_texture_stats.py", "--no-plot"]
    if args.dry_run:  # CPU, tiny: the machinery, not the figures
        dev = ["--device", "cpu", "--reps", "1", "--backends", "cpu"]
        runs = [("contourlet", c_bench + dev + ["--shapes", "1x2x16x16", "--no-compile"]),
                ("texture_stats", t_bench + dev + ["--shapes", "1x2x16x16", "--levels", "8",
                                                   "--ops", "texture_equalize,qco_1d",
                                                   "--no-compile"])]
        env = {"TRITON_INTERPRET": "1"}
    else:  # most valuable first; torch.compile (slow to compile) at one size per op family
        fast, dropped = _fast_backends(args.out.parent / "parity" / "gpu_parity.json")
        notes_pre = [f"not timed (missing, or failed parity): {', '.join(dropped)}"] \
            if dropped else []
        dev = ["--device", "cuda", "--reps", "20", "--backends", ",".join(fast) or "reference"]
        sstkd = "8x256x128x128,8x64x128x128"
        runs = [("contourlet", c_bench + dev + ["--shapes", sstkd, "--no-compile"]),
                ("texture_stats", t_bench + dev + ["--shapes", sstkd, "--levels", "32",
                                                   "--no-compile"]),
                ("contourlet", c_bench + dev + ["--shapes", "8x64x64x64,8x64x256x256",
                                                "--no-compile"]),
                ("texture_stats", t_bench + dev + ["--shapes", "8x64x128x128", "--levels",
                                                   "8,128", "--no-compile"]),
                ("contourlet", c_bench + dev + ["--shapes", "8x64x128x128"]),
                ("texture_stats", t_bench + dev + ["--shapes", "8x64x128x128", "--levels",
                                                   "32"])]
        env = {}
    figures, notes, ok = {}, [] if args.dry_run else notes_pre, True
    for i, (name, cmd) in enumerate(runs):
        csv_path = args.out / f"{name}.csv"
        before = len(_rows(csv_path))
        left = deadline - time.time() - 20 * (len(runs) - i - 1)  # keep 20 s for each later
        if left < 10:
            ok = False
            notes.append(f"{name}: not run (time budget): {' '.join(cmd[1:])}")
            continue
        out_flag = "--out" if name == "contourlet" else "--csv"
        r = run(cmd + [out_flag, str(csv_path)], args.out / f"{name}.log", left, **env)
        rows = _rows(csv_path)[before:]
        if r["rc"] != 0 or not rows:
            ok = False
            notes.append(f"{name} {' '.join(cmd[2:])}: exit {r['rc']}"
                         f"{' (timed out)' if r['timed_out'] else ''}\n" + r["tail"])
        notes += [ln for ln in r["tail"].splitlines() if ln.startswith("[skip]")]
        if rows and not args.dry_run:
            from benchmarks.harness import RESULTS, append_csv  # imports torch: GPU run only

            append_csv(RESULTS / f"{name}.csv", rows)
    for name in dict(runs):
        figures[name] = _key_figures(_rows(args.out / f"{name}.csv"))
    write_result(args.out, "pass" if ok else "fail", figures, notes)


def _fast_backends(parity_json: Path) -> tuple[list[str], list[str]]:
    """'triton' and 'cuda' where they run here and passed ``pdfb_dec`` parity (a backend the
    contourlet benchmark finds wrong stops its whole run; the texture one skips the case)."""
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
