"""Timing, memory, CSV and plotting helpers shared by the benchmark scripts.

Times are medians over repetitions after warm-up (CUDA: CUDA events around each call, the
host waiting for the end event before the next call).
Absolute times on shared machines are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], *, warmup: int = 2, reps: int = 10,
            device: torch.device | str | None = None, min_time_s: float = 0.0) -> dict:
    """Time ``fn()``; return ``{"median_ms", "iqr_ms", "min_ms", "reps"}``.

    Runs ``warmup`` untimed calls, then at least ``reps`` timed calls (more while the total is
    under ``min_time_s``).
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    cuda = device is not None and torch.device(device).type == "cuda"
    times: list[float] = []
    start_all = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - start_all) < min_time_s:
        if cuda:  # device time of the call, without the launch latency of a host timer
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 10 * max(reps, 1):
            break
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0],
            "min_ms": min(times), "reps": len(times)}


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by torch during one call of ``fn()`` above what was live before.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the torch profiler's memory events
    (allocations minus frees, running maximum), which sees every tensor torch allocates. Each
    event's *self* memory is used: an op's total includes the allocations of the ops nested
    in it, which would count one allocation once per enclosing op. Inductor-compiled code
    allocates outside the profiler's view, so its figures are lower bounds.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0)]
    events.sort(key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=10)
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


def env_info(device: torch.device | str = "cpu") -> dict:
    """Machine, versions and commit, recorded beside every result row."""
    device = torch.device(device)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{_cpu_model()} x{os.cpu_count()} cores"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "commit": git_commit(),
    }


def append_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> Path:
    """Append ``rows`` to the CSV at ``path`` (header written once; new columns extend it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dict(r) for r in rows]
    if not rows:
        return path
    old_rows: list[dict] = []
    fields: list[str] = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            old_rows = list(reader)
    for r in rows:
        for k in r:
            if k not in fields:
                fields.append(k)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(old_rows + rows)
    return path


def plot_bars(rows: list[Mapping[str, object]], *, group: str, series: str, value: str,
              title: str, path: str | os.PathLike, ylabel: str = "time (ms)",
              log: bool = True) -> Path | None:
    """Grouped bar chart: one group per distinct ``row[group]``, one bar per ``row[series]``.

    Returns ``None`` (and says so) where matplotlib is not installed: the CSV is the result.
    """
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: no plot {path}")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(names)) / 2), 4.5))
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, g in enumerate(groups):
            for r in rows:
                if str(r[group]) == g and str(r[series]) == name and r.get(value) not in (None, ""):
                    xs.append(j + i * width)
                    ys.append(float(r[value]))
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups, rotation=20, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

