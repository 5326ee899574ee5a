"""The ``folder`` dataset: index and colour masks, split lists, up-front checks, a CLI run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sstkd.data import DATASETS, FolderDataset, build_dataset, read_classes
from sstkd.data.base import DataError
from sstkd.train import _cli, main

COLOURS = ((0, 0, 0), (200, 30, 30), (30, 200, 30))  # class ids 0, 1, 2
IGNORE_COLOUR = (255, 255, 255)


def _ids(rng: np.random.Generator, h: int, w: int, k: int = 3) -> np.ndarray:
    ids = rng.integers(0, k, (h, w)).astype(np.uint8)
    ids[0, :3] = 255  # a few ignored pixels
    ids[-1, -1] = k - 1  # every mask holds the top class
    return ids


def _image(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_index_data(root: Path, splits=(("train", 3), ("val", 2)), size=(20, 24)) -> Path:
    """images/<split>/*.jpg + masks/<split>/*.png with class ids (mode L)."""
    rng = np.random.default_rng(0)
    for split, n in splits:
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(n):
            _image(rng, *size).save(root / "images" / split / f"{split}{i}.jpg")
            Image.fromarray(_ids(rng, *size)).save(root / "masks" / split / f"{split}{i}.png")
    return root


def make_colour_data(root: Path, n: int = 5, size=(40, 48)) -> tuple[Path, list[np.ndarray]]:
    """Flat images/ and masks/ with RGB masks, classes.txt with colours, train/val lists."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lut = np.array([*COLOURS, *([IGNORE_COLOUR] * (256 - len(COLOURS)))], dtype=np.uint8)
    truth = []
    for i in range(n):
        ids = _ids(rng, *size)
        _image(rng, *size).save(root / "images" / f"im{i}.png")
        Image.fromarray(lut[ids]).save(root / "masks" / f"im{i}.png")
        truth.append(ids.astype(np.int64))
    (root / "classes.txt").write_text(
        "# name R G B\nbackground 0 0 0\nred thing 200 30 30\ngreen 30 200 30\n"
        "__ignore__ 255 255 255\n")
    (root / "train.txt").write_text("\n".join(f"im{i}" for i in range(n - 2)) + "\n")
    (root / "val.txt").write_text(f"im{n - 2}.png\nim{n - 1}\n")
    return root, truth


def test_registered():
    assert DATASETS["folder"] is FolderDataset


def test_index_masks_with_split_folders(tmp_path):
    root = make_index_data(tmp_path)
    train = build_dataset("folder", root, "train")
    val = build_dataset("folder", root, "val")
    assert (len(train), len(val)) == (3, 2)
    assert train.num_classes == 3 and train.class_names == ("class_0", "class_1", "class_2")
    image, label = train[0]
    assert image.shape == (3, 20, 24) and image.dtype == torch.float32
    stored = np.asarray(Image.open(root / "masks" / "train" / "train0.png"))
    assert torch.equal(label, torch.from_numpy(stored.astype(np.int64)))
    assert (label == 255).sum() == 3
    assert len(FolderDataset(root, "all")) == 5
    assert FolderDataset(root, "train", num_classes=5).num_classes == 5


def test_colour_masks_and_split_lists(tmp_path):
    root, truth = make_colour_data(tmp_path)
    train = FolderDataset(root, "train")
    val = FolderDataset(root, "val")
    assert [p.name for p, _ in val.samples] == ["im3.png", "im4.png"]
    assert train.class_names == ("background", "red thing", "green")
    assert train.palette == COLOURS
    for ds, offset in ((train, 0), (val, 3)):
        for i in range(len(ds)):
            _, label = ds[i]
            assert torch.equal(label, torch.from_numpy(truth[offset + i]))


def test_read_classes(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("__ignore__\nsky\nroad\n")
    assert read_classes(f) == (("sky", "road"), {})
    f.write_text("sky 1 2 3\nroad\n")
    with pytest.raises(ValueError, match="colours on some lines only; class 'road'"):
        read_classes(f)
    f.write_text("sky 1 2 3\nroad 1 2 3\n")
    with pytest.raises(ValueError, match=r"line 2 of .*classes.txt.*already used"):
        read_classes(f)
    f.write_text("sky 1 2 300\n")
    with pytest.raises(ValueError, match="outside 0..255"):
        read_classes(f)
    f.write_text("# nothing\n")
    with pytest.raises(ValueError, match="names no class"):
        read_classes(f)


def _rewrite_mask(path: Path, fn) -> None:
    arr = np.asarray(Image.open(path)).copy()
    Image.fromarray(fn(arr)).save(path)


def test_errors_name_the_file(tmp_path):
    root = make_index_data(tmp_path / "a")
    (root / "masks" / "train" / "train1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label file .*train1.png.* for image .*train1"):
        FolderDataset(root, "train")

    root = make_index_data(tmp_path / "b")
    (root / "images" / "train" / "train2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask .*train2.png' has no image"):
        FolderDataset(root, "train")

    root = make_index_data(tmp_path / "c")
    _rewrite_mask(root / "masks" / "val" / "val1.png", lambda a: a[:-1])
    with pytest.raises(ValueError, match=r"image .*val1.jpg' is 24x20 .*mask .*val1.png' is 24x19"):
        FolderDataset(root, "val")

    root = make_index_data(tmp_path / "d")
    (root / "classes.txt").write_text("a\nb\n")  # ids go up to 2
    with pytest.raises(ValueError, match=r"label file .*train0.png' holds values \[2\]"):
        FolderDataset(root, "train")
    with pytest.raises(ValueError, match="num_classes=3 but .*classes.txt' names 2 classes"):
        FolderDataset(root, "train", num_classes=3)

    with pytest.raises(FileNotFoundError, match="split 'test' not found"):
        FolderDataset(root, "test")
    (root / "test.txt").write_text("nosuch\n")
    with pytest.raises(FileNotFoundError, match=r"line 1 of .*test.txt' names 'nosuch'"):
        FolderDataset(root, "test")
    with pytest.raises(FileNotFoundError, match="masks"):
        FolderDataset(tmp_path / "b" / "images", "train")


def test_unreadable_files_are_named(tmp_path):
    root = make_index_data(tmp_path / "a")
    (root / "masks" / "val" / "val0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read mask file .*val0.png' \(sample 0\)"):
        FolderDataset(root, "val")
    root = make_index_data(tmp_path / "b")
    ds = FolderDataset(root, "val")
    (root / "images" / "val" / "val1.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"cannot read image file .*val1.jpg' \(sample 1\)"):
        ds[1]


def test_colour_errors(tmp_path):
    root, _ = make_colour_data(tmp_path / "a")
    def recolour(a: np.ndarray) -> np.ndarray:
        a[(a == COLOURS[1]).all(-1)] = (201, 30, 30)
        return a

    _rewrite_mask(root / "masks" / "im1.png", recolour)
    with pytest.raises(ValueError, match=r"mask .*im1.png' holds colours \[\(201, 30, 30\)\]"):
        FolderDataset(root, "train")

    root, _ = make_colour_data(tmp_path / "b")
    (root / "classes.txt").write_text("background\nred\ngreen\n")
    with pytest.raises(ValueError, match=r"mask .*im0.png' is an RGB colour mask but there is no"):
        FolderDataset(root, "train")


def _tiny_config(tmp_path: Path) -> Path:
    cfg = {  # on top of a packaged config, named as a user's own config would
        "base": "synthetic_default",
        "model": {"teacher": "pspnet_resnet18", "student": "pspnet_resnet18"},
        "data": {"dataset": "folder", "num_classes": 3, "crop_size": [32, 32],
                 "scale_range": [1.0, 1.0], "batch_size": 2, "workers": 0},
        "optim": {"warmup_iters": 0},
        "train": {"iters": 2, "eval_every": 0, "ckpt_every": 0, "log_every": 1, "amp": False,
                  "tensorboard": False},
        "distill": {"preset": "baseline"},
    }
    path = tmp_path / "folder.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_two_steps_through_the_cli(tmp_path):
    root, _ = make_colour_data(tmp_path / "data")
    out = tmp_path / "run"
    result = main(["--config", str(_tiny_config(tmp_path)), "--set", f"data.root={root}",
                   "--output-dir", str(out), "--threads", "1", "--no-progress"])
    (run,) = result["runs"]
    assert run["steps"] == 2 and 0 <= run["miou"] <= 1
    saved = json.loads((out / "results.json").read_text())["runs"][0]
    assert list(saved["iou"]) == ["background", "red thing", "green"]


def test_cli_without_root_exits_2_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SSTKD_DATA", raising=False)
    monkeypatch.setattr(sys, "argv", ["sstkd.train", "--config", str(_tiny_config(tmp_path))])
    assert _cli() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'data.root'" in err and "SSTKD_DATA" in err
    monkeypatch.setenv("SSTKD_DATA", str(tmp_path))  # $SSTKD_DATA/folder does not exist
    assert _cli() == 2
    assert str(tmp_path / "folder") in capsys.readouterr().err
