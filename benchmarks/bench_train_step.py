"""Training-step time of the SSTKD losses over KD, with the fast texture ops vs the reference ops.

One step is what ``sstkd.train`` does per batch: frozen teacher forward (``no_grad``), student
forward with every enabled loss, backward, SGD step, holistic-critic step. Variants:

* ``kd`` (pixel-wise KD only) and ``skd`` (pixel-wise + pair-wise + holistic), no texture ops;
* ``sstkd`` (= skd + structural + statistical texture losses), ``sstkd_str``, ``sstkd_sta``,
  each with the texture ops on ``reference`` (plain PyTorch), on the fast backend ``auto``
  picks (C++ on CPU, CUDA on a GPU) and, with ``--compile``, on the reference with the texture
  module under ``torch.compile``.

Inputs are random images of the config's crop size and random labels; the networks are freshly
initialised (timing does not depend on the weights). Rows go to
``benchmarks/results/train_step.csv``, a bar plot (the latest row of each variant for this
setting) to ``train_step_<device>_<config>_<crop>_b<batch>_<threads>threads.png``.

Times are medians of ``--reps`` steps after two warm-up steps (``benchmarks.harness.time_ms``:
CUDA events on a GPU).

Usage (from the repository root, extension built in place):
    python -m benchmarks.bench_train_step                      # synthetic default, 64x64, batch 8
    python -m benchmarks.bench_train_step --config camvid_cpu --set data.root=PATH
    python -m benchmarks.bench_train_step --device cuda \
        --config cityscapes_pspnet_r101_r18 --set data.root=PATH
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import torch

from benchmarks.harness import RESULTS, append_csv, env_info, time_ms
from benchmarks.report import plot_bars
from sstkd.config import load_config
from sstkd.distill import build_distiller
from sstkd.models import build_model

TEXTURE_PRESETS = ("sstkd", "sstkd_str", "sstkd_sta", "sstkd_skd")


def _step_fn(cfg_path: str | None, overrides: list[str], preset: str, backend: str | None,
             compile_texture: bool, device: torch.device, amp_dtype: torch.dtype | None = None):
    """A closure running one training step of ``preset`` with texture ops on ``backend``."""
    cfg = load_config(cfg_path, [*overrides, f"distill.preset={preset}",
                                 f"distill.texture.backend={backend or 'null'}"])
    d, m = cfg.data, cfg.model
    torch.manual_seed(0)
    teacher = build_model(m.teacher, d.num_classes, m.output_stride, m.aux).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_model(m.student, d.num_classes, m.output_stride, m.aux).to(device)
    distiller = build_distiller(cfg, student, teacher).to(device)
    if distiller.texture is not None and compile_texture:
        distiller.texture = torch.compile(distiller.texture)
    distiller.train()
    params = [p for p in distiller.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    H, W = d.crop_size
    gen = torch.Generator().manual_seed(1)
    image = torch.randn(d.batch_size, 3, H, W, generator=gen).to(device)
    target = torch.randint(0, d.num_classes, (d.batch_size, H, W), generator=gen).to(device)

    def step():
        # autocast covers the forwards as in sstkd.engine.trainer (texture ops promote to float32)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            with torch.no_grad():
                t_out = teacher(image, return_features=True)
            loss, _, s_out = distiller(image, target, t_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        distiller.critic_step(image, s_out, t_out)

    return step, cfg


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="synthetic_default")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", default=",".join(("kd", "skd", *TEXTURE_PRESETS)))
    p.add_argument("--compile", action="store_true",
                   help="also time the reference texture ops under torch.compile")
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--csv", default=str(RESULTS / "train_step.csv"))
    p.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none",
                   help="mixed precision of the forwards (a GPU step as the trainer runs it)")
    p.add_argument("--texture-backends", default="reference,auto",
                   help="backends of the texture ops for the texture presets: reference, auto "
                        "(the fast one), cpu, triton, cuda")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args()
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.autocast]

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.pop("SSTKD_BACKEND", None)  # each variant sets its backend explicitly
    reps = args.reps or (5 if device.type == "cpu" else 20)
    variants = []
    for preset in args.presets.split(","):
        if preset in TEXTURE_PRESETS:
            variants += [(preset, "fast (auto)" if b == "auto" else b, False)
                         for b in args.texture_backends.split(",")]
            if args.compile:
                variants.append((preset, "reference", True))
        else:
            variants.append((preset, "none", False))
    env = env_info(device)
    rows = []
    for preset, backend, comp in variants:
        label = "ref+compile" if comp else backend
        step, cfg = _step_fn(args.config, args.overrides, preset,
                             None if backend in ("none", "fast (auto)") else backend, comp,
                             device, amp_dtype)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            t = time_ms(step, device, warmup=2, reps=reps)
        except Exception as exc:  # record and go on (e.g. a backend that fails here)
            print(f"[skip] {preset} {label}: {type(exc).__name__}: {exc}", flush=True)
            continue
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        rows.append({"preset": preset, "texture_ops": label, "config": args.config,
                     "batch": cfg.data.batch_size, "crop": "x".join(map(str, cfg.data.crop_size)),
                     "student": cfg.model.student, "teacher": cfg.model.teacher,
                     "autocast": args.autocast,
                     "median_ms": round(t["median_ms"], 2), "iqr_ms": round(t["iqr_ms"], 2),
                     "peak_mb": None if peak is None else round(peak, 1), **env})
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{preset:10s} {label:12s} {t['median_ms']:9.1f} ms (iqr {t['iqr_ms']:.1f})",
              flush=True)
    base = {r["preset"]: r["median_ms"] for r in rows if r["texture_ops"] == "none"}
    for r in rows:
        for ref in ("kd", "skd"):
            if ref in base:
                r[f"overhead_vs_{ref}_ms"] = round(r["median_ms"] - base[ref], 2)
                r[f"overhead_vs_{ref}_pct"] = round(100 * (r["median_ms"] / base[ref] - 1), 1)
    print("\n| preset | texture ops | step ms | over kd | over skd |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['preset']} | {r['texture_ops']} | {r['median_ms']:.1f} | "
              f"{r.get('overhead_vs_kd_pct', float('nan')):+.1f}% | "
              f"{r.get('overhead_vs_skd_pct', float('nan')):+.1f}% |")
    append_csv(args.csv, rows)
    if args.no_plot:
        return
    # the plot shows, for this setting, the latest row of every variant in the CSV
    r0 = rows[0]
    key = ("config", "crop", "batch", "machine", "threads")
    with open(args.csv, newline="") as f:
        same = [r for r in csv.DictReader(f) if all(str(r[k]) == str(r0[k]) for k in key)]
    latest = {(r["preset"], r["texture_ops"]): {**r, "median_ms": float(r["median_ms"])}
              for r in same}
    tag = f"{Path(args.config).stem}_{r0['crop']}_b{r0['batch']}"
    png = Path(args.csv).with_name(f"train_step_{device.type}_{tag}_{env['threads']}threads.png")
    plot_bars(list(latest.values()), group="preset", series="texture_ops", value="median_ms",
              path=png, log=False, title=f"training step, {tag}, {env['machine']}")
    print(f"wrote {args.csv} and {png}")


if __name__ == "__main__":
    main()
