"""The training loop of ``python -m sstkd.train``: one student (optionally distilled) per call.

:func:`train` builds the data, the student, the frozen teacher and the :class:`Distiller` from
a resolved :class:`~sstkd.config.Config`, then runs SGD + poly schedule with optional warm-up,
mixed precision (CUDA only), gradient clipping, a non-finite-loss guard, periodic evaluation
with best-checkpoint tracking, logs (tqdm, CSV, TensorBoard) and exact resume.

Determinism of resume: data order and augmentation depend only on ``(seed, epoch, position)``
(a seeded per-epoch permutation and the datasets' per-sample generators), the DataLoader has
its own generator, evaluation runs under ``torch.random.fork_rng`` and every checkpoint holds
the global RNG states, so a resumed run continues the uninterrupted run's loss trajectory.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..config import Config, DistillConfig
from ..data import Compose, build_dataset, build_eval_transform, build_train_transform
from ..data.transforms import FixedResize
from ..distill import LOSS_TERMS, build_distiller
from ..evaluate import evaluate
from ..models import build_model, load_checkpoint, save_checkpoint
from .checkpoint_io import CheckpointManager, capture_rng_state, restore_rng_state
from .distributed import all_reduce_mean, barrier, convert_sync_bn, is_distributed, is_main
from .distributed import rank as get_rank
from .distributed import world_size as get_world_size
from .guards import TrainingStopped, check_finite
from .logging import MetricLogger, plot_curves
from .resume import check_resume, read_training_state
from .run_files import (
    clean_stale_temporaries,
    disk_full_guard,
    folder_mb,
    lock_run_folder,
    refuse_existing_run,
    remove_run_files,
    write_results,
)
from .schedule import PolyLR

FINAL_MODEL = "final_model.pth"  # student weights only, readable by `python -m sstkd.evaluate`
BEST_MODEL = "best_model.pth"


# --------------------------------------------------------------------------- data


def build_datasets(cfg: Config) -> tuple[Dataset, Dataset]:
    """``(train, val)`` datasets of ``cfg.data`` (train augmentation seeded by ``train.seed``)."""
    d = cfg.data
    train_t = build_train_transform(d.crop_size, d.scale_range, d.flip,
                                    ignore_index=d.ignore_index)
    val_t = build_eval_transform()
    if d.resize is not None:
        train_t, val_t = Compose([FixedResize(d.resize), train_t]), Compose(
            [FixedResize(d.resize), val_t])
    train_kw: dict[str, Any] = {"ignore_index": d.ignore_index, "seed": cfg.train.seed}
    val_kw: dict[str, Any] = {"ignore_index": d.ignore_index}
    if d.dataset == "synthetic":  # val mosaics stay fixed across training seeds
        common = {"size": d.image_size, "num_classes": d.num_classes}
        train_kw.update(common, length=d.train_length)
        val_kw.update(common, length=d.val_length)
    train = build_dataset(d.dataset, d.root, d.train_split, train_t, **train_kw)
    val = build_dataset(d.dataset, d.root, d.val_split, val_t, **val_kw)
    if train.num_classes != d.num_classes:
        raise ValueError(f"train: data.num_classes={d.num_classes} but dataset {d.dataset!r} has "
                         f"{train.num_classes} classes (set --set data.num_classes="
                         f"{train.num_classes})")
    return train, val


class EpochSampler(Sampler[int]):
    """This rank's share of a seeded permutation of ``range(n)``, from a position in the epoch.

    The permutation depends only on ``(seed, epoch)``; ranks take interleaved slices of it (the
    tail that does not divide evenly is dropped), like ``DistributedSampler(drop_last=True)``.
    """

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        self.n, self.num_replicas, self.rank, self.seed = n, num_replicas, rank, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def _indices(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        usable = self.n - self.n % self.num_replicas
        return perm[self.rank:usable:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return self.n // self.num_replicas - self.start


class _Shard(Dataset):
    """Rank ``r``'s interleaved share of the first ``limit`` samples (for evaluation)."""

    def __init__(self, base: Dataset, limit: int | None):
        n = len(base) if not limit else min(limit, len(base))
        self.__dict__.update(base=base, indices=list(range(n))[get_rank()::get_world_size()])

    def __getattr__(self, name: str) -> Any:  # num_classes, ignore_index, palette, ...
        return getattr(self.__dict__["base"], name)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def sample_name(self, i: int) -> str:
        base = self.base
        j = self.indices[i]
        return base.sample_name(j) if hasattr(base, "sample_name") else f"{j:06d}"


# --------------------------------------------------------------------------- models


def needs_teacher(distill: DistillConfig) -> bool:
    """Whether any distillation weight is on."""
    return any((getattr(distill.weights, k) or 0) > 0 for k in LOSS_TERMS)


