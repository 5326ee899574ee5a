"""Engine: atomic checkpoints, RNG round trip, poly schedule, exact resume, logs, guards."""

from __future__ import annotations

import csv
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from sstkd.engine import (
    CheckpointManager,
    CSVLogger,
    MetricLogger,
    NonFiniteLossError,
    PolyLR,
    all_reduce_mean,
    atomic_save,
    barrier,
    capture_rng_state,
    check_finite,
    convert_sync_bn,
    init_distributed,
    is_main,
    load_checkpoint,
    plot_curves,
    poly_factor,
    read_csv,
    restore_rng_state,
    world_size,
)


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("boom while writing")


# ----------------------------------------------------------------------------- checkpoints
def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "latest.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="boom while writing"):
        atomic_save({"w": torch.zeros(1000), "bad": _Unpicklable()}, path)
    assert load_checkpoint(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["latest.pt"]  # no temporary file left behind
    with pytest.raises(RuntimeError):
        atomic_save({"bad": _Unpicklable()}, tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()


def test_checkpoint_manager_latest_and_best(tmp_path):
    mgr = CheckpointManager(tmp_path / "run")
    mgr.save({"step": 1}, is_best=True)
    mgr.save({"step": 2})
    assert mgr.load_latest()["step"] == 2 and mgr.load_best()["step"] == 1
    CheckpointManager(tmp_path / "off", enabled=False).save({"step": 1})
    assert not (tmp_path / "off").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_rng_round_trip_through_a_file(tmp_path):
    g = torch.Generator().manual_seed(3)
    torch.rand(5, generator=g)
    atomic_save({"rng": capture_rng_state({"sampler": g})}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(3), torch.rand(3), torch.rand(3, generator=g))
    random.random(), np.random.rand(7), torch.rand(9), torch.rand(2, generator=g)  # advance
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], {"sampler": g})
    got = (random.random(), np.random.rand(3), torch.rand(3), torch.rand(3, generator=g))
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])
    with pytest.raises(ValueError, match="no state for generator 'other'"):
        restore_rng_state(capture_rng_state(), {"other": g})


# ----------------------------------------------------------------------------- schedule
def test_poly_factor_by_hand():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, power=0.9) == pytest.approx(0.5 ** 0.9)
    assert poly_factor(75, 100, power=2.0) == pytest.approx(0.0625)
    assert poly_factor(100, 100) == 0.0 and poly_factor(150, 100) == 0.0
    # warm-up over 10 steps from 0.1: step 5 -> (0.1 + 0.9 * 0.5) * (1 - 5/100)^1
    assert poly_factor(5, 100, 1.0, 10, 0.1) == pytest.approx(0.55 * 0.95)
    assert poly_factor(10, 100, 1.0, 10, 0.1) == pytest.approx(0.9)


def test_poly_lr_scheduler_values_and_state():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = PolyLR(opt, max_iters=10, power=1.0, warmup_iters=2, warmup_factor=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.005, 0.01 * 0.75 * 0.9, 0.008, 0.007])
    state = sched.state_dict()
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched2 = PolyLR(opt2, max_iters=10, power=1.0, warmup_iters=2, warmup_factor=0.5)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 4 and sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="warmup_iters must be an int in"):
        PolyLR(opt, max_iters=10, warmup_iters=10)


