"""Never lose a run: overwrite refusal, the folder lock, resume with changed settings, bad resume
sources, disk use, full disk, SIGTERM, stale temporaries, dataset file errors, CLI exits."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import run, write_config

from sstkd.data.base import DataError
from sstkd.data.camvid import CamVid
from sstkd.engine import (
    CheckpointManager,
    DiskFullError,
    RunLock,
    checkpoint_io,
    evict_lru,
    folder_mb,
    load_checkpoint,
    poly_factor,
)
from sstkd.train import _cli

REPO = Path(__file__).resolve().parents[1]


MNV2 = {"model__student": "pspnet_mobilenetv2", "model__teacher": "pspnet_mobilenetv2"}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> Path:
    """The tiny config with a small model (runs write ~80 MB instead of ~260 MB)."""
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", **MNV2)


@pytest.fixture(scope="module")
def finished(cfg, tmp_path_factory) -> Path:
    """A finished 2-step run (read-only for the tests: copy it before changing it)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    run(cfg, out, "--set", "train.eval_every=1", "--set", "eval.max_images=1")
    return out


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file():
            (dst / p.name).write_bytes(p.read_bytes())
    return dst


def cli(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["sstkd.train", *argv])
    code = _cli()
    return code, capsys.readouterr().err


def lrs(out: Path) -> dict[int, float]:
    with open(out / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f) if r.get("lr")}


