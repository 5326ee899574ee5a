"""The prepared GPU command ``scripts/gpu_run.py``: its CPU dry run end to end (every phase
must pass, judged from summary.json, not the exit code), what it returns, and its CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_run.py"
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TRITON_INTERPRET="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_earlier_results_and_foreign_work_folders_are_kept(tmp_path):
    out, work = tmp_path / "o", tmp_path / "w"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    proc = _run("--out", str(out), "--work", str(work), timeout=60)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (out / "summary.json").read_text() == "{}"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    proc = _run("--out", str(tmp_path / "o2"), "--work", str(mine), timeout=60)
    assert proc.returncode == 2 and "did not create" in proc.stderr
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid not found at {CAMVID}")
def test_dry_run_every_phase_passes_and_returns_at_most_8_small_files(tmp_path):
    out = tmp_path / "out"
    proc = _run("--dry-run", "--out", str(out), "--work", str(tmp_path / "work"))
    summary = json.loads((out / "summary.json").read_text())
    statuses = {r["name"]: r["status"] for r in summary["phases"]}
    failed = {r["name"]: r["notes"] for r in summary["phases"] if r["status"] != "pass"}
    assert statuses == dict.fromkeys(("build", "parity", "speed", "train", "camvid"), "pass"), \
        json.dumps(failed, indent=1)[-6000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary["dry_run"] is True
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size < 16 * 2**20 for f in files)
    assert "| 2 parity | pass |" in (out / "summary.md").read_text()
    parity = json.loads((out / "gpu_parity.json").read_text())
    assert parity["disable"] == [] and len(parity["cases"]) == parity["cases_planned"] > 0
    assert all(c["ok"] for c in parity["cases"])
    camvid = json.loads((out / "camvid_results.json").read_text())
    assert "JPEG" in camvid["images"] and set(camvid["runs"]) == {"teacher", "sstkd"}
    with tarfile.open(out / "gpu_run.tar.gz") as tar:
        names = tar.getnames()
    assert "gpu_run/speed/texture_stats.csv" in names
    assert not any(n.endswith((".pt", ".pth")) for n in names)


@pytest.mark.parametrize("args, statuses", [
    (["--budget", "train=6"], ("timeout", "fail")),  # too short for the step benchmark
    (["--total", "10"], ("not run",)),                # no time left for the phase at all
])
def test_a_phase_that_cannot_finish_is_reported_and_fails_the_run(tmp_path, args, statuses):
    out = tmp_path / "out"
    proc = _run("--dry-run", "--phases", "4", *args, "--out", str(out), "--work",
                str(tmp_path / "work"))
    phases = json.loads((out / "summary.json").read_text())["phases"]
    assert [p["name"] for p in phases] == ["train"]
    assert phases[0]["status"] in statuses and proc.returncode == 1
    assert f"| 4 train | {phases[0]['status']} |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("args, words", [
    (["--phases", "2,9"], ["--phases", "'2,9'"]),
    (["--phases", "x"], ["--phases", "'x'"]),
    (["--budget", "speed"], ["--budget", "PHASE=SECONDS", "'speed'"]),
    (["--budget", "gpu=3"], ["--budget", "'gpu=3'"]),
    (["--budget", "speed=-1"], ["--budget", "'speed=-1'"]),
])
def test_bad_arguments_exit_2_with_one_line(args, words, tmp_path):
    proc = _run(*args, "--out", str(tmp_path / "o"), "--work", str(tmp_path / "w"), timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_run: error:")
    assert all(w in lines[0] for w in words)


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid not found at {CAMVID}")
def test_camvid_pack_loads_with_the_dataset_class_and_says_it_is_re_encoded(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import pack_camvid

    info = pack_camvid.pack(CAMVID, tmp_path / "pack", limit=1)
    assert info["counts"] == {"train": 1, "val": 1} and "JPEG" in info["images"]
    assert {p.suffix for p in (tmp_path / "pack" / "train").iterdir()} == {".jpg"}
    check = pack_camvid.check(tmp_path / "pack")
    assert check["val"] == {"samples": 1, "image": [3, 360, 480], "label": [360, 480]}
    assert pack_camvid.main(["--src", str(CAMVID), "--dst", str(tmp_path / "p2"),
                             "--quality", "0"]) == 2
    again = pack_camvid.pack(CAMVID, tmp_path / "pack", limit=1)  # an earlier pack: replaced
    assert again["counts"] == info["counts"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="holds other files"):
        pack_camvid.pack(CAMVID, tmp_path / "mine", limit=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_parity_phase_and_its_cases_name_the_same_ops():
    sys.path.insert(0, str(REPO))
    from scripts.gpu_phases import parity, parity_cases

    assert parity.OPS == parity_cases.OPS


def test_a_case_whose_worker_died_counts_as_failed_and_is_disabled(tmp_path):
    sys.path.insert(0, str(REPO))
    from scripts.gpu_phases import parity

    done = {"key": "parity|qco_1d|float32|2x5x19x23|0", "kind": "parity", "op": "qco_1d",
            "backend": "cuda", "ok": True}
    lines = [{"key": done["key"], "started": True}, done,
             {"key": "parity|pdfb_dec|float64|2x3x32x48|0", "started": True}]
    (tmp_path / "cases_cuda.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "cases_triton.jsonl").write_text("")
    records, failed, _, planned = parity.write_parity(tmp_path, ["cuda", "triton"], False, {})
    assert [r["ok"] for r in records] == [True, False]
    assert "died or hung" in records[1]["error"]
    assert failed == ["cuda:pdfb_dec"] and planned > len(records)
    saved = json.loads((tmp_path / "gpu_parity.json").read_text())
    assert saved["SSTKD_DISABLE"] == "cuda:pdfb_dec"
