"""The training CLI: every preset for a few steps, exact resume, NaN guard, bad configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from sstkd.config import PRESETS
from sstkd.engine import CheckpointManager, NonFiniteLossError
from sstkd.models import build_model, load_checkpoint, save_checkpoint
from sstkd.train import main

TINY = {
    "model": {"teacher": "pspnet_resnet18", "student": "pspnet_resnet18", "output_stride": 8},
    "data": {"dataset": "synthetic", "num_classes": 4, "image_size": 32, "crop_size": [32, 32],
             "scale_range": [1.0, 1.0], "batch_size": 2, "workers": 0, "train_length": 8,
             "val_length": 2},
    "optim": {"lr": 0.01, "warmup_iters": 1},
    "train": {"iters": 2, "teacher_iters": 2, "eval_every": 0, "ckpt_every": 0, "log_every": 1,
              "amp": False, "deterministic": True, "tensorboard": False},
    "eval": {"mode": "whole"},
    "distill": {"preset": "baseline", "texture": {"nlevs": [2, 2], "num_levels": 8}},
}


def write_config(path: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        section, name = key.split("__")
        cfg[section][name] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml")


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """An untrained teacher is enough to exercise every loss term."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    save_checkpoint(path, build_model("pspnet_resnet18", num_classes=4))
    return path


def run(config: Path, out: Path, *extra: str) -> dict:
    return main(["--config", str(config), "--output-dir", str(out), "--threads", "1",
                 "--no-progress", *extra])


def losses(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k.startswith("loss/") or k == "step"}
                for r in csv.DictReader(f) if r.get("loss/total")]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains(preset, tiny_config, teacher_ckpt, tmp_path):
    out = tmp_path / preset
    result = run(tiny_config, out, "--preset", preset, "--teacher-checkpoint", str(teacher_ckpt))
    (r,) = result["runs"]
    assert r["preset"] == preset and r["steps"] == 2 and 0 <= r["miou"] <= 1
    saved = json.loads((out / "results.json").read_text())["runs"][0]
    assert set(saved) >= {"preset", "miou", "iou", "steps", "wall_time_s"}
    assert len(saved["iou"]) == 4
    rows = losses(out)
    assert [int(r["step"]) for r in rows] == [1, 2]
    for term in PRESETS[preset]:
        assert rows[0][f"loss/{term}"] != ""
    assert (out / "curves.png").is_file() and (out / "latest.pt").is_file()
    model, _ = load_checkpoint(out / "final_model.pth")  # student only, adapters dropped
    assert model.name == "pspnet_resnet18"
    state = CheckpointManager(out).load_latest()
    assert {"distiller", "optimizer", "scheduler", "rng", "config", "step"} <= set(state)
    if "ho" in PRESETS[preset]:
        assert {"discriminator", "discriminator_optimizer"} <= set(state["extra"])
    if "str" in PRESETS[preset] or "sta" in PRESETS[preset]:
        assert any(k.startswith("texture.adapters.") for k in state["distiller"])


