"""ADE20K scene parsing (``ADEChallengeData2016``): 150 classes, stored 0 (other) -> ignore."""

from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, Transform, check_root, lut
from .transforms import IGNORE_INDEX

_SPLITS = {"train": "training", "val": "validation", "training": "training",
           "validation": "validation"}


class ADE20K(SegmentationDataset):
    """ADE20K (SceneParsing benchmark): 20210 training / 2000 validation images.

    Layout: ``root/ADEChallengeData2016/images/{training,validation}/*.jpg`` and
    ``.../annotations/{training,validation}/*.png`` (``root`` may also be the
    ``ADEChallengeData2016`` folder itself). Stored labels 1..150 become 0..149; 0 is ignored.

    Class names are ``class_000`` ... ``class_149`` (the official names are in
    ``objectInfo150.csv`` of the release, read when present).

    Args:
        root: dataset root. split: ``train``/``training`` or ``val``/``validation``.
        transform, ignore_index, seed: see :class:`~sstkd.data.base.SegmentationDataset`.
    """

    name = "ade20k"
    class_names = tuple(f"class_{i:03d}" for i in range(150))

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 ignore_index: int = IGNORE_INDEX, seed: int | None = None):
        super().__init__(transform, ignore_index, seed)
        if split not in _SPLITS:
            raise ValueError(f"ADE20K: split must be one of {sorted(_SPLITS)}, got {split!r}")
        root = check_root(root, "ADE20K", "ADEChallengeData2016/images and /annotations")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        img_dir = root / "images" / _SPLITS[split]
        if not img_dir.is_dir():
            raise FileNotFoundError(f"ADE20K: image folder {str(img_dir)!r} does not exist")
        samples = [(p, root / "annotations" / _SPLITS[split] / f"{p.stem}.png")
                   for p in sorted(img_dir.glob("*.jpg"))]
        self._set_samples(samples, str(img_dir))
        info = root / "objectInfo150.csv"
        if info.is_file():
            rows = info.read_text().splitlines()[1:]
            names = tuple(r.rsplit(",", 1)[-1].split(";")[0].strip() for r in rows if r.strip())
            if len(names) == 150:
                self.class_names = names
        self.label_map = lut({0: ignore_index} | {i: i - 1 for i in range(1, 151)}, -1)
