"""Cityscapes (``leftImg8bit/`` + ``gtFine/*_labelIds.png``), 19 train ids, 255 ignore."""

from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, Transform, check_root, lut
from .transforms import IGNORE_INDEX

# labelId -> trainId for the 19 evaluated classes (cityscapesScripts' labels.py).
LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                     24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
                      (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
                      (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
                      (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230),
                      (119, 11, 32))


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations.

    Layout: ``root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
    ``root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png``. Label ids 0..33 map to the 19 train
    ids; the other ids (and 255) become ``ignore_index``; any other value is an error.

    Args:
        root: dataset root. split: ``train``, ``val`` or ``test``.
        transform, ignore_index, seed: see :class:`~sstkd.data.base.SegmentationDataset`.
    """

    name = "cityscapes"
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 ignore_index: int = IGNORE_INDEX, seed: int | None = None):
        super().__init__(transform, ignore_index, seed)
        if split not in ("train", "val", "test"):
            raise ValueError(f"Cityscapes: split must be 'train', 'val' or 'test', got {split!r}")
        root = check_root(root, "Cityscapes", "leftImg8bit/ and gtFine/")
        img_dir = root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes: image folder {str(img_dir)!r} does not exist")
        samples = []
        for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            stem = img.name[: -len("_leftImg8bit.png")]
            lab = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
            samples.append((img, lab))
        self._set_samples(samples, str(img_dir))
        # ids 0..33 and 255 are valid: the 19 evaluated ones map to train ids, the rest ignored.
        ignored = {k: ignore_index for k in (*range(34), 255) if k not in LABEL_TO_TRAIN_ID}
        self.label_map = lut(LABEL_TO_TRAIN_ID | ignored, -1)
