"""The whole GPU programme as one prepared, time-guarded command.

About ten minutes on one GPU give every figure the project needs, in at most 8 files of at
most 16 MiB.

Phases (each a subprocess with its own time budget, so a hung kernel loses only its phase;
each one's results are packed into the output folder as soon as it ends):

1. build   -- the extension with CUDA kernels (``scripts/gpu_phases/build.py``)
2. parity  -- ``pytest -m cuda``, every op x backend vs the reference (float32/float64, test
              and SSTKD sizes), determinism, compute-sanitizer, CUDA-graph capture;
              ``gpu_parity.json`` with the ``SSTKD_DISABLE`` list (``parity.py``)
3. speed   -- op benchmarks with CUDA events and GB/s vs a copy (``speed.py``)
4. train   -- training step R101 -> R18, 512x512, batch 8, bf16 (``train_step.py``)
5. camvid  -- teacher + baseline/kd/sstkd students on CamVid 360x480 (``camvid.py``)

On the GPU machine (repository copy, ``.gpu_pack`` carried; ``scripts/pack_camvid.py`` made it)::

    SSTKD_COMMIT=<sha> python scripts/gpu_run.py --out $OUT   # all phases, ~9 minutes
    python scripts/gpu_run.py --out $OUT --phases 3,5     # a second call: what the first lost
                                                          # (builds first when it must)
    python scripts/gpu_run.py --dry-run --out /tmp/dry    # CPU rehearsal, tiny sizes

The output folder receives ``summary.md``, ``summary.json``, ``gpu_run.tar.gz`` (every phase's
folder: logs, CSVs, JSON; no weights) and copies of the key files; the work itself happens in
``--work`` (``outputs/gpu_run_work``). ``python scripts/gpu_run.py --merge DIR`` appends a
returned run's CSV rows to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (name, budget s) on the GPU: ~9 minutes in all, inside the machine's 10-minute command limit
PHASES = {1: ("build", 100), 2: ("parity", 150), 3: ("speed", 90), 4: ("train", 50),
          5: ("camvid", 150)}
TOTAL_S = 560  # every phase is cut to what is left of this, less RESERVE_S for the packing
RESERVE_S = 15
GRACE_S = 5  # a phase past its budget by this much is killed (with its process group)
DRY_BUDGETS = {1: 60, 2: 90, 3: 60, 4: 60, 5: 120}
SCRIPTS = {"build": "build.py", "parity": "parity.py", "speed": "speed.py",
           "train": "train_step.py", "camvid": "camvid.py"}
# copied beside the archive (with summary.md/json and gpu_run.tar.gz: at most 8 files)
KEY_FILES = ("parity/gpu_parity.json", "speed/contourlet.csv", "speed/texture_stats.csv",
             "train/train_step.csv", "camvid/camvid_results.json")
WORK_MARKER = ".gpu_run_work"  # marks a folder gpu_run may empty
MAX_FILE = 16 * 2**20
SKIP_IN_ARCHIVE = (".pt", ".pth", ".tmp")


def _parse_phases(text: str) -> list[int]:
    try:
        out = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        out = []
    if not out or any(p not in PHASES for p in out):
        raise ValueError(f"gpu_run: argument --phases expected numbers among "
                         f"{','.join(map(str, PHASES))} separated by commas, got {text!r}")
    return out


def _parse_budgets(items: list[str]) -> dict[int, float]:
    out = {}
    names = {name: n for n, (name, _) in PHASES.items()}
    for item in items:
        key, sep, value = item.partition("=")
        n = names.get(key) or (int(key) if key.isdigit() and int(key) in PHASES else None)
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not sep or n is None or seconds <= 0:
            raise ValueError(f"gpu_run: argument --budget expected PHASE=SECONDS with PHASE one "
                             f"of {', '.join(names)} (or its number), got {item!r}")
        out[n] = seconds
    return out


def run_phase(n: int, work: Path, budget: float, dry: bool) -> dict:
    """Run phase ``n`` in a subprocess killed after ``budget`` seconds; its verdict."""
    import subprocess

    name = PHASES[n][0]
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_phases" / SCRIPTS[name]), "--out",
           str(folder), "--budget", str(budget)] + (["--dry-run"] if dry else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    if dry:
        env["TRITON_INTERPRET"] = "1"
    t0 = time.time()
    print(f"[gpu_run] phase {n} {name}: budget {budget:.0f} s", flush=True)
    with open(folder / "phase.log", "w") as log:
        try:
            # a new session: on timeout the phase's whole process group is killed
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)
            rc = proc.wait(timeout=budget + GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    seconds = round(time.time() - t0, 1)
    try:
        res = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        res = {"status": "timeout" if rc is None else "error", "figures": {},
               "notes": [_tail(folder / "phase.log")]}
    if rc is None:
        res["status"] = "timeout"
    elif rc != 0 and res["status"] == "pass":
        res["status"] = "error"
        res["notes"].append(f"exit {rc}\n" + _tail(folder / "phase.log"))
    res.update(phase=n, name=name, seconds=seconds, budget_s=budget, exit=rc)
    print(f"[gpu_run] phase {n} {name}: {res['status']} in {seconds} s", flush=True)
    return res


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _brief(figures: dict, limit: int = 160) -> str:
    text = "; ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in figures.items())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, so a kill mid-write keeps the previous version whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_folders(out: Path, work: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier run's results, or to empty a folder that is not ours."""
    if (out / "summary.json").exists() and not overwrite:
        raise ValueError(f"--out {str(out)!r} already holds a run's summary.json; pass another "
                         "--out, or --overwrite to replace it")
    if work.exists() and any(work.iterdir()) and not (work / WORK_MARKER).exists():
        raise ValueError(f"--work {str(work)!r} is a non-empty folder that gpu_run did not "
                         "create; it empties its work folder, so pass an empty or new one")


