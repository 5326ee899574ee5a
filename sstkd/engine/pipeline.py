"""The ``--pipeline`` of ``python -m sstkd.train``: teacher (trained, cached or given) ->
distilled student -> comparison students -> one table with the deltas.

The teacher's training is cached under ``<cache-dir>/teachers/<hash of the teacher's
config>`` (only ``final_model.pth``, ``results.json`` and the logs are kept there, under
``--cache-max-mb``, least recently used evicted first); each student is a normal run of
:func:`sstkd.engine.trainer.train` in ``<output-dir>/student_<preset>``. With ``--resume``
finished stages are reused and interrupted ones continue.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import Config, check_config_paths, config_from_dict
from ..evaluate import evaluate
from .checkpoint_io import LATEST
from .distributed import barrier, is_main
from .run_files import evict_lru, folder_mb, lock_run_folder, refuse_existing_run, touch
from .trainer import FINAL_MODEL, build_datasets, load_teacher, train, write_results

# Settings that do not change what the teacher learns: not part of its cache key.
_NOT_IN_CACHE_KEY = (("train", "output_dir"), ("train", "log_every"), ("train", "tensorboard"),
                     ("train", "ckpt_every"), ("train", "teacher_iters"),
                     ("train", "compare_presets"), ("data", "workers"))


def derive(cfg: Config, preset: str | None = None, **changes: Any) -> Config:
    """A copy of ``cfg`` with ``section.key`` changes (``model__student=...``) and, when
    ``preset`` is given, that preset's loss weights (explicit weights are dropped)."""
    d = cfg.to_dict()
    for key, value in changes.items():
        section, name = key.split("__")
        d[section][name] = value
    if preset is not None:
        d["distill"]["preset"] = preset
        d["distill"]["weights"] = {}
    return config_from_dict(d)


