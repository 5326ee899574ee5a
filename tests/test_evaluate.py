"""Inference modes, the evaluate() loop and the ``python -m sstkd.evaluate`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sstkd.data import build_dataset
from sstkd.evaluate import evaluate, main
from sstkd.inference import predict_multiscale, predict_slide, predict_whole
from sstkd.models import build_model, save_checkpoint
from sstkd.visualize_pred import colorize, make_palette

REPO = Path(__file__).resolve().parents[1]
CAMVID_REAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"


class PointwiseModel(nn.Module):
    """A 1x1 conv: its output at a pixel depends only on that pixel."""

    def __init__(self, k: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, k, 1)

    def forward(self, x):
        return self.conv(x)


class PositionModel(nn.Module):
    """Logit 0 = the window-relative row index: tells windows apart."""

    def forward(self, x):
        b, _, h, w = x.shape
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        return torch.cat([rows, torch.zeros_like(rows)], 1)


def test_slide_equals_whole_for_pointwise_model() -> None:
    m = PointwiseModel().eval()
    x = torch.randn(2, 3, 37, 53)
    whole = predict_whole(m, x)
    for crop, stride in [(16, 8), ((20, 24), (7, 11)), (64, 64)]:  # incl. crop > image
        torch.testing.assert_close(predict_slide(m, x, 4, crop, stride), whole)


def test_slide_averages_overlaps() -> None:
    x = torch.zeros(1, 3, 6, 1)
    out = predict_slide(PositionModel(), x, 2, crop_size=(4, 1), stride=(2, 1))
    # windows at rows 0..3 and 2..5: rows 2,3 are the average of (2, 0) and (3, 1)
    assert out[0, 0, :, 0].tolist() == [0, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="stride <= crop_size"):
        predict_slide(PositionModel(), x, 2, crop_size=4, stride=5)


def test_multiscale_flip() -> None:
    m = PointwiseModel().eval()
    x = torch.randn(1, 3, 16, 20)
    probs = predict_multiscale(m, x, 4, scales=(1.0,), flip=True)
    torch.testing.assert_close(probs, m(x).softmax(1))  # a pointwise model is flip-equivariant
    ms = predict_multiscale(m, x, 4, scales=(0.5, 1.0, 1.5), flip=True, mode="slide",
                            crop_size=8, stride=6)
    assert ms.shape == (1, 4, 16, 20)
    torch.testing.assert_close(ms.sum(1), torch.ones(1, 16, 20))
    with pytest.raises(ValueError, match="scales must be positive"):
        predict_multiscale(m, x, 4, scales=(0.0,))
    with pytest.raises(ValueError, match=r"image must be a \(B, C, H, W\) tensor"):
        predict_whole(m, x[0])


def test_evaluate_perfect_model_and_outputs(tmp_path) -> None:
    ds = build_dataset("synthetic", split="val", length=3, size=24, num_classes=4)

    class Oracle(nn.Module):  # returns the true labels as one-hot logits
        def forward(self, x):
            idx = next(i for i in range(len(ds)) if torch.equal(ds[i][0], x[0]))
            return F.one_hot(ds[idx][1], 4).permute(2, 0, 1)[None].float()

    r = evaluate(Oracle(), ds, num_vis=2, out_dir=tmp_path, progress=False)
    assert r["miou"] == 1.0 and r["pixel_acc"] == 1.0 and r["samples"] == 3
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["miou"] == 1.0 and saved["class_names"] == list(ds.class_names)
    assert "| grating_0 |" in (tmp_path / "table.md").read_text()
    pngs = sorted((tmp_path / "vis").glob("*.png"))
    assert [p.name for p in pngs] == ["val_000000.png", "val_000001.png"]
    assert Image.open(pngs[0]).size == (48, 24)  # prediction | ground truth
    with pytest.raises(ValueError, match="num_vis > 0 needs out_dir"):
        evaluate(Oracle(), ds, num_vis=1, progress=False)


def test_colorize() -> None:
    pal = make_palette(3, [(10, 20, 30)])
    assert pal.shape == (3, 3) and tuple(pal[0]) == (10, 20, 30)
    out = colorize(torch.tensor([[0, 255], [2, 1]]), pal)
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[0, 1]) == (0, 0, 0)


def test_cli_synthetic(tmp_path, capsys) -> None:
    model = build_model("deeplabv3_mobilenetv2", num_classes=10, output_stride=16)
    save_checkpoint(tmp_path / "m.pth", model)
    r = main(["--model", "deeplabv3_mobilenetv2", "--checkpoint", str(tmp_path / "m.pth"),
              "--dataset", "synthetic", "--synthetic-length", "2", "--synthetic-size", "32",
              "--mode", "slide", "--crop-size", "24", "--stride", "16", "--num-vis", "1",
              "--out-dir", str(tmp_path / "out"), "--workers", "0"])
    assert r["samples"] == 2 and 0 <= r["miou"] <= 1
    assert "| noise_binary |" in capsys.readouterr().out
    assert (tmp_path / "out" / "results.json").is_file()
    assert len(list((tmp_path / "out" / "vis").glob("*.png"))) == 1
    with pytest.raises(ValueError, match="holds a 'deeplabv3_mobilenetv2' model, expected "
                                         "'pspnet_mobilenetv2'"):
        main(["--model", "pspnet_mobilenetv2", "--checkpoint", str(tmp_path / "m.pth"),
              "--dataset", "synthetic", "--synthetic-length", "1", "--out-dir", str(tmp_path)])


@pytest.mark.skipif(not CAMVID_REAL.is_dir(), reason=f"CamVid not found at {CAMVID_REAL}")
def test_cli_camvid_subprocess(tmp_path) -> None:
    model = build_model("pspnet_mobilenetv2", num_classes=11)
    save_checkpoint(tmp_path / "m.pth", model)
    proc = subprocess.run(
        [sys.executable, "-m", "sstkd.evaluate", "--model", "pspnet_mobilenetv2",
         "--checkpoint", str(tmp_path / "m.pth"), "--dataset", "camvid", "--data-root",
         str(CAMVID_REAL), "--split", "val", "--limit", "1", "--scales", "0.5", "--flip",
         "--out-dir", str(tmp_path / "out"), "--workers", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| Bicyclist |" in proc.stdout
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["samples"] == 1 and result["scales"] == [0.5] and result["flip"] is True


def _tiny_camvid(root: Path) -> Path:
    for split in ("val",):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(root / split / "a.png")
        Image.new("L", (16, 16)).save(root / f"{split}annot" / "a.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("w")
    save_checkpoint(d / "m4.pth", build_model("pspnet_mobilenetv2", num_classes=4))
    return d


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "camvid", "--data-root", "/nonexistent/camvid"],
     "dataset root '/nonexistent/camvid' does not exist"),
    (["--model", "deeplabv3_mobilenetv2", "--dataset", "synthetic"],
     "holds a 'pspnet_mobilenetv2' model, expected 'deeplabv3_mobilenetv2'"),
    (["--dataset", "synthetic"], "predicts 4 classes but dataset 'synthetic' has 10"),
    (["--checkpoint", "TRUNCATED"], "is truncated or not a checkpoint"),
    (["--checkpoint", "STATE"], "is a training state (latest.pt), not model weights"),
    (["--checkpoint", "/nonexistent.pth"], "--checkpoint '/nonexistent.pth' does not exist"),
    (["--dataset", "camvid", "--data-root", "CAMVID", "--split", "bogus"],
     "split must be 'train', 'val' or 'test', got 'bogus'"),
    (["--crop-size", "0"], "--crop-size expected 1 or 2 positive ints (H [W]), got 0"),
    (["--stride", "8", "0"], "--stride expected 1 or 2 positive ints (H [W]), got 8 0"),
    (["--resize", "0", "8"], "--resize expected two positive ints H W"),
])
def test_cli_user_errors_exit_2_with_one_line(argv, match, weights, tmp_path, monkeypatch,
                                              capsys) -> None:
    from sstkd.evaluate import _cli

    ckpt = weights / "m4.pth"
    if "TRUNCATED" in argv:
        (tmp_path / "t.pth").write_bytes(ckpt.read_bytes()[:1000])
        argv = [a if a != "TRUNCATED" else str(tmp_path / "t.pth") for a in argv]
    if "STATE" in argv:
        torch.save({"step": 2, "distiller": {}, "optimizer": {}, "config": {}},
                   tmp_path / "latest.pt")
        argv = [a if a != "STATE" else str(tmp_path / "latest.pt") for a in argv]
    if "CAMVID" in argv:
        argv = [a if a != "CAMVID" else str(_tiny_camvid(tmp_path / "camvid")) for a in argv]
    base = ["--checkpoint", str(ckpt), "--dataset", "synthetic", "--synthetic-length", "1",
            "--synthetic-size", "16", "--out-dir", str(tmp_path / "out"), "--workers", "0"]
    monkeypatch.setattr(sys, "argv", ["sstkd.evaluate", *base, *argv])
    assert _cli() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sstkd.evaluate: error: "), err
    assert match in err


def test_cli_resize_and_training_config(weights, tmp_path) -> None:
    import yaml

    save_checkpoint(tmp_path / "m10.pth", build_model("pspnet_mobilenetv2", num_classes=10))
    r = main(["--checkpoint", str(tmp_path / "m10.pth"), "--num-vis", "1", "--workers", "0",
              "--dataset", "synthetic", "--synthetic-length", "1", "--synthetic-size", "32",
              "--resize", "16", "24", "--out-dir", str(tmp_path / "a")])
    (png,) = (tmp_path / "a" / "vis").glob("*.png")
    assert r["samples"] == 1 and Image.open(png).size == (2 * 24, 16)  # (H, W) = (16, 24)
    cfg = {"model": {"student": "pspnet_mobilenetv2", "teacher": "pspnet_mobilenetv2"},
           "data": {"dataset": "synthetic", "num_classes": 4, "image_size": 32, "val_length": 2,
                    "resize": [24, 16], "crop_size": [24, 16]},
           "train": {"iters": 2}, "optim": {"warmup_iters": 0}, "eval": {"mode": "whole"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = main(["--checkpoint", str(weights / "m4.pth"), "--num-vis", "1", "--workers", "0",
              "--config", str(tmp_path / "c.yaml"), "--out-dir", str(tmp_path / "b")])
    (png,) = (tmp_path / "b" / "vis").glob("*.png")
    assert r["samples"] == 2 and len(r["iou"]) == 4  # dataset, classes and size from the config
    assert Image.open(png).size == (2 * 16, 24)