# ----------------------------------------------------------------------------- exact resume
def _make(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = PolyLR(opt, max_iters=20, power=0.9, warmup_iters=3)
    return model, opt, sched, torch.Generator().manual_seed(seed)


def _train(model, opt, sched, gen, start, stop, data):
    losses = []
    for _ in range(start, stop):
        idx = torch.randint(0, data.shape[0], (6,), generator=gen)  # the "sampler"
        noise = np.random.randn() * 1e-3 + random.random() * 1e-3  # numpy / python RNG use
        x = data[idx] + torch.randn(6, 4) * 0.1  # torch global RNG (augmentation, dropout)
        loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean() + noise
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_resume_gives_identical_loss_trajectory(tmp_path):
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    random.seed(0), np.random.seed(0)
    model, opt, sched, gen = _make(0)
    full = _train(model, opt, sched, gen, 0, 20, data)

    random.seed(0), np.random.seed(0)
    model, opt, sched, gen = _make(0)
    first = _train(model, opt, sched, gen, 0, 8, data)
    CheckpointManager(tmp_path).save({
        "step": 8, "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "rng": capture_rng_state({"sampler": gen}),
    })
    random.seed(99), np.random.seed(99)  # a fresh process: different objects and RNG states
    model, opt, sched, gen = _make(123)
    ckpt = CheckpointManager(tmp_path).load_latest()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    restore_rng_state(ckpt["rng"], {"sampler": gen})
    rest = _train(model, opt, sched, gen, ckpt["step"], 20, data)
    assert first + rest == full


# ----------------------------------------------------------------------------- logs
def test_csv_logger_columns_and_resume_truncation(tmp_path):
    path = tmp_path / "m.csv"
    log = CSVLogger(path)
    for step in (10, 20, 30):
        log.log(step, {"loss/total": torch.tensor(1.0 / step), "lr": 0.01})
    log.log(30, {"val/miou": 0.5})  # a new column extends the header
    log = CSVLogger(path, resume_step=20)  # resumed from the step-20 checkpoint
    log.log(30, {"loss/total": 0.25})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["10", "20", "30"]
    assert rows[-1]["loss/total"] == "0.25" and rows[-1]["val/miou"] == ""
    assert read_csv(path)["loss/total"][:2] == [(10, 0.1), (20, 0.05)]
    CSVLogger(path)  # a new run starts a new file
    assert read_csv(path) == {}


def test_metric_logger_and_plot(tmp_path, capsys):
    logger = MetricLogger(tmp_path, tensorboard=True)
    for step in range(1, 6):
        logger.log(step, {"loss/seg": 1.0 / step, "loss/pi": 0.5 / step, "lr": 0.01 / step})
    logger.log(5, {"val/miou": 0.42})
    logger.close()
    png = plot_curves(logger.csv_path, tmp_path / "plots" / "curves.png")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    MetricLogger(tmp_path / "off", enabled=False).log(1, {"loss": 1.0})
    assert not (tmp_path / "off").exists()


# ----------------------------------------------------------------------------- guards
def test_nan_guard_names_step_and_terms():
    check_finite({"seg": torch.tensor(1.0), "pi": 0.5}, step=3)
    with pytest.raises(NonFiniteLossError) as info:
        check_finite({"seg": torch.tensor(1.0), "pi": torch.tensor(float("nan")),
                      "sta": float("inf")}, step=1234, checkpoint="runs/x/latest.pt")
    msg = str(info.value)
    assert "step 1234" in msg and "pi=nan" in msg and "sta=inf" in msg and "seg" not in msg
    assert "runs/x/latest.pt" in msg and info.value.step == 1234


# ----------------------------------------------------------------------------- distributed
def test_single_process_distributed_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert is_main() and world_size() == 1
    barrier()
    x = torch.tensor([1.0, 3.0])
    assert all_reduce_mean(x) is x
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert convert_sync_bn(model) is model
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="start with torchrun"):
        init_distributed()


def _two_rank_worker(rank_: int, port: int, out_dir: str) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank_), LOCAL_RANK=str(rank_),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from sstkd.engine import cleanup
    from sstkd.losses import HolisticAdversary

    init_distributed()
    try:
        mean = all_reduce_mean(torch.tensor([float(rank_), 2.0 * rank_]))
        torch.manual_seed(0)  # same critic on both ranks, different data per rank
        adv = HolisticAdversary(3, base_channels=4, num_layers=1, use_image=False)
        torch.manual_seed(1 + rank_)
        adv.critic_step(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
        barrier()
        params = torch.cat([p.detach().flatten() for p in adv.discriminator.parameters()])
        torch.save({"mean": mean, "main": is_main(), "params": params},
                   os.path.join(out_dir, f"rank{rank_}.pt"))
    finally:
        cleanup()


@pytest.mark.slow
def test_two_process_gloo(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # spawn, not fork: a forked child can hang in an OpenMP pool the parent already used
    mp.spawn(_two_rank_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in (0, 1))
    assert torch.equal(r0["mean"], torch.tensor([0.5, 1.0])) and torch.equal(r1["mean"],
                                                                              r0["mean"])
    assert r0["main"] and not r1["main"]
    assert torch.equal(r0["params"], r1["params"])  # critic gradients were averaged


# ----------------------------------------------------------------------------- run folders
def test_run_lock_held_by_another_process(tmp_path):
    import subprocess
    import sys

    from sstkd.engine import RunLock

    code = ("import sys, time; from sstkd.engine.run_files import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"another run \(pid {proc.pid}, lock"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()  # like kill -9: the kernel drops the lock, the stale file does not block
        proc.wait()
    with RunLock(tmp_path) as lock:
        assert lock.held and (tmp_path / ".sstkd.lock").read_text().strip() == str(os.getpid())


def test_check_resume_names_each_fixed_difference():
    from sstkd.engine import check_resume

    old = {"train": {"iters": 60, "seed": 0}, "optim": {"lr": 0.01},
           "data": {"batch_size": 8, "crop_size": [64, 64]}}
    new = {"train": {"iters": 70, "seed": 0}, "optim": {"lr": 0.005},
           "data": {"batch_size": 8, "crop_size": [64, 64]}}
    changed = check_resume("latest.pt", old, new, step=60)
    assert changed == [("optim.lr", 0.01, 0.005), ("train.iters", 60, 70)]
    bad = {**new, "data": {"batch_size": 4, "crop_size": [32, 32]}}
    with pytest.raises(ValueError, match=r"data.batch_size: 8 -> 4; data.crop_size: "
                                         r"\[64, 64\] -> \[32, 32\]"):
        check_resume("latest.pt", old, bad, step=60)
    for iters in (50, 60):  # at or below the saved step (saved run: 60 of 70 steps)
        with pytest.raises(ValueError, match=f"train.iters={iters}: train.iters must be greater"):
            check_resume("latest.pt", new, {**new, "train": {"iters": iters, "seed": 0}}, 60)
    assert check_resume("latest.pt", old, old, step=60) == []  # a finished run, unchanged
