"""Joint image/label transforms driven by an explicit ``numpy.random.Generator``.

Every transform is called as ``t(image, label, rng)`` with ``image`` a ``(H, W, 3)`` uint8
array (or, after :class:`Normalize`, a float array) and ``label`` a ``(H, W)`` int64 array,
and returns the transformed pair. Randomness comes only from ``rng``: the datasets derive one
generator per sample (see :meth:`sstkd.data.base.SegmentationDataset.sample_rng`), which makes
augmentation reproducible under a seed and independent of how samples are spread over
DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    if len(value) != 2 or any(int(v) < 1 for v in value):
        raise ValueError(f"{name}: expected a positive int or (H, W), got {value!r}")
    return int(value[0]), int(value[1])


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` = (H, W): bilinear for the image, nearest for the label."""
    h, w = size
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    lab = np.asarray(Image.fromarray(label.astype(np.int32)).resize((w, h), Image.NEAREST))
    return img, lab.astype(np.int64)


class FixedResize:
    """Resize image (bilinear) and label (nearest) to ``size`` = (H, W) before other transforms."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size, "FixedResize.size")

    def __call__(self, image, label, rng):
        return resize_pair(image, label, self.size)

    def __repr__(self) -> str:
        return f"FixedResize({self.size})"


class Compose:
    """Apply transforms in order, sharing one generator."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, label, rng: np.random.Generator):
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``scale_range`` (e.g. (0.5, 2.0))."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)):
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError("RandomScale: scale_range must satisfy 0 < lo <= hi, "
                             f"got {scale_range!r}")
        self.scale_range = (float(lo), float(hi))

    def __call__(self, image, label, rng):
        s = rng.uniform(*self.scale_range)
        h, w = label.shape
        return resize_pair(image, label, (max(1, round(h * s)), max(1, round(w * s))))


class RandomCrop:
    """Crop ``size`` = (H, W) at a random place, padding first (image with ``fill``, label with
    ``ignore_index``) where the input is smaller."""

    def __init__(self, size: int | Sequence[int], fill: Sequence[int] = (124, 116, 104),
                 ignore_index: int = IGNORE_INDEX):
        self.size = _pair(size, "RandomCrop.size")
        self.fill = np.asarray(fill, dtype=np.uint8)
        self.ignore_index = ignore_index

    def __call__(self, image, label, rng):
        ch, cw = self.size
        h, w = label.shape
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            img = np.empty((h + ph, w + pw, 3), dtype=image.dtype)
            img[...] = self.fill
            img[:h, :w] = image
            lab = np.full((h + ph, w + pw), self.ignore_index, dtype=label.dtype)
            lab[:h, :w] = label
            image, label, h, w = img, lab, h + ph, w + pw
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


class RandomHorizontalFlip:
    """Flip left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label


class PhotometricJitter:
    """Random brightness, contrast and saturation factors in ``[1 - x, 1 + x]`` (uint8 in/out)."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 p: float = 0.5):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.p = p

    def __call__(self, image, label, rng):
        if rng.random() >= self.p:
            return image, label
        img = image.astype(np.float32)
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        img = img * b
        img = (img - img.mean()) * c + img.mean()
        gray = img.mean(axis=2, keepdims=True)
        img = (img - gray) * s + gray
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), label


class Normalize:
    """uint8 ``(H, W, 3)`` -> float32 ``(H, W, 3)``: ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, image, label, rng):
        return (image.astype(np.float32) / 255.0 - self.mean) / self.std, label


def to_tensor(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, W, 3)`` float array + ``(H, W)`` labels -> ``(3, H, W)`` float32, ``(H, W)`` int64."""
    img = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
    img = torch.from_numpy(np.ascontiguousarray(img))
    return img, torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))


def build_train_transform(crop_size: int | Sequence[int] = 512,
                          scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                          jitter: bool = False, ignore_index: int = IGNORE_INDEX,
                          mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Random scale -> optional jitter -> crop (ignore padding) -> flip -> normalise."""
    ts: list = [RandomScale(scale_range)] if scale_range is not None else []
    if jitter:
        ts.append(PhotometricJitter())
    ts.append(RandomCrop(crop_size, ignore_index=ignore_index))
    if flip:
        ts.append(RandomHorizontalFlip())
    ts.append(Normalize(mean, std))
    return Compose(ts)


def build_eval_transform(mean: Sequence[float] = IMAGENET_MEAN,
                         std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Normalisation only (evaluation runs at full resolution)."""
    return Compose([Normalize(mean, std)])
