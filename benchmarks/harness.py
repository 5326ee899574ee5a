"""What pytest-benchmark does not do for the benchmarks: a CUDA-event clock, one tiny timing
helper for the scripts, peak memory, the copy-bandwidth yardstick, the machine record and the
CSV writer.

Absolute times on shared machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"

_origin: torch.cuda.Event | None = None


def cuda_event_clock() -> float:
    """Seconds on the current CUDA stream's timeline: records an event and waits for it.

    As a pytest-benchmark ``timer`` the time between two calls is the device time of what was
    launched between them (CUDA events, not the host's wall clock).
    """
    global _origin
    if _origin is None:
        _origin = torch.cuda.Event(enable_timing=True)
        _origin.record()
        _origin.synchronize()
    now = torch.cuda.Event(enable_timing=True)
    now.record()
    now.synchronize()
    return _origin.elapsed_time(now) / 1e3


def clock_for(device: torch.device | str) -> Callable[[], float]:
    """The timer for work on ``device``: CUDA events on a GPU, ``time.perf_counter`` else."""
    return cuda_event_clock if torch.device(device).type == "cuda" else time.perf_counter


def time_ms(fn: Callable[[], object], device: torch.device | str = "cpu", *, warmup: int = 1,
            reps: int = 5) -> dict[str, float]:
    """Median, inter-quartile range and minimum (ms) of ``reps`` calls of ``fn()`` after
    ``warmup`` calls, timed with ``clock_for(device)``; for the scripts outside pytest."""
    clock = clock_for(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0], "min_ms": min(times),
            "reps": len(times)}


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes torch allocates during one call of ``fn()`` above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the profiler's memory events (each event's
    self memory, running maximum); Inductor-compiled code allocates outside its view, so those
    figures are lower bounds.
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0)),
                    key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def copy_gbps(x: torch.Tensor, reps: int = 5) -> float:
    """Bandwidth of ``x.clone()`` (read + write) in GB/s: the yardstick of ``frac_of_copy_bw``."""
    ms = time_ms(x.clone, x.device, reps=reps)["median_ms"]
    return 2 * x.numel() * x.element_size() / ms / 1e6


def git_commit() -> str:
    """Short commit of the checkout, ``+dirty`` when it has changes; ``unknown`` without git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=here, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=here, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info(device: torch.device | str = "cpu") -> dict[str, object]:
    """Machine, versions and commit, recorded beside every result row."""
    device = torch.device(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{_cpu_model()} x{os.cpu_count()} cores")
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "commit": git_commit(),
    }


def append_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, object]],
               fields: list[str] | None = None) -> Path:
    """Append ``rows`` to the CSV at ``path``: its header (else ``fields``) first, columns the
    rows add after it; earlier rows are kept (rewritten with empty new columns)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in rows]
    if not rows:
        return path
    old_rows: list[dict] = []
    header = list(fields or [])
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or header)
            old_rows = list(reader)
    for r in rows:
        header += [k for k in r if k not in header]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(old_rows + rows)
    os.replace(tmp, path)
    return path