def _teacher_key(cfg: Config) -> str:
    """Hash of what the teacher's training depends on (not the distillation settings)."""
    d = cfg.to_dict()
    d.pop("distill")
    for section, name in _NOT_IN_CACHE_KEY:
        d[section].pop(name, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _finished(out_dir: Path, steps: int) -> dict[str, Any] | None:
    """The result of a completed run in ``out_dir`` (``None`` if it is missing or partial)."""
    path = out_dir / "results.json"
    if not (path.is_file() and (out_dir / FINAL_MODEL).is_file()):
        return None
    runs = json.loads(path.read_text()).get("runs", [])
    return runs[0] if runs and runs[0].get("steps") == steps else None


def _stage(cfg: Config, name: str, args: argparse.Namespace, device: torch.device,
           reuse: bool, cached: bool = False) -> dict[str, Any]:
    """Train one pipeline stage; with ``reuse``, return its finished result instead; with
    ``--resume``, continue a partial one. A ``cached`` stage (the teacher cache) keeps only its
    weights, config and results, and replaces a partial entry unless resuming."""
    out = Path(cfg.train.output_dir)
    done = _finished(out, cfg.train.iters) if reuse else None
    if done is not None:
        if is_main():
            print(f"sstkd.train: {name}: reusing the finished run in {out}", flush=True)
        return dict(done, name=name, reused=True)
    resume = out / LATEST if args.resume and (out / LATEST).is_file() else None
    return train(cfg, device, resume, progress=not args.no_progress, name=name,
                 overwrite=bool(args.overwrite or args.resume or cached), keep_state=not cached)


def _external_teacher(cfg: Config, device: torch.device) -> dict[str, Any]:
    """Evaluate a given teacher checkpoint on the validation split."""
    t0 = time.time()
    res = evaluate(load_teacher(cfg, device), build_datasets(cfg)[1], cfg.eval.mode,
                   crop_size=cfg.eval.crop_size, stride=cfg.eval.stride, device=device,
                   progress=False)
    return {"name": "teacher", "model": cfg.model.teacher, "preset": "given", "miou": res["miou"],
            "iou": dict(zip(res["class_names"], res["iou"], strict=True)), "steps": None,
            "wall_time_s": round(time.time() - t0, 1), "checkpoint": cfg.model.teacher_checkpoint}


def run_pipeline(cfg: Config, args: argparse.Namespace, device: torch.device
                 ) -> dict[str, Any]:
    """Teacher (trained, cached or given) -> distilled student -> baseline student -> table."""
    out = Path(cfg.train.output_dir)
    if args.resume not in (None, "auto"):
        raise ValueError(f"train: --pipeline --resume continues each stage from its own "
                         f"latest.pt; it takes no checkpoint, got {args.resume!r}")
    if not (args.resume or args.overwrite):
        for d in [out, *sorted(out.glob("student_*")), out / "teacher"]:
            refuse_existing_run(d)
    lock = lock_run_folder(out)
    try:
        return _run_pipeline(cfg, args, device)
    finally:
        lock.release()


def _run_pipeline(cfg: Config, args: argparse.Namespace, device: torch.device
                  ) -> dict[str, Any]:
    t0 = time.time()
    out = Path(cfg.train.output_dir)
    runs = []
    cache_mb = None
    if cfg.model.teacher_checkpoint is not None:
        check_config_paths(cfg)
        runs.append(_external_teacher(cfg, device))
        teacher_ckpt = cfg.model.teacher_checkpoint
    else:
        # model.pretrained holds the student's backbone weights: the teacher (another
        # architecture) starts without them
        tcfg = derive(cfg, "baseline", model__student=cfg.model.teacher, model__pretrained=None,
                      train__iters=cfg.train.teacher_iters or cfg.train.iters)
        check_config_paths(tcfg)
        tdir = out / "teacher" if args.no_cache else (
            Path(args.cache_dir).expanduser() / "teachers" / _teacher_key(tcfg))
        tcfg = derive(tcfg, train__output_dir=str(tdir))
        if not args.no_cache and is_main():
            print(f"sstkd.train: teacher cache: {tdir}", flush=True)
        runs.append(_stage(tcfg, "teacher", args, device,
                           bool(not args.no_cache or args.resume), cached=not args.no_cache))
        teacher_ckpt = str(tdir / FINAL_MODEL)
        if not args.no_cache and is_main():  # a copy beside the students, for convenience
            (out / "teacher").mkdir(parents=True, exist_ok=True)
            shutil.copy2(tdir / "results.json", out / "teacher" / "results.json")
            touch(tdir)
            for gone in evict_lru(tdir.parent, args.cache_max_mb, keep=tdir):
                print(f"sstkd.train: teacher cache over {args.cache_max_mb:g} MB: evicted {gone}",
                      flush=True)
            cache_mb = folder_mb(tdir.parent)
    barrier()
    preset = cfg.distill.preset
    presets = [preset] + [p for p in cfg.train.compare_presets if p != preset]
    for name in presets:  # the config's preset, then each comparison, from the same teacher
        teacher = teacher_ckpt if name != "baseline" else None
        scfg = derive(cfg, None if name == preset else name, model__teacher_checkpoint=teacher,
                      train__output_dir=str(out / f"student_{name}"))
        check_config_paths(scfg)
        runs.append(_stage(scfg, f"student_{name}", args, device, bool(args.resume)))
    summary = {"runs": runs, "total_wall_time_s": round(time.time() - t0, 1),
               "config": cfg.to_dict()}
    if is_main():
        summary["disk_mb"] = folder_mb(out)
        summary["teacher_cache_mb"] = cache_mb
        summary["finding"] = describe_runs(runs, preset)
        write_results(out / "results.json", summary)
        print(format_runs(runs))
        print(f"\n{summary['finding']}")
        cache = f"; teacher cache {cache_mb:g} MB" if cache_mb is not None else ""
        print(f"\nsstkd.train: finished in {summary['total_wall_time_s']:.0f} s; wrote "
              f"{summary['disk_mb']:g} MB to {out}/{cache} (results.json, and per run: "
              "metrics.csv, curves.png, final_model.pth, best_model.pth, latest.pt)", flush=True)
    return summary


def _miou(runs: Sequence[dict[str, Any]], name: str) -> float | None:
    for r in runs:
        if r["name"] == name and r.get("miou") is not None:
            return 100 * r["miou"]
    return None


def describe_runs(runs: Sequence[dict[str, Any]], preset: str) -> str:
    """One sentence saying what a pipeline's table shows (from its numbers only)."""
    main, alone = _miou(runs, f"student_{preset}"), _miou(runs, "student_baseline")
    teacher = _miou(runs, "teacher")
    if main is None:
        return f"The {preset} student has no result."
    parts = [f"The {preset} student reaches {main:.2f} mIoU"]
    if alone is not None and preset != "baseline":
        verdict = "better than" if main > alone else "not better than"
        parts.append(f"{main - alone:+.2f} against the same student trained alone "
                     f"({alone:.2f}: {verdict} it)")
    others = [(r["name"][len("student_"):], 100 * r["miou"]) for r in runs
              if r["name"].startswith("student_") and r.get("miou") is not None
              and r["name"] not in (f"student_{preset}", "student_baseline")]
    for name, m in others:
        parts.append(f"{main - m:+.2f} against {name} ({m:.2f})")
    text = ", ".join(parts)
    if teacher is not None:
        text += f"; the teacher it learns from is at {teacher:.2f}"
        if alone is not None:
            text += f" ({teacher - alone:+.2f} over the student alone)"
    return text + ". One seed: docs/EXPERIMENTS.md has the 3-seed table."


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of runs: name, model, preset, mIoU, its delta against the student
    trained alone (when there is one), steps, wall time, disk."""
    alone = _miou(runs, "student_baseline")
    lines = ["| run | model | preset | mIoU (%) | vs alone | steps | wall time (s) | disk (MB) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        miou = None if r.get("miou") is None else 100 * r["miou"]
        delta = ("" if miou is None or alone is None or r["name"] == "student_baseline"
                 else f"{miou - alone:+.2f}")
        lines.append(f"| {r['name']}{' (cached)' if r.get('reused') else ''} | {r['model']} | "
                     f"{r['preset']} | {'n/a' if miou is None else f'{miou:.2f}'} | {delta} | "
                     f"{r.get('steps')} | {r.get('wall_time_s')} | {r.get('disk_mb', 'n/a')} |")
    return "\n".join(lines)