# ----------------------------------------------------------------------------- output folder
def test_existing_run_is_refused_not_overwritten(cfg, finished, tmp_path, monkeypatch, capsys):
    out = copy_run(finished, tmp_path / "run")
    before = (out / "latest.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run .*--resume.*--output-dir.*"
                                         "--overwrite"):
        run(cfg, out)
    assert (out / "latest.pt").read_bytes() == before
    code, err = cli(monkeypatch, capsys, "--config", str(cfg), "--output-dir", str(out),
                    "--threads", "1", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "already holds a run" in err
    (out / "stale.txt").write_text("not ours")
    res = run(cfg, out, "--overwrite")["runs"][0]
    assert res["steps"] == 2 and (out / "stale.txt").is_file()
    assert torch.load(out / "best_model.pth", weights_only=True)["step"] == 2  # not the old 1


def test_pipeline_refuses_existing_output(cfg, tmp_path):
    (tmp_path / "p" / "student_kd").mkdir(parents=True)
    (tmp_path / "p" / "student_kd" / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="student_kd' already holds a run"):
        run(cfg, tmp_path / "p", "--pipeline", "--preset", "kd", "--cache-dir",
            str(tmp_path / "cache"))


def test_locked_folder_refuses_second_writer_and_keeps_temporaries(cfg, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    stale = out / ".latest.pt.k9x2.tmp"  # what kill -9 during atomic_save leaves
    stale.write_bytes(b"partial")
    foreign = out / "notes.tmp"
    foreign.write_text("someone else's")
    with RunLock(out):
        with pytest.raises(ValueError, match=rf"being written by another run \(pid "
                                             rf"{os.getpid()}"):
            run(cfg, out, "--resume", "--set", "train.iters=3")
        assert stale.exists()  # a live writer's temporaries are never touched
    res = run(cfg, out, "--resume", "--set", "train.iters=3")["runs"][0]
    assert res["steps"] == 3 and not stale.exists() and foreign.exists()


def test_output_path_that_is_a_file(cfg, tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("x")
    code, err = cli(monkeypatch, capsys, "--config", str(cfg), "--output-dir",
                    str(tmp_path / "f"), "--threads", "1")
    assert code == 2 and "is a file, expected a folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, match", [
    (["--threads", "0"], "--threads expected an int >= 1, got 0"),
    (["--set", "train.iters=0"], "'train.iters' expected >= 1, got 0"),
])
def test_small_cli_errors(argv, match, cfg, tmp_path, monkeypatch, capsys):
    code, err = cli(monkeypatch, capsys, "--config", str(cfg), "--output-dir",
                    str(tmp_path / "o"), *argv)
    assert code == 2 and match in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- resume
def test_resume_with_more_iters_and_new_lr_follows_the_new_schedule(cfg, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    res = run(cfg, out, "--resume", "--set", "train.iters=4", "--set", "optim.lr=0.02")
    assert res["runs"][0]["steps"] == 4
    got = lrs(out)
    for step in (3, 4):  # the LR logged at a step is the one it trained with
        assert got[step] == pytest.approx(0.02 * poly_factor(step - 1, 4, 0.9, 1, 0.1),
                                          rel=1e-5)
    assert got[4] > 0
    assert CheckpointManager(out).load_latest()["step"] == 4


@pytest.mark.parametrize("extra, match", [
    (["--set", "train.iters=1", "--set", "optim.warmup_iters=0"],
     "train.iters must be greater than the saved step"),
    (["--set", "data.batch_size=4", "--set", "data.crop_size=[24,24]"],
     r"data.batch_size: 2 -> 4; data.crop_size: \[32, 32\] -> \[24, 24\]"),
    (["--preset", "kd", "TEACHER"], "distill.preset: 'baseline' -> 'kd'"),
])
def test_resume_refuses_fixed_changes(extra, match, cfg, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    if "TEACHER" in extra:
        extra = [*extra[:-1], "--teacher-checkpoint", str(out / "final_model.pth")]
    before = (out / "latest.pt").read_bytes()
    with pytest.raises(ValueError, match=match):
        run(cfg, out, "--resume", *extra)
    assert (out / "latest.pt").read_bytes() == before


def test_bad_resume_sources(cfg, finished, tmp_path, monkeypatch, capsys):
    out = copy_run(finished, tmp_path / "run")
    latest = out / "latest.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"latest.pt'.*truncated.*--resume best"):
        run(cfg, out, "--resume", "--set", "train.iters=3")
    code, err = cli(monkeypatch, capsys, "--config", str(cfg), "--output-dir", str(out),
                    "--threads", "1", "--resume", "--set", "train.iters=3")
    assert code == 2 and err.count("\n") == 1 and "latest.pt" in err
    with pytest.raises(ValueError, match="final_model.pth'.*weights only"):
        run(cfg, out, "--resume", str(out / "final_model.pth"), "--set", "train.iters=3")
    best_step = torch.load(out / "best_model.pth", weights_only=True)["step"]
    res = run(cfg, out, "--resume", "best", "--set", "train.iters=3")["runs"][0]
    assert res["steps"] == 3
    assert min(lrs(out)) > 0 and best_step in (1, 2)


def test_train_time_accumulates_over_resumes(cfg, finished, tmp_path):
    out = copy_run(finished, tmp_path / "run")
    first = CheckpointManager(out).load_latest()["train_time_s"]
    res = run(cfg, out, "--resume", "--set", "train.iters=3")["runs"][0]
    assert first > 0 and res["train_time_s"] >= round(first, 1)


# ----------------------------------------------------------------------------- disk
def test_one_full_state_per_run_and_disk_report(finished):
    names = {p.name for p in finished.iterdir()}
    assert {"latest.pt", "best_model.pth", "final_model.pth", "results.json"} <= names
    assert "best.pt" not in names
    best = torch.load(finished / "best_model.pth", weights_only=True)
    assert "optimizer" not in best and "model" in best
    saved = json.loads((finished / "results.json").read_text())
    assert saved["runs"][0]["disk_mb"] == pytest.approx(folder_mb(finished), abs=0.1)
    assert saved["config"]["train"]["iters"] == 2


def test_teacher_cache_keeps_weights_only_and_is_bounded(cfg, tmp_path):
    cache = tmp_path / "cache"
    res = run(cfg, tmp_path / "p", "--pipeline", "--preset", "kd", "--cache-dir", str(cache))
    (entry,) = (cache / "teachers").iterdir()
    assert sorted(p.name for p in entry.iterdir() if not p.name.startswith(".")) == [
        "curves.png", "final_model.pth", "metrics.csv", "results.json"]
    assert res["disk_mb"] == pytest.approx(folder_mb(tmp_path / "p"), abs=0.1)
    assert res["teacher_cache_mb"] == pytest.approx(folder_mb(cache / "teachers"), abs=0.1)
    # LRU eviction: oldest first, never the entry in use or a locked one
    root = tmp_path / "lru"
    for i, name in enumerate(["old", "locked", "mid", "new"]):
        (root / name).mkdir(parents=True)
        (root / name / "w.bin").write_bytes(b"\0" * 400_000)
        os.utime(root / name, (1000 + i, 1000 + i))
    with RunLock(root / "locked"):
        gone = evict_lru(root, max_mb=1.3, keep=root / "old")
    assert [p.name for p in gone] == ["mid"]
    assert sorted(p.name for p in root.iterdir()) == ["locked", "new", "old"]


def test_full_disk_keeps_the_previous_checkpoint(cfg, tmp_path, monkeypatch, capsys):
    original = checkpoint_io.atomic_save

    def full_at_step_2(obj, path):
        if obj.get("step") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(obj, path)

    monkeypatch.setattr(checkpoint_io, "atomic_save", full_at_step_2)
    out = tmp_path / "run"
    with pytest.raises(DiskFullError, match=r"disk is full.*latest.pt' is kept.*--resume"):
        run(cfg, out, "--set", "train.ckpt_every=1")
    assert load_checkpoint(out / "latest.pt")["step"] == 1
    code, err = cli(monkeypatch, capsys, "--config", str(cfg), "--output-dir", str(out),
                    "--threads", "1", "--no-progress", "--resume")
    assert code == 1 and err.count("\n") == 1 and "disk is full" in err


# ----------------------------------------------------------------------------- SIGTERM
def test_sigterm_writes_a_checkpoint_and_resume_finishes(cfg, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sstkd.train", "--config", str(cfg), "--output-dir", str(out),
         "--threads", "1", "--no-progress", "--set", "train.iters=500"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        csv_path = out / "metrics.csv"
        if csv_path.is_file() and csv_path.read_text().count("\n") >= 2:  # header + step 1
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal 15" in err and "Traceback" not in err
    step = load_checkpoint(out / "latest.pt")["step"]
    assert 1 <= step < 500
    res = run(cfg, out, "--resume", "--set", f"train.iters={step + 1}")["runs"][0]
    assert res["steps"] == step + 1 and (out / "final_model.pth").is_file()


# ----------------------------------------------------------------------------- data
def _camvid(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2):
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                root / split / f"{i}.png")
            Image.fromarray(rng.integers(0, 11, (32, 32), dtype=np.uint8)).save(
                root / f"{split}annot" / f"{i}.png")
    return root


def test_corrupt_image_names_the_file(tmp_path, monkeypatch, capsys):
    root = _camvid(tmp_path / "camvid")
    bad = root / "train" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    ds = CamVid(root, "train")
    ds[0]
    with pytest.raises(DataError, match=r"camvid: cannot read image file '.*1.png' \(sample 1\)"):
        ds[1]
    config = write_config(tmp_path / "c.yaml", data__dataset="camvid", data__root=str(root),
                          data__num_classes=11, **MNV2)
    code, err = cli(monkeypatch, capsys, "--config", str(config), "--output-dir",
                    str(tmp_path / "o"), "--threads", "1", "--no-progress", "--set",
                    "data.workers=1")  # raised in a DataLoader worker, re-raised here
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("sstkd.train: error: camvid: cannot read image file ") and "1.png" in err


def test_crop_larger_than_images_warns(tmp_path):
    config = write_config(tmp_path / "c.yaml", data__crop_size=[40, 32], **MNV2)
    with pytest.warns(UserWarning, match=r"crop_size \[40, 32\] is larger than the training "
                                         r"images \(32x32"):
        run(config, tmp_path / "o")