def load_teacher(cfg: Config, device: torch.device) -> nn.Module:
    """The frozen teacher: loaded strictly, eval mode, ``requires_grad=False``."""
    path = cfg.model.teacher_checkpoint
    teacher, info = load_checkpoint(path, name=cfg.model.teacher,
                                    num_classes=cfg.data.num_classes,
                                    output_stride=cfg.model.output_stride)
    if teacher.num_classes != cfg.data.num_classes:
        raise ValueError(f"train: teacher checkpoint {path!r} predicts {teacher.num_classes} "
                         f"classes, data.num_classes is {cfg.data.num_classes}")
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


# --------------------------------------------------------------------------- loop


def train(cfg: Config, device: torch.device | str = "cpu", resume: str | Path | None = None,
          progress: bool = True, name: str = "train", overwrite: bool = False,
          from_weights: bool = False, keep_state: bool = True) -> dict[str, Any]:
    """Train one student as configured; write checkpoints, logs, curves and ``results.json``.

    The output folder is locked while the run writes to it (a second writer gets a
    ``ValueError``); temporaries left by a killed writer are deleted first. SIGTERM writes a
    checkpoint and raises :class:`TrainingStopped`.

    Args:
        cfg: resolved config (paths already checked by the caller).
        device: this process's device (``sstkd.engine.init_distributed()``).
        resume: a checkpoint to continue from (``latest.pt`` of an earlier run); settings that
            changed since are checked by :func:`~sstkd.engine.resume.check_resume` and the LR
            schedule is rebuilt from ``cfg`` at the saved step.
        progress: show the tqdm bar (rank 0 only).
        name: label of the run in the progress bar and the results.
        overwrite: replace an earlier run in the output folder (otherwise refused unless
            resuming).
        from_weights: ``resume`` is a weights-only export (``best_model.pth``): the student
            restarts from it at its step; optimizer state, adapters and RNG start fresh.
        keep_state: keep ``latest.pt`` and ``best_model.pth`` when done (``False`` for the
            teacher cache: weights, config and results only).

    Returns:
        the run's result dict (also written to ``<output_dir>/results.json`` on rank 0):
        ``name, model, preset, weights, miou, best_miou, pixel_acc, iou {class: IoU}, steps,
        train_time_s (summed over resumes), wall_time_s, output_dir, checkpoint, disk_mb``.

    Raises:
        NonFiniteLossError: a loss term became NaN/Inf (the last good checkpoint is kept).
        TrainingStopped: SIGTERM was received (a checkpoint was written first).
        DiskFullError: the disk filled up (the previous checkpoint is kept).
        ValueError: bad configuration or output folder, unusable resume source.
    """
    out_dir = Path(cfg.train.output_dir)
    if resume is None and not overwrite:
        refuse_existing_run(out_dir)
    elif out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"train: output folder {str(out_dir)!r} is a file, expected a folder")
    lock = lock_run_folder(out_dir)
    try:
        if is_main():
            clean_stale_temporaries(out_dir)
            if resume is None:
                remove_run_files(out_dir)
        return _train(cfg, torch.device(device), resume, progress, name, from_weights,
                      keep_state)
    finally:
        lock.release()


def _warn_small_images(cfg: Config, train_ds: Dataset) -> None:
    """Warn once when the crop is larger than the (resized) training images."""
    d = cfg.data
    if d.resize is not None:
        size = tuple(d.resize)
    elif d.dataset == "synthetic":
        size = (d.image_size, d.image_size)
    elif hasattr(train_ds, "load_raw") and len(train_ds):
        size = tuple(train_ds.load_raw(0)[1].shape)
    else:
        return
    if d.crop_size[0] > size[0] or d.crop_size[1] > size[1]:
        warnings.warn(f"train: data.crop_size {list(d.crop_size)} is larger than the training "
                      f"images ({size[0]}x{size[1]}, HxW): crops are padded with "
                      "ignore_index", stacklevel=3)


