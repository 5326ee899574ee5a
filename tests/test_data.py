"""Dataset loaders on tiny fixture trees, synthetic mosaics, transforms, bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sstkd.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NUM_CLASSES,
    TEXTURE_CLASSES,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    TextureMosaics,
    build_dataset,
    build_train_transform,
)
from sstkd.data.synthetic import render_texture

CAMVID_REAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"
H, W = 12, 16


def _write_image(path: Path, rng: np.random.Generator, size=(H, W), fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, fmt)


def _write_label(path: Path, label: np.ndarray, mode: str = "L") -> None:
    """Single-channel PNG; ``mode="P"`` writes a palette PNG (like VOC's SegmentationClass)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(label, dtype=np.uint8)
    im = Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr.tobytes())
    if mode == "P":
        im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    im.save(path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ---- fixture trees in each on-disk layout -----------------------------------------------------

def make_cityscapes(root: Path, rng) -> dict[str, np.ndarray]:
    raw = {}
    for split, city, name in [("train", "aachen", "aachen_000000_000019"),
                              ("train", "bochum", "bochum_000000_000313"),
                              ("val", "frankfurt", "frankfurt_000000_000294")]:
        _write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", rng)
        lab = rng.integers(0, 34, (H, W))
        _write_label(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", lab)
        # the other gtFine files of the release must be ignored
        _write_label(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", lab)
        raw[name] = lab
    return raw


def make_voc(root: Path, rng) -> dict[str, np.ndarray]:
    ids = ["2007_000032", "2007_000039", "2008_000008"]
    raw = {}
    for i in ids:
        _write_image(root / "JPEGImages" / f"{i}.jpg", rng, fmt="JPEG")
        lab = rng.integers(0, 21, (H, W))
        lab[0, :4] = 255
        _write_label(root / "SegmentationClassAug" / f"{i}.png", lab)
        raw[i] = lab
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True)
    (seg / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids[:2]))
    (seg / "val.txt").write_text(ids[2] + "\n")
    return raw


def make_ade(root: Path, rng) -> None:
    base = root / "ADEChallengeData2016"
    for split, names in [("training", ["ADE_train_00000001", "ADE_train_00000002"]),
                         ("validation", ["ADE_val_00000001"])]:
        for n in names:
            _write_image(base / "images" / split / f"{n}.jpg", rng, fmt="JPEG")
            lab = rng.integers(0, 151, (H, W))
            lab[0, 0], lab[0, 1], lab[0, 2] = 0, 1, 150
            _write_label(base / "annotations" / split / f"{n}.png", lab)


def make_camvid(root: Path, rng, list_file: bool = True) -> None:
    names = ["0001TP_006690", "0001TP_006720"]
    for n in names:
        _write_image(root / "train" / f"{n}.png", rng)
        lab = rng.integers(0, 12, (H, W))
        _write_label(root / "trainannot" / f"{n}.png", lab)
    if list_file:
        (root / "train.txt").write_text("".join(
            f"/SegNet/CamVid/train/{n}.png /SegNet/CamVid/trainannot/{n}.png\n" for n in names))


def test_cityscapes(tmp_path, rng) -> None:
    raw = make_cityscapes(tmp_path, rng)
    ds = build_dataset("cityscapes", tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 19 == NUM_CLASSES["cityscapes"]
    img, lab = ds[0]
    assert img.shape == (3, H, W) and img.dtype == torch.float32 and lab.dtype == torch.int64
    expected = np.full((H, W), 255)
    for label_id, train_id in {7: 0, 8: 1, 26: 13, 33: 18}.items():
        expected[raw["aachen_000000_000019"] == label_id] = train_id
    got = lab.numpy()
    for label_id in (7, 8, 26, 33, 0, 1, 6, 9, 30):
        m = raw["aachen_000000_000019"] == label_id
        np.testing.assert_array_equal(got[m], expected[m])
    assert set(np.unique(got)) <= set(range(19)) | {255}
    assert len(build_dataset("cityscapes", tmp_path, "val")) == 1


def test_voc_aug(tmp_path, rng) -> None:
    raw = make_voc(tmp_path, rng)
    train = build_dataset("voc", tmp_path, "train_aug")
    assert len(train) == 2 and train.num_classes == 21
    for k, name in enumerate(["2007_000032", "2007_000039"]):
        img, lab = train[k]
        assert img.shape == (3, H, W)
        np.testing.assert_array_equal(lab.numpy(), raw[name])  # 255 border and classes 0..20
    val = build_dataset("voc", tmp_path, "val")
    assert val.sample_name(0) == "2008_000008"
    np.testing.assert_array_equal(val[0][1].numpy(), raw["2008_000008"])
    with pytest.raises(FileNotFoundError, match="split list for 'trainval' not found"):
        build_dataset("voc", tmp_path, "trainval")


def test_voc_palette_labels(tmp_path, rng) -> None:
    make_voc(tmp_path, rng)
    lab = np.arange(H * W).reshape(H, W) % 21
    _write_label(tmp_path / "SegmentationClass" / "2008_000008.png", lab, mode="P")
    ds = build_dataset("voc", tmp_path, "val", label_dir="SegmentationClass")
    np.testing.assert_array_equal(ds[0][1].numpy(), lab)


def test_ade20k(tmp_path, rng) -> None:
    make_ade(tmp_path, rng)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        ds = build_dataset("ade20k", root, "train")
        assert len(ds) == 2 and ds.num_classes == 150
        lab = ds[0][1]
        assert lab[0, :3].tolist() == [255, 0, 149]
        assert int(lab[lab != 255].max()) <= 149
    assert len(build_dataset("ade20k", tmp_path, "val")) == 1


@pytest.mark.parametrize("list_file", [True, False])
def test_camvid_fixture(tmp_path, rng, list_file: bool) -> None:
    make_camvid(tmp_path, rng, list_file)
    ds = build_dataset("camvid", tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 11
    raw = np.asarray(Image.open(tmp_path / "trainannot" / "0001TP_006690.png")).astype(np.int64)
    np.testing.assert_array_equal(ds[0][1].numpy(), np.where(raw == 11, 255, raw))


@pytest.mark.skipif(not CAMVID_REAL.is_dir(), reason=f"CamVid not found at {CAMVID_REAL}")
def test_camvid_real() -> None:
    ds = build_dataset("camvid", CAMVID_REAL, "val")
    assert len(ds) == 101
    assert len(build_dataset("camvid", CAMVID_REAL, "train")) == 367
    for i in (0, 50, 100):
        img, lab = ds[i]
        assert img.shape == (3, 360, 480) and lab.shape == (360, 480)
        values = set(lab.unique().tolist())
        assert values <= set(range(11)) | {255} and len(values - {255}) >= 3
        assert abs(float(img.mean())) < 2.0
    train = build_dataset("camvid", CAMVID_REAL, "train",
                          transform=build_train_transform(crop_size=(96, 128)), seed=3)
    img, lab = train[5]
    assert img.shape == (3, 96, 128) and lab.shape == (96, 128)


# ---- bad data ----------------------------------------------------------------------------------

def test_missing_root(tmp_path) -> None:
    for name in ("cityscapes", "voc", "ade20k", "camvid"):
        with pytest.raises(FileNotFoundError, match=f"dataset root '{tmp_path / 'nowhere'}'"):
            build_dataset(name, tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="root is required"):
        build_dataset("camvid", None)
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        build_dataset("cityscapes", tmp_path, "training")
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no image/label pairs found"):
        build_dataset("cityscapes", tmp_path, "train")


def test_image_without_label(tmp_path, rng) -> None:
    make_cityscapes(tmp_path, rng)
    lab = tmp_path / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png"
    lab.unlink()
    with pytest.raises(FileNotFoundError, match=f"label file '{lab}' for image"):
        build_dataset("cityscapes", tmp_path, "train")


def test_size_mismatch(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    bad = tmp_path / "trainannot" / "0001TP_006720.png"
    _write_label(bad, np.zeros((H + 1, W)))
    ds = build_dataset("camvid", tmp_path, "train")
    with pytest.raises(ValueError, match=rf"is {W}x{H} \(WxH\) but its label '{bad}' is "
                                         rf"{W}x{H + 1}"):
        ds[1]


def test_label_out_of_range(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    bad = tmp_path / "trainannot" / "0001TP_006690.png"
    lab = np.zeros((H, W))
    lab[3, 3], lab[4, 4] = 12, 200
    _write_label(bad, lab)
    with pytest.raises(ValueError, match=rf"label file '{bad}' holds values \[12, 200\]"):
        build_dataset("camvid", tmp_path, "train")[0]
    make_ade(tmp_path, rng)
    ade_bad = tmp_path / "ADEChallengeData2016/annotations/training/ADE_train_00000001.png"
    _write_label(ade_bad, np.full((H, W), 151))
    with pytest.raises(ValueError, match="holds values \\[151\\]"):
        build_dataset("ade20k", tmp_path, "train")[0]


def test_rgb_label_rejected(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    bad = tmp_path / "trainannot" / "0001TP_006690.png"
    _write_image(bad, rng)
    with pytest.raises(ValueError, match="single-channel image, got mode 'RGB'"):
        build_dataset("camvid", tmp_path, "train")[0]


# ---- transforms ----------------------------------------------------------------------------------

def test_train_transform_is_seeded_and_pads_with_ignore(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    t = build_train_transform(crop_size=24, scale_range=(0.5, 1.0), jitter=True)
    a = build_dataset("camvid", tmp_path, "train", transform=t, seed=7)
    b = build_dataset("camvid", tmp_path, "train", transform=t, seed=7)
    (ia, la), (ib, lb) = a[0], b[0]
    assert ia.shape == (3, 24, 24)
    torch.testing.assert_close(ia, ib)
    assert torch.equal(la, lb)
    # the 12x16 image at scale <= 1 sits in a 24x24 canvas: rows 12+ are padding, labelled
    # ignore and filled with the mean colour (124, 116, 104) before normalisation.
    assert (la[12:] == 255).all()
    fill = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD)
    torch.testing.assert_close(ia[:, 12:], fill[:, None, None].expand(3, 12, 24))
    a.set_epoch(1)
    assert not torch.equal(a[0][0], ia)


def test_crop_and_flip_keep_alignment() -> None:
    g = np.random.default_rng(0)
    img = np.repeat(np.arange(20 * 30, dtype=np.int64).reshape(20, 30)[..., None] % 256, 3, 2)
    lab = np.arange(20 * 30).reshape(20, 30)
    t = Compose([RandomCrop((10, 12)), RandomHorizontalFlip(p=1.0)])
    ci, cl = t(img.astype(np.uint8), lab, g)
    np.testing.assert_array_equal(ci[..., 0], cl % 256)
    assert cl.shape == (10, 12) and (np.diff(cl, axis=1) == -1).all()
    with pytest.raises(ValueError, match="RandomCrop.size"):
        RandomCrop(0)


def test_worker_safe_augmentation(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    ds = build_dataset("camvid", tmp_path, "train", transform=build_train_transform(8), seed=1)
    direct = [ds[i][0] for i in range(len(ds))]
    loaded = [x[0] for x, _ in DataLoader(ds, batch_size=1, num_workers=2)]
    for a, b in zip(direct, loaded):
        torch.testing.assert_close(a, b)


def test_unseeded_augmentation_follows_torch_seed(tmp_path, rng) -> None:
    make_camvid(tmp_path, rng)
    ds = build_dataset("camvid", tmp_path, "train", transform=build_train_transform(8))
    torch.manual_seed(5)
    a = ds[0][0]
    torch.manual_seed(5)
    torch.testing.assert_close(ds[0][0], a)


# ---- synthetic texture mosaics ------------------------------------------------------------

def test_synthetic_reproducible_and_split_dependent() -> None:
    ds = TextureMosaics("train", length=5, size=(48, 64), seed=0)
    img, lab = ds[3]
    assert img.shape == (3, 48, 64) and lab.shape == (48, 64) and lab.dtype == torch.int64
    torch.testing.assert_close(TextureMosaics("train", length=5, size=(48, 64))[3][0], img)
    assert not torch.equal(TextureMosaics("val", length=5, size=(48, 64))[3][1], lab)
    assert not torch.equal(TextureMosaics("train", length=5, size=(48, 64), seed=1)[3][1], lab)
    assert int(lab.max()) < len(TEXTURE_CLASSES)
    loaded = next(iter(DataLoader(ds, batch_size=5, num_workers=2)))
    torch.testing.assert_close(loaded[0][3], img)


def test_synthetic_classes_cover_all_and_differ() -> None:
    ds = TextureMosaics(length=40, size=32, num_classes=4)
    seen = set()
    for i in range(len(ds)):
        seen |= set(ds[i][1].unique().tolist())
    assert seen == {0, 1, 2, 3} and ds.class_names == TEXTURE_CLASSES[:4]
    g = np.random.default_rng(0)
    tex = {c: render_texture(c, (64, 64), g) for c in range(len(TEXTURE_CLASSES))}
    # Same first-order mean everywhere; the noise families 6/7/8 share mean and std too, and
    # differ in distribution (7 is binary) and smoothness (8 has neighbour correlation).
    for c, t in tex.items():
        assert abs(t.mean() - 0.5) < 0.02, c
    for c in (6, 7, 8):
        assert abs(tex[c].std() - 0.2) < 0.02
    assert len(np.unique(tex[7])) == 2 and len(np.unique(tex[6])) > 100

    def corr(t):
        d = t - t.mean()
        return (d[:, 1:] * d[:, :-1]).mean() / d.var()

    assert corr(tex[8]) > 0.5 and abs(corr(tex[6])) < 0.1


def test_synthetic_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes must be in \\[2, 10\\], got 11"):
        TextureMosaics(num_classes=11)
    with pytest.raises(ValueError, match="split"):
        TextureMosaics(split="dev")
    with pytest.raises(IndexError, match="index 3 out of range"):
        TextureMosaics(length=3)[3]
    with pytest.raises(ValueError, match="size"):
        TextureMosaics(size=4)


def test_build_synthetic_with_train_transform() -> None:
    ds = build_dataset("synthetic", split="train", length=3, size=40,
                       transform=build_train_transform(32), seed=2)
    img, lab = ds[0]
    assert img.shape == (3, 32, 32) and lab.shape == (32, 32)