def test_resume_continues_exactly(tiny_config, teacher_ckpt, tmp_path, monkeypatch):
    args = ("--preset", "sstkd", "--teacher-checkpoint", str(teacher_ckpt), "--set",
            "train.iters=4", "--set", "train.ckpt_every=2")
    run(tiny_config, tmp_path / "full", *args)

    original = CheckpointManager.save

    def save_then_crash(self, state, is_best=False):
        original(self, state, is_best)
        if state["step"] == 2:
            raise KeyboardInterrupt  # simulated interruption right after the step-2 checkpoint

    monkeypatch.setattr(CheckpointManager, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config, tmp_path / "resumed", *args)
    monkeypatch.setattr(CheckpointManager, "save", original)
    run(tiny_config, tmp_path / "resumed", *args, "--resume")

    assert losses(tmp_path / "resumed") == losses(tmp_path / "full")
    a = CheckpointManager(tmp_path / "full").load_latest()["distiller"]
    b = CheckpointManager(tmp_path / "resumed").load_latest()["distiller"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_nan_guard_keeps_last_good_checkpoint(tiny_config, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step") as err:
        run(tiny_config, out, "--set", "optim.lr=1e30", "--set", "optim.warmup_iters=0",
            "--set", "train.iters=5", "--set", "train.ckpt_every=1")
    assert "latest.pt" in str(err.value)
    assert CheckpointManager(out).load_latest()["step"] == err.value.step - 1


def test_pipeline_caches_teacher(tiny_config, tmp_path):
    args = ("--pipeline", "--preset", "kd", "--cache-dir", str(tmp_path / "cache"))
    first = run(tiny_config, tmp_path / "a", *args)
    assert [r["name"] for r in first["runs"]] == ["teacher", "student_kd", "student_baseline"]
    second = run(tiny_config, tmp_path / "b", *args)
    assert second["runs"][0].get("reused") and not second["runs"][1].get("reused")
    summary = json.loads((tmp_path / "b" / "results.json").read_text())
    assert len(summary["runs"]) == 3


@pytest.mark.parametrize("overrides, match", [
    (["--set", "optim.momentm=0.9"], "unknown key 'optim.momentm'"),
    (["--set", "optim.lr=fast"], "optim.lr' expected float"),
    (["--set", "data.dataset=camvid", "--set", "data.root=/nonexistent/camvid"],
     "data.root' expected an existing directory"),
    (["--preset", "kd"], "model.teacher_checkpoint' is required"),
    (["--preset", "sstkd", "--set", "distill.texture.taps=[layer9]", "TEACHER"],
     "taps feature 'layer9'"),
    (["--preset", "cwd", "--set", "distill.cwd_tap=layer1", "MOBILENET_TEACHER"],
     "CWD at tap 'layer1' needs equal channel counts"),
])
def test_bad_configs_fail_early(overrides, match, tiny_config, teacher_ckpt, tmp_path):
    args = []
    for a in overrides:
        if a == "TEACHER":
            args += ["--teacher-checkpoint", str(teacher_ckpt)]
        elif a == "MOBILENET_TEACHER":
            path = tmp_path / "mnv2.pth"
            save_checkpoint(path, build_model("pspnet_mobilenetv2", num_classes=4))
            args += ["--teacher-checkpoint", str(path), "--set", "model.teacher=pspnet_mobilenetv2"]
        else:
            args.append(a)
    with pytest.raises(ValueError, match=match):
        run(tiny_config, tmp_path / "bad", *args)
    assert not (tmp_path / "bad" / "latest.pt").exists()  # nothing was trained


def test_pipeline_teacher_does_not_load_the_students_backbone(tmp_path):
    """``--pretrained`` holds the student's ImageNet backbone; the pipeline's teacher (another
    depth) trains without it instead of failing on a strict load."""
    from sstkd.models import ResNet

    weights = tmp_path / "resnet18.pth"
    torch.save(ResNet(18).state_dict(), weights)
    config = write_config(tmp_path / "cfg.yaml", model__teacher="pspnet_resnet34")
    res = run(config, tmp_path / "out", "--pipeline", "--preset", "kd", "--no-cache",
              "--pretrained", str(weights))
    assert [r["name"] for r in res["runs"]] == ["teacher", "student_kd", "student_baseline"]


def test_pipeline_with_a_given_teacher(tiny_config, teacher_ckpt, tmp_path):
    res = run(tiny_config, tmp_path / "out", "--pipeline", "--preset", "kd",
              "--teacher-checkpoint", str(teacher_ckpt))
    assert [r["name"] for r in res["runs"]] == ["teacher", "student_kd", "student_baseline"]
    assert res["runs"][0]["preset"] == "given" and 0 <= res["runs"][0]["miou"] <= 1


def test_pipeline_compares_presets_from_one_teacher(tiny_config, tmp_path, capsys):
    args = ("--pipeline", "--preset", "sstkd", "--cache-dir", str(tmp_path / "cache"))
    res = run(tiny_config, tmp_path / "a", *args, "--set", "train.compare_presets=[kd,baseline]")
    names = [r["name"] for r in res["runs"]]
    assert names == ["teacher", "student_sstkd", "student_kd", "student_baseline"]
    table = capsys.readouterr().out
    m = {r["name"]: 100 * r["miou"] for r in res["runs"]}
    for name in ("student_sstkd", "student_kd"):  # the delta column, against the student alone
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
        assert f"| {m[name] - m['student_baseline']:+.2f} |" in row
    assert res["finding"].startswith(f"The sstkd student reaches {m['student_sstkd']:.2f} mIoU")
    assert f"against kd ({m['student_kd']:.2f})" in res["finding"]
    # the comparison list is not part of the teacher's cache key
    again = run(tiny_config, tmp_path / "b", *args)
    assert again["runs"][0].get("reused")
    assert [r["name"] for r in again["runs"]] == ["teacher", "student_sstkd", "student_baseline"]


def test_describe_runs_by_hand():
    from sstkd.engine.pipeline import describe_runs

    runs = [{"name": "teacher", "miou": 0.6}, {"name": "student_sstkd", "miou": 0.45},
            {"name": "student_kd", "miou": 0.44}, {"name": "student_baseline", "miou": 0.40}]
    text = describe_runs(runs, "sstkd")
    assert text.startswith("The sstkd student reaches 45.00 mIoU, +5.00 against the same "
                           "student trained alone (40.00: better than it), +1.00 against kd "
                           "(44.00); the teacher it learns from is at 60.00 (+20.00 over the "
                           "student alone).")
    runs[1]["miou"] = 0.39
    assert "(40.00: not better than it)" in describe_runs(runs, "sstkd")
