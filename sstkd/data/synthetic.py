"""Procedural texture mosaics: regions that differ only by texture, seeded per sample.

Each image is a Voronoi partition of the canvas into a few regions; every region is filled
with one texture family (its class). The families are chosen so that both kinds of texture
knowledge matter:

- structural (orientation, frequency, regularity): gratings at 0/45/90/135 degrees (period 8
  px), a fine horizontal grating (period 4 px), a checkerboard;
- statistical (intensity distribution, contrast, smoothness): Gaussian noise, binary noise with
  the *same* mean and standard deviation, spatially smoothed noise with the same mean and
  standard deviation, and high-contrast Gaussian noise.

All textures share the mean intensity 0.5 (so mean brightness alone separates nothing), get a
random phase per region, and the whole image gets a mild random gain/offset and pixel noise.
Pure numpy; ``dataset[i]`` depends only on ``(seed, split, i)`` and is identical in every
worker. A 256 x 256 sample takes a few milliseconds.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import Transform
from .transforms import IGNORE_INDEX, build_eval_transform, to_tensor

TEXTURE_CLASSES = ("grating_0", "grating_45", "grating_90", "grating_135", "grating_fine",
                   "checkerboard", "noise_gaussian", "noise_binary", "noise_smooth",
                   "noise_high_contrast")
TEXTURE_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                   (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
                   (250, 190, 212))
_AMP = 0.2  # grating / checkerboard amplitude; noise std of the low-contrast families


def _box_blur(x: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur of radius ``r`` (wrap-around), via cumulative sums."""
    for axis in (0, 1):
        pad = np.concatenate([x.take(range(-r, 0), axis=axis), x,
                              x.take(range(r + 1), axis=axis)], axis=axis)
        c = np.cumsum(pad, axis=axis)
        n = x.shape[axis]
        x = (c.take(range(2 * r + 1, 2 * r + 1 + n), axis=axis) - c.take(range(n), axis=axis))
        x = x / (2 * r + 1)
    return x


def render_texture(cls: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One texture family over the canvas ``shape`` = (H, W): float64 ``(H, W)``, mean ~0.5."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi)
    if cls <= 4:
        angle = np.deg2rad((0, 45, 90, 135, 0)[cls])
        period = 4.0 if cls == 4 else 8.0
        u = xx * np.cos(angle) + yy * np.sin(angle)
        return 0.5 + _AMP * np.sqrt(2) * np.sin(2 * np.pi * u / period + phase)
    if cls == 5:
        s = 6
        oy, ox = rng.integers(0, 2 * s, size=2)
        return 0.5 + _AMP * np.where(((yy + oy) // s + (xx + ox) // s) % 2 == 0, 1.0, -1.0)
    if cls == 6:
        return 0.5 + _AMP * rng.standard_normal((h, w))
    if cls == 7:
        return 0.5 + _AMP * rng.choice((-1.0, 1.0), size=(h, w))
    if cls == 8:
        n = _box_blur(rng.standard_normal((h, w)), 2)
        return 0.5 + _AMP * n / (n.std() + 1e-12)
    if cls == 9:
        return 0.5 + 2 * _AMP * rng.standard_normal((h, w))
    raise ValueError(f"render_texture: cls must be in [0, {len(TEXTURE_CLASSES)}), got {cls!r}")


def make_mosaic(rng: np.random.Generator, size: tuple[int, int], num_classes: int,
                regions: tuple[int, int] = (3, 8)) -> tuple[np.ndarray, np.ndarray]:
    """A Voronoi texture mosaic: uint8 image ``(H, W, 3)`` and int64 labels ``(H, W)``."""
    h, w = size
    k = int(rng.integers(regions[0], regions[1] + 1))
    centers = rng.uniform((0, 0), (h, w), size=(k, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[None] - centers[:, 0, None, None]) ** 2 + (xx[None] - centers[:, 1, None, None]) ** 2
    region = d.argmin(axis=0)
    classes = rng.integers(0, num_classes, size=k)
    label = classes[region].astype(np.int64)
    gray = np.zeros((h, w))
    for c in np.unique(classes):
        mask = label == c
        gray[mask] = render_texture(int(c), (h, w), rng)[mask]
    gray = gray * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05)
    gray += 0.02 * rng.standard_normal((h, w))
    tint = rng.uniform(0.9, 1.1, size=3)
    image = np.clip(gray[..., None] * tint * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, label


class TextureMosaics(Dataset):
    """Synthetic texture-mosaic segmentation (the training CLI's embedded default dataset).

    Args:
        split: ``train``, ``val`` or ``test``; each split has its own stream of mosaics.
        length: number of samples (``len(dataset)``).
        size: image size ``(H, W)`` (or an int).
        num_classes: how many of the texture families (:data:`TEXTURE_CLASSES`) to use, 2..10.
        regions: (min, max) Voronoi regions per image.
        seed: base seed of the mosaics (and of the augmentation, see
            :class:`~sstkd.data.base.SegmentationDataset`).
        transform: joint transform ``t(image, label, rng)``; default: normalisation only.

    ``dataset[i]`` returns ``(image (3, H, W) float32, label (H, W) int64)``; the mosaic itself
    depends only on ``(seed, split, i)``.

    Example:
        >>> ds = TextureMosaics(length=4, size=64)
        >>> img, lab = ds[0]; img.shape, lab.shape
        (torch.Size([3, 64, 64]), torch.Size([64, 64]))
    """

    name = "synthetic"
    palette = TEXTURE_PALETTE

    def __init__(self, split: str = "train", length: int = 1000, size: int | tuple[int, int] = 256,
                 num_classes: int = len(TEXTURE_CLASSES), regions: tuple[int, int] = (3, 8),
                 seed: int = 0, transform: Transform | None = None,
                 ignore_index: int = IGNORE_INDEX):
        if split not in ("train", "val", "test"):
            raise ValueError("TextureMosaics: split must be 'train', 'val' or 'test', "
                             f"got {split!r}")
        if not 2 <= num_classes <= len(TEXTURE_CLASSES):
            raise ValueError("TextureMosaics: num_classes must be in "
                             f"[2, {len(TEXTURE_CLASSES)}], got {num_classes!r}")
        if length < 1:
            raise ValueError(f"TextureMosaics: length must be >= 1, got {length!r}")
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"TextureMosaics: size must be >= 8 or (H, W) >= 8, got {size!r}")
        if not 1 <= regions[0] <= regions[1]:
            raise ValueError(f"TextureMosaics: regions must be (min, max) with 1 <= min <= max, "
                             f"got {regions!r}")
        self.split, self.length, self.size = split, int(length), size
        self.class_names = TEXTURE_CLASSES[:num_classes]
        self.regions, self.seed = tuple(regions), seed
        self.transform = transform if transform is not None else build_eval_transform()
        self.ignore_index = ignore_index
        self.epoch = 0
        self._split_key = zlib.crc32(split.encode())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (the mosaics themselves do not change)."""
        self.epoch = int(epoch)

    def sample_name(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def sample_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._split_key, self.epoch, index, 1])

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed mosaic: uint8 ``(H, W, 3)``, int64 ``(H, W)``."""
        rng = np.random.default_rng([self.seed, self._split_key, index])
        return make_mosaic(rng, self.size, self.num_classes, self.regions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"TextureMosaics: index {index} out of range for {self.length} "
                             "samples")
        index %= self.length
        image, label = self.load_raw(index)
        image, label = self.transform(image, label, self.sample_rng(index))
        return to_tensor(image, label)
