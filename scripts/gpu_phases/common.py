"""What every phase of ``scripts/gpu_run.py`` shares: its command line, its result file,
guarded subprocesses and the repository paths."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT = "result.json"


def parse_args(doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="this phase's folder")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes")
    p.add_argument("--budget", type=float, default=600.0, help="seconds this phase may take")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the repository importable, plus ``extra``."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH", "")]))
    e.update(extra)
    return e


def run(cmd: list[str], log: Path, timeout: float, **env_extra: str) -> dict:
    """Run ``cmd`` in the repository root, stdout+stderr to ``log``; never raises.

    Returns ``{"rc", "seconds", "timed_out", "tail"}`` (``rc`` None when it timed out).
    """
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            # its own session, so that a timeout ends its children too (training runs)
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                    env=env(**env_extra), start_new_session=True)
        except OSError as exc:
            f.write(f"\n[could not start: {exc}]\n")
            return {"rc": 127, "seconds": 0.0, "timed_out": False, "tail": tail(log)}
        try:
            rc, timed_out = proc.wait(timeout=max(timeout, 1.0)), False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc, timed_out = None, True
            f.write(f"\n[timed out after {timeout:.0f} s]\n")
    return {"rc": rc, "seconds": round(time.time() - t0, 1), "timed_out": timed_out,
            "tail": tail(log)}


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def python() -> str:
    return sys.executable


def write_result(out: Path, status: str, figures: dict | None = None,
                 notes: list[str] | None = None) -> None:
    """The phase's verdict: ``pass``, ``fail`` or ``skipped``, key figures and notes."""
    (out / RESULT).write_text(json.dumps(
        {"status": status, "figures": figures or {}, "notes": notes or []}, indent=1,
        default=str))


def write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)