def _train(cfg: Config, device: torch.device, resume: str | Path | None, progress: bool,
           name: str, from_weights: bool, keep_state: bool) -> dict[str, Any]:
    t_start = time.time()
    out_dir = Path(cfg.train.output_dir)
    ws, rk = get_world_size(), get_rank()
    if cfg.data.batch_size % ws:
        raise ValueError(f"train: data.batch_size={cfg.data.batch_size} must be divisible by the "
                         f"number of processes ({ws})")
    per_rank = cfg.data.batch_size // ws
    seed = cfg.train.seed
    random.seed(seed + rk)
    np.random.seed(seed + rk)
    torch.manual_seed(seed + rk)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    train_ds, val_ds = build_datasets(cfg)
    if is_main():
        _warn_small_images(cfg, train_ds)
    sampler = EpochSampler(len(train_ds), ws, rk, seed)
    steps_per_epoch = (len(train_ds) // ws) // per_rank
    if steps_per_epoch < 1:
        raise ValueError(f"train: {len(train_ds)} training samples are fewer than one batch of "
                         f"{cfg.data.batch_size}")
    state = None
    if resume is not None and not from_weights:  # checked before building anything
        state = read_training_state(resume)
        changed = check_resume(resume, state["config"], cfg.to_dict(), int(state["step"]))
        changed = [c for c in changed if not c[0].startswith(("train.output_dir", "eval."))]
        if changed and is_main():
            print("sstkd.train: resuming with changed settings (effective from step "
                  f"{int(state['step']) + 1}): " +
                  "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed), flush=True)

    torch.manual_seed(seed)  # identical initial weights on every rank
    student = build_model(cfg.model.student, cfg.data.num_classes, cfg.model.output_stride,
                          cfg.model.aux, pretrained_backbone=cfg.model.pretrained).to(device)
    teacher = load_teacher(cfg, device) if needs_teacher(cfg.distill) else None
    distiller = build_distiller(cfg, student, teacher).to(device)
    if cfg.model.sync_bn and device.type == "cuda":
        distiller = convert_sync_bn(distiller)
    elif cfg.model.sync_bn and is_distributed() and is_main():
        print("sstkd.train: model.sync_bn ignored: SyncBatchNorm needs CUDA; each CPU process "
              "keeps its own BatchNorm statistics", flush=True)
    torch.manual_seed(seed + rk)
    o = cfg.optim
    params = [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                                weight_decay=o.weight_decay, nesterov=o.nesterov)
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    model: nn.Module = distiller

    ckpt = CheckpointManager(out_dir, enabled=is_main())
    start, best, prior_time = 0, -math.inf, 0.0
    loader_gen = torch.Generator()
    if state is not None:
        try:
            distiller.load_state_dict(state["distiller"])
            distiller.load_extra_state(state.get("extra", {}))
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"train: cannot resume from {str(resume)!r}: its weights do not fit "
                             f"the configured model ({first})") from None
        start, best = int(state["step"]), float(state["best_miou"])
        prior_time = float(state.get("train_time_s", 0.0))
        restore_rng_state(state["rng"][rk] if rk < len(state["rng"]) else state["rng"][0])
        if is_main():
            print(f"sstkd.train: resumed from {str(resume)!r} at step {start}", flush=True)
    elif resume is not None:  # from_weights: best_model.pth
        _, info = load_checkpoint(resume, model=distiller.student)
        start = int(info.get("step") or 0)
        best = float(info["miou"]) if info.get("miou") is not None else -math.inf
        if start >= cfg.train.iters:
            raise ValueError(f"train: cannot restart from {str(resume)!r} at step {start} with "
                             f"train.iters={cfg.train.iters}: train.iters must be greater")
        if is_main():
            print(f"sstkd.train: restarting from the student weights of {str(resume)!r} at step "
                  f"{start} (optimizer state, adapters and RNG start fresh)", flush=True)
    del state
    # the schedule always follows the current config, continued at the saved step
    for group in optimizer.param_groups:
        group["initial_lr"] = o.lr
    scheduler = PolyLR(optimizer, cfg.train.iters, o.power, o.warmup_iters, o.warmup_factor,
                       last_epoch=start - 1)
    if is_distributed():
        model = nn.parallel.DistributedDataParallel(
            distiller, device_ids=[device.index] if device.type == "cuda" else None)
    logger = MetricLogger(out_dir, resume_step=start if resume is not None else None,
                          enabled=is_main(), tensorboard=cfg.train.tensorboard)
    if is_main():
        out_dir.mkdir(parents=True, exist_ok=True)

    def batches(step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, offset = divmod(step, steps_per_epoch)
        while True:
            train_ds.set_epoch(epoch)
            sampler.set_epoch(epoch, offset * per_rank)
            loader_gen.manual_seed(seed * 100_003 + epoch)
            yield from DataLoader(train_ds, per_rank, sampler=sampler, drop_last=True,
                                  num_workers=cfg.data.workers, generator=loader_gen,
                                  pin_memory=device.type == "cuda")
            epoch, offset = epoch + 1, 0

    def run_eval(limit: int | None) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            res = evaluate(distiller.student, _Shard(val_ds, limit), cfg.eval.mode,
                           crop_size=cfg.eval.crop_size, stride=cfg.eval.stride, device=device,
                           progress=False)
        distiller.train()
        return res

    def train_time() -> float:
        return prior_time + time.time() - t_start

    def save(step: int, is_best: bool) -> None:
        rng = [capture_rng_state()]
        if is_distributed():
            gathered: list[Any] = [None] * ws
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not is_main():
            return
        kept = ckpt.latest_path if ckpt.latest_path.is_file() else None
        with disk_full_guard(ckpt.latest_path, kept):
            ckpt.save({"step": step, "best_miou": best, "distiller": distiller.state_dict(),
                       "extra": distiller.extra_state(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                       "rng": rng, "config": cfg.to_dict(), "train_time_s": train_time()})
        if is_best:
            with disk_full_guard(out_dir / BEST_MODEL, ckpt.latest_path):
                _export(distiller.student, out_dir / BEST_MODEL, step=step, miou=best)

    stop: dict[str, int] = {}
    on_main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, lambda signum, _: stop.setdefault(
        "signum", signum)) if on_main_thread else None
    try:
        distiller.train()
        bar = tqdm(total=cfg.train.iters, initial=start, desc=name, dynamic_ncols=True,
                   disable=not (progress and is_main()))
        data = batches(start)
        t_loop, n_imgs = time.time(), 0
        for step in range(start + 1, cfg.train.iters + 1):
            image, target = next(data)
            image = image.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(image, return_features=True)
                loss, terms, s_out = model(image, target, t_out)
            names = list(terms)
            stopping = float("signum" in stop)
            reduced = all_reduce_mean(torch.stack([terms[k].detach().float() for k in names] +
                                                  [torch.tensor(stopping, device=loss.device)]))
            logged = dict(zip(names, reduced[:-1].tolist(), strict=True))
            check_finite(logged, step, ckpt.latest_path if ckpt.latest_path.is_file() else None)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if o.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            critic = distiller.critic_step(image, s_out, t_out) if t_out is not None else {}
            n_imgs += image.shape[0] * ws
            ips = n_imgs / max(time.time() - t_loop, 1e-9)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logged.items()} | {"img/s": f"{ips:.1f}"},
                            refresh=False)
            if cfg.train.log_every and (step % cfg.train.log_every == 0 or
                                        step == cfg.train.iters):
                row = {f"loss/{k}": v for k, v in logged.items()} | {"lr": lr, "img_per_s": ips}
                row |= {f"critic/{k}": float(v) for k, v in critic.items()}
                logger.log(step, row)
            is_best = False
            if cfg.train.eval_every and step % cfg.train.eval_every == 0 and \
                    step < cfg.train.iters:
                res = run_eval(cfg.eval.max_images or None)
                logger.log(step, {"val/miou": res["miou"]})
                bar.write(f"[{name}] step {step}: val mIoU {100 * res['miou']:.2f}")
                is_best = res["miou"] > best
                best = max(best, res["miou"])
            if reduced[-1].item() > 0:  # a rank got SIGTERM: every rank checkpoints and stops
                save(step, is_best)
                bar.close()
                logger.close()
                raise TrainingStopped(step, stop.get("signum", signal.SIGTERM),
                                      ckpt.latest_path if is_main() else None)
            if is_best or (cfg.train.ckpt_every and step % cfg.train.ckpt_every == 0):
                save(step, is_best)
        bar.close()
        train_s = train_time()
        # the final model on the whole validation split (a SIGTERM now lets it finish)
        res = run_eval(None)
        logger.log(cfg.train.iters, {"val/miou": res["miou"]})
        is_best = res["miou"] > best
        best = max(best, res["miou"])
        save(cfg.train.iters, is_best)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, old_handler if old_handler is not None else
                          signal.SIG_DFL)
    logger.close()
    result = {
        "name": name, "model": cfg.model.student, "preset": cfg.distill.preset,
        "weights": {k: getattr(cfg.distill.weights, k) for k in LOSS_TERMS},
        "miou": res["miou"], "best_miou": best, "pixel_acc": res["pixel_acc"],
        "iou": dict(zip(res["class_names"], res["iou"], strict=True)),
        "steps": cfg.train.iters, "seed": seed, "world_size": ws,
        "train_time_s": round(train_s, 1), "wall_time_s": round(time.time() - t_start, 1),
        "output_dir": str(out_dir), "checkpoint": str(out_dir / FINAL_MODEL),
    }
    if is_main():
        with disk_full_guard(out_dir / FINAL_MODEL, ckpt.latest_path):
            _export(distiller.student, out_dir / FINAL_MODEL, step=cfg.train.iters,
                    miou=res["miou"])
        plot_curves(logger.csv_path, out_dir / "curves.png")
        if not keep_state:  # a cache entry: final weights, config and results only
            for f in (ckpt.latest_path, out_dir / BEST_MODEL):
                f.unlink(missing_ok=True)
        result["disk_mb"] = folder_mb(out_dir)
        write_results(out_dir / "results.json", {"runs": [result], "config": cfg.to_dict()})
    barrier()
    return result


def _export(student: nn.Module, path: Path, **extra: Any) -> None:
    """Student weights only (adapters and critic dropped), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_checkpoint(tmp, student, **extra)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