def write_outputs(results: list[dict], work: Path, out: Path, meta: dict) -> None:
    """summary.md / summary.json, the archive of the work folder and the key files in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(meta, phases=results)
    _write_atomic(out / "summary.json", json.dumps(summary, indent=1, default=str))
    lines = [f"# gpu_run {'(dry run) ' if meta['dry_run'] else ''}on {meta['device']}", "",
             f"torch {meta['torch']}, triton {meta['triton']}, commit {meta['commit']}, "
             f"{meta['date']}", "", "| phase | status | seconds | key figures |",
             "| --- | --- | ---: | --- |"]
    for r in results:
        lines.append(f"| {r['phase']} {r['name']} | {r['status']} | {r['seconds']} | "
                     f"{_brief(r['figures']).replace('|', '/')} |")
    for r in results:
        if r["notes"]:
            lines += ["", f"## {r['phase']} {r['name']}: notes", ""]
            lines += [f"- {n}" if "\n" not in n else f"```\n{n}\n```" for n in r["notes"]]
    _write_atomic(out / "summary.md", "\n".join(lines) + "\n")
    tmp = out / ".gpu_run.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(work, arcname="gpu_run", filter=lambda t: None if t.name.endswith(
            SKIP_IN_ARCHIVE) or t.size > MAX_FILE else t)
    os.replace(tmp, out / "gpu_run.tar.gz")
    for rel in KEY_FILES:
        src = work / rel
        if src.is_file() and src.stat().st_size < MAX_FILE:
            shutil.copy2(src, out / src.name)
    print("\n".join(lines[4:4 + len(results) + 2]), flush=True)


def merge(folder: Path) -> None:
    """Append the rows of a returned run's CSVs to ``benchmarks/results/<name>.csv``."""
    from benchmarks.harness import RESULTS, append_csv

    for name in ("contourlet", "texture_stats", "train_step"):
        path = folder / f"{name}.csv"
        if path.is_file():
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            append_csv(RESULTS / f"{name}.csv", rows)
            print(f"{len(rows)} rows -> {RESULTS / (name + '.csv')}")


def _built_with_cuda() -> bool:
    """Whether ``sstkd_ops._C`` with CUDA kernels imports here (asked in a child process)."""
    import subprocess

    code = ("import sstkd_ops._backend as b, sys; e = b.extension(); "
            "sys.exit(0 if e is not None and getattr(e, 'with_cuda', False) else 1)")
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120,
                              capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _meta(dry: bool) -> dict:
    import torch

    from benchmarks.harness import env_info

    info = env_info("cuda" if torch.cuda.is_available() else "cpu")
    return {"dry_run": dry, "device": info["machine"], "torch": info["torch"],
            "triton": info["triton"], "python": info["python"],
            "commit": os.environ.get("SSTKD_COMMIT") or info["commit"],  # a copy without .git
            "date": info["date"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: $OUT, else outputs/gpu_run)")
    p.add_argument("--phases", default=",".join(map(str, PHASES)), help="e.g. 2,3")
    p.add_argument("--budget", action="append", default=[], metavar="PHASE=SECONDS",
                   help="override a phase's time budget (name or number), repeatable")
    p.add_argument("--total", type=float, default=TOTAL_S,
                   help=f"seconds for the whole run (default {TOTAL_S}); phases are cut to fit")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU rehearsal at tiny sizes (Triton interpreted, CUDA-only parts "
                        "skipped, no build)")
    p.add_argument("--work", type=Path, default=REPO / "outputs" / "gpu_run_work",
                   help="where the phases work (emptied first; must be new, empty or an "
                        "earlier gpu_run work folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in --out")
    p.add_argument("--merge", type=Path, default=None, metavar="DIR",
                   help="append the CSVs of a returned run in DIR to benchmarks/results/")
    args = p.parse_args(argv)
    try:
        if args.merge is not None:
            merge(args.merge)
            return 0
        phases = _parse_phases(args.phases)
        budgets = _parse_budgets(args.budget)
    except (ValueError, OSError) as exc:
        print(f"gpu_run: error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(os.environ.get("OUT") or REPO / "outputs" / "gpu_run")
    out, work = out.resolve(), args.work.resolve()
    try:
        _check_folders(out, work, args.overwrite)
    except ValueError as exc:
        print(f"gpu_run: error: {exc}", file=sys.stderr)
        return 2
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_MARKER).touch()
    end = time.time() + args.total - RESERVE_S
    meta = _meta(args.dry_run)
    if not args.dry_run and 1 not in phases and not _built_with_cuda():
        print("[gpu_run] no extension with CUDA kernels here (a fresh machine?): phase 1 "
              "(build) runs first", flush=True)
        phases = [1, *phases]
    results = []
    for n in phases:
        budget = min(budgets.get(n, DRY_BUDGETS[n] if args.dry_run else PHASES[n][1]),
                     end - time.time() - GRACE_S)
        if budget < 5:
            results.append({"phase": n, "name": PHASES[n][0], "status": "not run",
                            "seconds": 0, "figures": {}, "notes": [
                                f"no time left of --total {args.total:.0f} s; run it again "
                                f"with --phases {n}"]})
        else:
            results.append(run_phase(n, work, budget, args.dry_run))
        write_outputs(results, work, out, meta)
    return 0 if all(r["status"] in ("pass", "skipped") for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
