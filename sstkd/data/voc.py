"""Pascal VOC 2012 with the SBD augmented labels (``SegmentationClassAug``), 21 classes."""

from __future__ import annotations

from pathlib import Path

from .base import SegmentationDataset, Transform, check_root, lut
from .transforms import IGNORE_INDEX

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _voc_palette(n: int = 21) -> tuple[tuple[int, int, int], ...]:
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


class VOCAug(SegmentationDataset):
    """Pascal VOC 2012 + SBD ("VOC aug"): 10582 train_aug / 1449 val images.

    Layout (``root`` = ``VOCdevkit/VOC2012`` or a folder laid out like it):
    ``JPEGImages/<id>.jpg``, ``<label_dir>/<id>.png`` (single-channel or palette PNG with
    values 0..20 and 255 = ignore) and the split list
    ``ImageSets/Segmentation/<split>.txt`` (or ``root/<split>.txt``), one image id per line or
    DeepLab-style ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` pairs.

    Args:
        root: dataset root. split: e.g. ``train_aug``, ``train``, ``val``, ``trainval``.
        label_dir: ``SegmentationClassAug`` (default) or ``SegmentationClass``.
        transform, ignore_index, seed: see :class:`~sstkd.data.base.SegmentationDataset`.
    """

    name = "voc"
    class_names = VOC_CLASSES
    palette = _voc_palette()

    def __init__(self, root: str | Path, split: str = "train_aug",
                 transform: Transform | None = None, ignore_index: int = IGNORE_INDEX,
                 seed: int | None = None, label_dir: str = "SegmentationClassAug"):
        super().__init__(transform, ignore_index, seed)
        root = check_root(root, "VOCAug", f"JPEGImages/, {label_dir}/ and split lists")
        candidates = [root / "ImageSets" / "Segmentation" / f"{split}.txt", root / f"{split}.txt"]
        list_file = next((p for p in candidates if p.is_file()), None)
        if list_file is None:
            raise FileNotFoundError(f"VOCAug: split list for {split!r} not found; looked for "
                                    f"{[str(p) for p in candidates]}")
        samples = []
        for n, line in enumerate(list_file.read_text().splitlines(), 1):
            parts = line.split()
            if len(parts) == 1:
                samples.append((root / "JPEGImages" / f"{parts[0]}.jpg",
                                root / label_dir / f"{parts[0]}.png"))
            elif len(parts) == 2:
                samples.append(tuple(root / p.lstrip("/") for p in parts))
            elif parts:
                raise ValueError(f"VOCAug: line {n} of {str(list_file)!r} should hold an id or an "
                                 f"image/label pair, got {line!r}")
        self._set_samples(samples, str(list_file))
        self.label_map = lut(dict(enumerate(range(21))) | {255: ignore_index}, -1)
