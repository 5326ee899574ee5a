"""Train a segmentation student, optionally distilled from a frozen teacher (SSTKD and others).

Command line::

    python -m sstkd.train                    # the embedded default (synthetic pipeline, CPU)
    python -m sstkd.train --config camvid_cpu --preset sstkd \\
        --teacher-checkpoint runs/camvid_cpu/teacher/final_model.pth
    python -m sstkd.train --config C --pipeline   # teacher (cached) + distilled + baseline
    python -m sstkd.train --config C --set optim.lr=0.005 --set train.iters=2000 --resume
    torchrun --nproc_per_node=2 -m sstkd.train --config C ...   # DistributedDataParallel

Without ``--config`` (and without a teacher checkpoint) it runs
the packaged ``synthetic_default`` config as a *pipeline*: it trains the
teacher (or reuses the one cached under ``$SSTKD_CACHE`` or ``~/.cache/sstkd/teachers/<hash of
the teacher's config>``), distils the student with the config's preset, trains the same student
without distillation, evaluates all three and prints a table (``--pipeline --resume`` also
reuses finished students and continues interrupted ones). Every run writes
``results.json``, ``metrics.csv``, ``curves.png``, ``latest.pt`` (the one full training
state) and ``final_model.pth`` / ``best_model.pth`` (student weights for
``python -m sstkd.evaluate``) to its output directory; cached teachers keep only
``final_model.pth``, ``results.json`` (with the config) and the logs, under ``--cache-max-mb``.

An output directory that already holds a run is refused unless ``--resume`` (continue it) or
``--overwrite`` (replace it) is given; a run locks its directory while it writes. On
``--resume``, changed ``train.iters`` / ``optim.lr`` (and the other keys of
``sstkd.engine.CHANGEABLE_ON_RESUME``) take effect from the next step, the poly schedule
continuing from the saved step; other changed settings are refused, naming each key.
SIGTERM writes a checkpoint and exits with status 143. User errors exit with status 2 and one
line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .config import Config, check_config_paths, load_config
from .engine import (
    LATEST,
    DiskFullError,
    NonFiniteLossError,
    TrainingStopped,
    cleanup,
    evict_lru,
    folder_mb,
    init_distributed,
    is_main,
    one_line,
    world_size,
)
from .engine.pipeline import format_runs, run_pipeline
from .engine.trainer import BEST_MODEL, needs_teacher, train

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "synthetic_default.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sstkd.train",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Without --config: --config " + str(DEFAULT_CONFIG) +
                                " --pipeline (unless --teacher-checkpoint or a preset "
                                "without a teacher is given).")
    p.add_argument("--config", default=None, help="YAML file or packaged config name, e.g. "
                   "camvid_cpu (default: synthetic_default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.005 (repeatable)")
    p.add_argument("--preset", default=None, help="distill.preset (baseline, kd, skd, cwd, "
                   "sstkd, sstkd_str, sstkd_sta, sstkd_skd)")
    p.add_argument("--teacher-checkpoint", default=None, help="trained teacher weights")
    p.add_argument("--pretrained", default=None, help="local ImageNet backbone for the student")
    p.add_argument("--output-dir", default=None, help="train.output_dir")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CKPT",
                   help="continue from CKPT (default: <output-dir>/latest.pt); 'best': restart "
                        "from <output-dir>/best_model.pth's weights (fresh optimizer state)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --output-dir (refused otherwise)")
    p.add_argument("--pipeline", action="store_true",
                   help="train/reuse the teacher, then the distilled and the baseline student")
    p.add_argument("--cache-dir", default=os.environ.get("SSTKD_CACHE",
                                                         str(Path.home() / ".cache" / "sstkd")),
                   help="where --pipeline caches trained teachers (default: $SSTKD_CACHE or "
                        "~/.cache/sstkd)")
    p.add_argument("--no-cache", action="store_true", help="--pipeline: always train the "
                   "teacher, in <output-dir>/teacher")
    p.add_argument("--cache-max-mb", type=float, default=2000.0,
                   help="--pipeline: keep the teacher cache under this size, evicting the least "
                        "recently used teachers (default: 2000)")
    p.add_argument("--clear-cache", action="store_true",
                   help="delete the cached teachers (those no run is using) and exit")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: cores / processes - 1, or $OMP_NUM_THREADS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, key in (("preset", "distill.preset"), ("teacher_checkpoint",
                                                     "model.teacher_checkpoint"),
                      ("pretrained", "model.pretrained"), ("output_dir", "train.output_dir")):
        if getattr(args, flag) is not None:
            out.append(f"{key}={getattr(args, flag)}")
    return out + list(args.overrides)


def _resume_path(cfg: Config, resume: str | None) -> Path | None:
    if resume is None:
        return None
    out = Path(cfg.train.output_dir)
    path = {"auto": out / LATEST, "best": out / BEST_MODEL}.get(resume, Path(resume))
    if not path.is_file():
        hint = (f"; {BEST_MODEL} exists: --resume best restarts from its weights"
                if resume == "auto" and (out / BEST_MODEL).is_file() else "")
        raise ValueError(f"train: --resume expected a checkpoint at {str(path)!r}; none "
                         f"found{hint}")
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` and train; returns the results (as written to ``results.json``).

    Raises:
        ValueError: bad configuration (unknown key, wrong type, missing path, teacher/student
            features that cannot be aligned), before any training step.
        NonFiniteLossError: a loss became NaN/Inf; the last good checkpoint is kept.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"train: --threads expected an int >= 1, got {args.threads}")
    if args.resume is not None and args.overwrite:
        raise ValueError("train: --resume continues the run in --output-dir and --overwrite "
                         "replaces it; pass one of them")
    if args.clear_cache:
        root = Path(args.cache_dir).expanduser() / "teachers"
        before = folder_mb(root) if root.is_dir() else 0.0
        gone = evict_lru(root, 0.0)
        print(f"sstkd.train: cleared {len(gone)} cached teacher(s) from {root} "
              f"({before - (folder_mb(root) if root.is_dir() else 0.0):.1f} MB freed)")
        return {"runs": [], "cleared": [str(g) for g in gone]}
    path = args.config if args.config is not None else DEFAULT_CONFIG
    if args.config is None and not DEFAULT_CONFIG.is_file():
        raise ValueError(f"train: the default config {str(DEFAULT_CONFIG)!r} is missing; pass "
                         "--config")
    device = init_distributed()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif "OMP_NUM_THREADS" not in os.environ:  # leave a core to the OS / data / neighbours:
        # oversubscribed OpenMP threads are several times slower than one thread
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size() - 1))
    try:
        cfg = load_config(path, _overrides(args))
        if args.config is None and cfg.model.teacher_checkpoint is None and \
                needs_teacher(cfg.distill):  # the demo has no teacher yet: train it too
            args.pipeline = True  # (so `python -m sstkd.train --resume` continues the demo)
        if args.pipeline:
            return run_pipeline(cfg, args, device)
        check_config_paths(cfg)
        result = train(cfg, device, _resume_path(cfg, args.resume),
                       progress=not args.no_progress, name=f"student_{cfg.distill.preset}",
                       overwrite=args.overwrite, from_weights=args.resume == "best")
        if is_main():
            print(format_runs([result]))
            print(f"sstkd.train: wrote {result.get('disk_mb')} MB to {cfg.train.output_dir}/",
                  flush=True)
        return {"runs": [result]}
    finally:  # leave the process as it was (matters when main() is called from Python)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        cleanup()


def _cli() -> int:
    try:
        main()
    except TrainingStopped as e:
        print(f"sstkd.train: {one_line(e)}", file=sys.stderr)
        return 128 + e.signum
    except (ValueError, NonFiniteLossError, DiskFullError) as e:
        print(f"sstkd.train: error: {one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
