"""Segmentation datasets, seeded joint transforms and a ``build_dataset`` factory.

Every dataset returns ``(image, label)``: ``image`` float32 ``(3, H, W)`` normalised with
ImageNet mean/std (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`) unless another transform is
given, ``label`` int64 ``(H, W)`` with classes ``0..K-1`` and :data:`IGNORE_INDEX` (255).
Your own data: ``folder`` (:class:`FolderDataset`, images + PNG masks).
"""

from __future__ import annotations

from pathlib import Path

from .ade20k import ADE20K
from .base import SegmentationDataset, Transform
from .camvid import CAMVID_CLASSES, CamVid
from .cityscapes import CITYSCAPES_CLASSES, Cityscapes
from .folder import FolderDataset, read_classes
from .synthetic import TEXTURE_CLASSES, TextureMosaics, make_mosaic
from .transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    PhotometricJitter,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    build_eval_transform,
    build_train_transform,
)
from .voc import VOC_CLASSES, VOCAug

DATASETS = {"cityscapes": Cityscapes, "voc": VOCAug, "ade20k": ADE20K, "camvid": CamVid,
            "synthetic": TextureMosaics, "folder": FolderDataset}
NUM_CLASSES = {"cityscapes": 19, "voc": 21, "ade20k": 150, "camvid": 11,
               "synthetic": len(TEXTURE_CLASSES)}


def build_dataset(name: str, root: str | Path | None = None, split: str = "train",
                  transform: Transform | None = None, **kwargs):
    """A dataset by name (:data:`DATASETS`; ``folder`` is your own images and masks).

    Args:
        name: dataset name (see :data:`DATASETS`).
        root: dataset root folder (ignored, and may be ``None``, for ``synthetic``).
        split: split name (``train``/``val``; VOC also ``train_aug``; ``folder`` any name).
        transform: joint transform ``t(image, label, rng)``; default normalisation only, use
            :func:`build_train_transform` for training.
        **kwargs: passed to the dataset class (``seed``, ``ignore_index``; for ``synthetic``
            ``length``, ``size``, ``num_classes``, ``regions``; for ``folder`` ``num_classes``).

    Example:
        >>> ds = build_dataset("synthetic", split="val", length=2, size=32)
        >>> ds.num_classes, ds[0][0].shape
        (10, torch.Size([3, 32, 32]))
    """
    if name not in DATASETS:
        raise ValueError(f"build_dataset: unknown dataset {name!r}; expected one of "
                         f"{sorted(DATASETS)}")
    if name == "synthetic":
        return TextureMosaics(split=split, transform=transform, **kwargs)
    return DATASETS[name](root, split=split, transform=transform, **kwargs)


__all__ = [
    "ADE20K", "CAMVID_CLASSES", "CITYSCAPES_CLASSES", "DATASETS", "IGNORE_INDEX", "IMAGENET_MEAN",
    "IMAGENET_STD", "NUM_CLASSES", "TEXTURE_CLASSES", "VOC_CLASSES", "CamVid", "Cityscapes",
    "Compose", "FolderDataset", "Normalize", "PhotometricJitter", "RandomCrop",
    "RandomHorizontalFlip", "RandomScale", "SegmentationDataset", "TextureMosaics", "VOCAug",
    "build_dataset", "build_eval_transform", "build_train_transform", "make_mosaic",
    "read_classes",
]
