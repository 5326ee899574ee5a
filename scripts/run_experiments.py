"""Run and summarise the distillation comparisons of docs/EXPERIMENTS.md, one run at a time.

Every run is a plain ``python -m sstkd.train`` subprocess (the exact command is printed and
stored in ``<out>/commands.txt``); a run whose ``results.json`` exists is skipped (an
unfinished one is replaced), so the script can be restarted. Per seed, the teacher is trained
once (``<out>/seed<S>/teacher``) and every variant distils from it; with ``--teacher-seed S``
one teacher (``<out>/teacher``) serves every seed. ``--jobs 2`` runs two students side by side.

    python scripts/run_experiments.py run --config synthetic_default \\
        --seeds 1 2 3 --variants baseline kd cwd sstkd sstkd_str sstkd_sta \\
        --out runs/exp/synthetic --threads 1
    python scripts/run_experiments.py run --config synthetic_default --seeds 0 \\
        --variants skd "str0.1=sstkd_str,distill.weights.str=0.1" --out runs/exp/sweep
    python scripts/run_experiments.py summarize runs/exp/synthetic

A variant is ``PRESET`` or ``NAME=PRESET[,key=value,...]`` (``--set`` overrides of that run).
``summarize`` writes ``summary.md`` / ``summary.json``: mIoU mean and sample std over seeds,
per-seed values, and the loss terms' magnitudes (raw and weighted) over the last quarter of
training.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sstkd.config import load_config

TERMS = ("seg", "pi", "pa", "ho", "cwd", "str", "sta")


def parse_variant(spec: str) -> tuple[str, str, list[str]]:
    name, _, rest = spec.partition("=") if "=" in spec.split(",")[0] else (spec, "", spec)
    preset, *sets = rest.split(",")
    return name, preset, sets


def _run(cmd: list[str], log: Path, out: Path) -> None:
    line = " ".join(shlex.quote(c) for c in cmd)
    print(f"$ {line}", flush=True)
    with open(out / "commands.txt", "a") as f:
        f.write(line + "\n")
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"  -> exit {proc.returncode} in {time.time() - t0:.0f} s (log {log})", flush=True)


def _teacher(args: argparse.Namespace, base: list[str], cfg, tdir: Path, seed: int,
             out: Path) -> None:
    if (tdir / "results.json").is_file():
        return
    tdir.mkdir(parents=True, exist_ok=True)
    teacher_iters = cfg.train.teacher_iters or cfg.train.iters
    _run(base + ["--preset", "baseline", "--set", f"model.student={cfg.model.teacher}",
                 "--set", f"train.iters={teacher_iters}", "--set", f"train.seed={seed}",
                 *(["--set", "model.pretrained=null"] if cfg.model.pretrained else []),
                 "--output-dir", str(tdir)], tdir / "log.txt", out)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, args.set)
    base = [sys.executable, "-m", "sstkd.train", "--config", args.config, "--threads",
            str(args.threads), "--no-progress"] + [a for s in args.set for a in ("--set", s)]
    shared = out / "teacher" if args.teacher_seed is not None else None
    if shared is not None:  # one teacher for every seed
        _teacher(args, base, cfg, shared, args.teacher_seed, out)
    jobs = []
    for seed in args.seeds:
        sdir = out / f"seed{seed}"
        tdir = shared or sdir / "teacher"
        if shared is None:
            _teacher(args, base, cfg, tdir, seed, out)
        for spec in args.variants:
            name, preset, sets = parse_variant(spec)
            vdir = sdir / name
            if (vdir / "results.json").is_file():
                continue
            vdir.mkdir(parents=True, exist_ok=True)
            cmd = base + ["--preset", preset, "--set", f"train.seed={seed}", "--output-dir",
                          str(vdir), "--overwrite"]
            if preset != "baseline":
                cmd += ["--teacher-checkpoint", str(tdir / "final_model.pth")]
            jobs.append((cmd + [a for s in sets for a in ("--set", s)], vdir / "log.txt"))
    # students side by side (--jobs processes of --threads threads each)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for future in [pool.submit(_run, cmd, log, out) for cmd, log in jobs]:
            future.result()
    summarize(out)


def _term_means(csv_path: Path) -> dict[str, float]:
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss/total")]
    tail = rows[len(rows) * 3 // 4:] or rows
    out = {}
    for t in (*TERMS, "total"):
        vals = [float(r[f"loss/{t}"]) for r in tail if r.get(f"loss/{t}")]
        if vals:
            out[t] = statistics.fmean(vals)
    return out


def _deltas(e: dict, ref: dict | None, ref_name: str) -> str:
    """Paired per-seed differences ``e - ref`` in mIoU points, and their mean."""
    if ref is None or ref is e or e["preset"] == ref_name:
        return ""
    common = [k for k in e["miou"] if k in ref["miou"]]
    if not common:
        return ""
    d = [100 * (e["miou"][k] - ref["miou"][k]) for k in common]
    return " ".join(f"{x:+.2f}" for x in d) + f" ({statistics.fmean(d):+.2f})"


def summarize(out: Path) -> dict:
    out = Path(out)
    table: dict[str, dict] = {}
    found = sorted(out.glob("seed*/*/results.json"))
    if (out / "teacher" / "results.json").is_file():  # the teacher shared by every seed
        found.insert(0, out / "teacher" / "results.json")
    for res in found:
        name = res.parent.name
        r = json.loads(res.read_text())["runs"][0]
        e = table.setdefault(name, {"miou": {}, "terms": [], "weights": r.get("weights"),
                                    "preset": r["preset"], "wall": []})
        seed = res.parent.parent.name if res.parent.parent != out else "shared"
        e["miou"][seed] = r["miou"]
        e["wall"].append(r.get("wall_time_s") or 0)
        if (res.parent / "metrics.csv").is_file():
            e["terms"].append(_term_means(res.parent / "metrics.csv"))
    lines = ["| run | preset | n | mIoU % (mean ± std) | per seed | vs baseline, per seed "
             "(mean) | vs kd, per seed (mean) | wall s/run |",
             "| --- | --- | ---: | --- | --- | --- | --- | ---: |"]
    mag = ["| run | " + " | ".join(f"{t} raw (x w)" for t in TERMS) + " |",
           "| --- |" + " ---: |" * len(TERMS)]
    for name, e in table.items():
        v = [100 * x for x in e["miou"].values()]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        e["mean"], e["std"] = statistics.fmean(v), sd
        seeds = ", ".join(f"{k.removeprefix('seed')}: {100 * x:.2f}"
                          for k, x in e["miou"].items())
        deltas = [_deltas(e, table.get(ref), ref) for ref in ("baseline", "kd")]
        lines.append(f"| {name} | {e['preset']} | {len(v)} | {e['mean']:.2f} ± {sd:.2f} | "
                     f"{seeds} | {deltas[0]} | {deltas[1]} | "
                     f"{statistics.fmean(e['wall']):.0f} |")
        if e["terms"]:
            w = dict(e["weights"] or {}, seg=1.0)
            cells = []
            for t in TERMS:
                vals = [m[t] for m in e["terms"] if t in m]
                if not vals:
                    cells.append("")
                    continue
                raw = statistics.fmean(vals)
                cells.append(f"{raw:.3g} ({(w.get(t) or 0) * raw:.3g})")
            mag.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\nLoss terms, mean over the last quarter of the logged steps " \
        "(raw value, and weighted in parentheses):\n\n" + "\n".join(mag) + "\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(table, indent=2))
    print(text)
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--config", required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    r.add_argument("--variants", nargs="+", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--jobs", type=int, default=1,
                   help="student runs side by side (e.g. 2 on 2 cores with --threads 1)")
    r.add_argument("--teacher-seed", type=int, default=None,
                   help="train one teacher (this seed) in <out>/teacher for every seed, "
                        "instead of one teacher per seed")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("summarize")
    s.add_argument("out")
    args = p.parse_args(argv)
    if args.cmd == "run":
        run(args)
    else:
        summarize(Path(args.out))


if __name__ == "__main__":
    main()
