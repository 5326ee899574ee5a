"""``python -m sstkd.visualize``: texture panels and PNG output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sstkd.models import build_model, save_checkpoint
from sstkd.visualize import main, texture_panels


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("vis_ckpt")
    torch.manual_seed(0)
    save_checkpoint(d / "teacher.pth", build_model("pspnet_resnet18", num_classes=4))
    save_checkpoint(d / "student.pth", build_model("pspnet_resnet18", num_classes=4))
    return d / "teacher.pth", d / "student.pth"


def test_texture_panels_shapes():
    model = build_model("pspnet_resnet18", num_classes=3)
    p = texture_panels(model, torch.randn(3, 40, 40), nlevs=(2, 2), num_levels=8)
    assert p["pred"].shape == (40, 40)
    assert p["q"].shape == (10, 10) and 0 <= p["q"].min() and p["q"].max() <= 1
    assert [t for t, _ in p["bands"]][:2] == ["low-pass", "L0 d0"]
    assert len(p["bands"]) == 1 + 4 + 4  # low-pass + two levels of 4 directions
    with pytest.raises(ValueError, match="tap 'layer7' is not a feature"):
        texture_panels(model, torch.randn(3, 32, 32), tap="layer7")


def test_cli_dataset_and_files(checkpoints, tmp_path):
    teacher, student = checkpoints
    out = main(["--teacher", str(teacher), "--student", str(student), "--dataset", "synthetic",
                "--num-images", "1", "--synthetic-size", "32", "--out-dir", str(tmp_path)])
    assert len(out) == 1 and out[0].suffix == ".png"
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 60, 3), np.uint8)).save(img)
    (png,) = main(["--teacher", str(teacher), "--student", str(student), "--images", str(img),
                   "--size", "32", "32", "--out-dir", str(tmp_path / "files")])
    with Image.open(png) as im:
        assert im.width > im.height > 100
