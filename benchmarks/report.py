"""Turn a pytest-benchmark JSON file of ``pytest benchmarks/`` into CSV rows and plots.

Rows go to ``benchmarks/results/contourlet.csv`` (``pdfb_dec``/``pdfb_rec``),
``contourlet_image_scale.csv`` (the image-scale sweep) and ``texture_stats.csv``, all with the
columns ``SCHEMA``; each row carries machine, versions and commit, the median time, the error
against the reference, the speed-up over the reference of the same run, GB/s and memory.
Plots: speed-up vs reference per op, size and provider from the newest run of each case in the
CSV, one PNG per file, device and thread count (``<file>_<device>_<threads>threads.png``);
without a JSON file, only the plots are redrawn.

    pytest benchmarks/ --benchmark-only -m quick --bench-threads 1 --benchmark-json /tmp/b.json
    python -m benchmarks.report /tmp/b.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from benchmarks.harness import RESULTS, append_csv

SCHEMA = ["date", "machine", "device", "threads", "torch", "triton", "python", "commit", "op",
          "mode", "backend", "shape", "dtype", "nlevs", "pfilt", "dfilt", "N", "median_ms",
          "iqr_ms", "min_ms", "reps", "max_err_vs_ref", "speedup_vs_ref", "gbps", "copy_gbps",
          "frac_of_copy_bw", "peak_mb", "extra_mb", "extra_mem_ratio_vs_ref", "first_call_ms",
          "timer"]
# what makes two rows the same measurement but for the provider
CASE = ("device", "threads", "op", "mode", "shape", "dtype", "nlevs", "pfilt", "dfilt", "N")
FILES = ("contourlet", "contourlet_image_scale", "texture_stats")


def file_of(info: Mapping[str, object]) -> str:
    """The results file of a benchmark: by its op and whether it is the image-scale sweep."""
    if str(info["op"]).startswith("pdfb"):
        return "contourlet_image_scale" if "pfilt" in info else "contourlet"
    return "texture_stats"


def rows_of(data: Mapping) -> dict[str, list[dict]]:
    """CSV rows (``SCHEMA`` columns) of a pytest-benchmark JSON document, by results file."""
    by_file: dict[str, list[dict]] = {name: [] for name in FILES}
    for b in data.get("benchmarks", []):
        info, stats = b.get("extra_info") or {}, b["stats"]
        if "op" not in info:
            continue
        row = {k: info.get(k, "") for k in SCHEMA}
        ms = stats["median"] * 1e3
        row.update(median_ms=round(ms, 4), iqr_ms=round(stats["iqr"] * 1e3, 4),
                   min_ms=round(stats["min"] * 1e3, 4), reps=stats["rounds"])
        if info.get("nbytes"):
            row["gbps"] = round(info["nbytes"] / ms / 1e6, 2)
            if info.get("copy_gbps"):
                row["frac_of_copy_bw"] = round(row["gbps"] / info["copy_gbps"], 3)
        by_file[file_of(info)].append(row)
    for rows in by_file.values():
        add_speedups(rows)
    return by_file


def add_speedups(rows: list[dict]) -> list[dict]:
    """Fill ``speedup_vs_ref`` (and ``extra_mem_ratio_vs_ref``) of each row from the reference
    row of the same case measured in the same run (same date and machine)."""
    key = (*CASE, "date", "machine")
    ref = {tuple(str(r.get(k, "")) for k in key): r for r in rows if r["backend"] == "reference"}
    for r in rows:
        base = ref.get(tuple(str(r.get(k, "")) for k in key))
        if base is None or r.get("speedup_vs_ref") not in (None, ""):
            continue
        r["speedup_vs_ref"] = round(float(base["median_ms"]) / float(r["median_ms"]), 2)
        if base.get("extra_mb") not in (None, "") and r.get("extra_mb") not in (None, ""):
            r["extra_mem_ratio_vs_ref"] = round(
                float(base["extra_mb"]) / max(float(r["extra_mb"]), 1e-3), 1)
    return rows


def latest(path: Path) -> list[dict]:
    """The newest row with a speed-up of each case and provider in the CSV at ``path``."""
    with path.open(newline="") as f:
        rows = add_speedups(list(csv.DictReader(f)))
    newest = {}
    for r in rows:  # later rows replace earlier ones
        if r.get("speedup_vs_ref") not in (None, ""):
            newest[tuple(str(r.get(k, "")) for k in (*CASE, "backend"))] = r
    return list(newest.values())


def plot_bars(rows: list[Mapping[str, object]], *, group: str, series: str, value: str,
              title: str, path: str | os.PathLike, ylabel: str = "time (ms)",
              log: bool = True, line: float | None = None) -> Path | None:
    """Grouped bar chart: one group per distinct ``row[group]``, one bar per ``row[series]``
    (``line``: a horizontal line there). ``None`` where matplotlib is not installed."""
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
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(groups) * max(1, len(names))), 4.8))
    for i, name in enumerate(names):
        pts = [(j + i * width, float(r[value])) for j, g in enumerate(groups) for r in rows
               if str(r[group]) == g and str(r[series]) == name and r.get(value) not in (None, "")]
        ax.bar([p[0] for p in pts], [p[1] for p in pts], width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups, rotation=25, ha="right", fontsize=7)
    if line is not None:
        ax.axhline(line, color="k", linewidth=0.8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(r: Mapping[str, object]) -> str:
    parts = [r["op"], r["mode"], r["shape"]]
    parts += [f"N={r['N']}"] if r.get("N") not in (None, "") else []
    parts += [f"{r['pfilt']}/{r['dfilt']} ({r['nlevs']})"] if r.get("pfilt") else []
    parts += [r["dtype"]] if r.get("dtype") not in (None, "", "float32") else []
    return " ".join(map(str, parts))


def plot_speedups(name: str, rows: list[dict], results: Path) -> list[Path]:
    """One PNG per device and thread count of ``rows``: each provider's speed-up over the
    reference."""
    out = []
    for device, threads in dict.fromkeys((r["device"], r["threads"]) for r in rows):
        mine = [dict(r, case=_label(r)) for r in rows if (r["device"], r["threads"]) ==
                (device, threads) and r["backend"] != "reference"]
        if not mine:
            continue
        png = results / f"{name}_{device}_{threads}threads.png"
        machines = ", ".join(dict.fromkeys(r["machine"] for r in mine))
        mine.sort(key=lambda r: (r["op"], r["mode"], [int(v) for v in r["shape"].split("x")],
                                 str(r.get("N", "")), str(r.get("pfilt", "")), r["dtype"]))
        path = plot_bars(mine, group="case", series="backend", value="speedup_vs_ref", path=png,
                         ylabel="speed-up vs reference (x)", line=1.0,
                         title=f"{name}: speed-up over the eager reference, {machines}, "
                               f"{threads} threads")
        out += [path] if path else []
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", type=Path, nargs="?", help="the file of --benchmark-json")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help=f"folder of the CSVs and plots (default {RESULTS})")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    by_file: dict[str, list[dict]] = {}
    if args.json is not None:
        try:
            by_file = rows_of(json.loads(args.json.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"report: error: cannot read the benchmark results {str(args.json)!r}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        if not any(by_file.values()):
            print(f"report: error: no op benchmarks in {str(args.json)!r}", file=sys.stderr)
            return 2
    for name, rows in by_file.items():
        if rows:
            print(f"{len(rows)} rows -> {append_csv(args.results / f'{name}.csv', rows, SCHEMA)}")
        for r in rows:
            if r["speedup_vs_ref"] != "" and r["backend"] != "reference":
                print(f"  {_label(r):55s} {r['backend']:18s} {r['median_ms']:10.3f} ms  "
                      f"x{r['speedup_vs_ref']} vs reference")
    if not args.no_plot:  # every CSV's newest rows, not only this run's
        for name in FILES:
            path = args.results / f"{name}.csv"
            for png in plot_speedups(name, latest(path), args.results) if path.exists() else []:
                print(f"plot {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
