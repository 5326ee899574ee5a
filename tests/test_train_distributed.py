"""``torchrun --nproc_per_node=2`` (gloo, CPU) runs the same training command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist
from test_train import write_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_torchrun_two_processes(tmp_path):
    from sstkd.models import build_model, save_checkpoint

    teacher = tmp_path / "teacher.pth"
    save_checkpoint(teacher, build_model("pspnet_resnet18", num_classes=4))
    # batch 4 = 2 per rank (BatchNorm needs more than one value per channel)
    config = write_config(tmp_path / "tiny.yaml", data__batch_size=4, model__sync_bn=True,
                          train__eval_every=1)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "-m", "sstkd.train", "--config", str(config),
           "--preset", "sstkd", "--teacher-checkpoint", str(teacher), "--output-dir", str(out),
           "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["world_size"] == 2 and run["steps"] == 2
    assert len(json.loads(json.dumps(run))["iou"]) == 4
