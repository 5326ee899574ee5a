"""Common machinery of the file-based segmentation datasets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .transforms import IGNORE_INDEX, build_eval_transform, to_tensor

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]


class DataError(ValueError):
    """A dataset file that cannot be read (truncated, corrupt, not an image); names the file
    and the sample index.

    Built either as ``DataError(dataset, kind, path, index, cause)`` or, as DataLoader workers
    re-raise it, from its message alone.
    """

    def __init__(self, dataset: str, kind: str = "", path: str | Path = "", index: int = -1,
                 cause: BaseException | None = None):
        if not kind:  # re-raised from a DataLoader worker with the formatted message
            super().__init__(dataset)
            return
        reason = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() \
            else type(cause).__name__
        super().__init__(f"{dataset}: cannot read {kind} file {str(path)!r} (sample {index}): "
                         f"{reason}")
        self.path, self.index = Path(path), index


def check_root(root: str | Path | None, dataset: str, expected: str) -> Path:
    """``root`` as a Path, or ``FileNotFoundError`` saying which layout was expected."""
    if root is None:
        raise ValueError(f"{dataset}: root is required (expected a folder with {expected})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset root {str(path)!r} does not exist "
                                f"(expected a folder with {expected})")
    return path


class SegmentationDataset(Dataset):
    """A list of (image file, label file) pairs with label remapping, checks and transforms.

    Subclasses fill ``self.samples`` and may set ``label_map``: a 256-entry int64 lookup table
    from stored label values to train ids (``ignore_index`` for ignored values, ``-1`` for values
    that must never occur).

    ``dataset[i]`` returns ``(image, label)``: ``image`` float32 ``(3, H, W)`` (normalised with
    ImageNet mean/std by default), ``label`` int64 ``(H, W)`` with values in
    ``[0, num_classes)`` or ``ignore_index``.

    Augmentation randomness: with ``seed`` set, sample ``i`` in epoch ``e`` (see
    :meth:`set_epoch`) always gets the same augmentation, whichever worker loads it; with
    ``seed=None`` a per-sample seed is drawn from torch's RNG, which DataLoader seeds per
    worker from the main process's ``torch.manual_seed``.
    """

    name = "dataset"
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, transform: Transform | None = None, ignore_index: int = IGNORE_INDEX,
                 seed: int | None = None):
        self.transform = transform if transform is not None else build_eval_transform()
        self.ignore_index = ignore_index
        self.seed = seed
        self.epoch = 0
        self.samples: list[tuple[Path, Path]] = []
        self.label_map: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream (call once per epoch when ``seed`` is set)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator that drives the transforms of sample ``index``."""
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def sample_name(self, index: int) -> str:
        """A short name for sample ``index`` (the image file stem)."""
        return self.samples[index][0].stem

    def _set_samples(self, samples: Sequence[tuple[Path, Path]], where: str) -> None:
        if not samples:
            raise FileNotFoundError(f"{self.name}: no image/label pairs found under {where}")
        for img, lab in samples:
            if not img.is_file():
                raise FileNotFoundError(f"{self.name}: image file {str(img)!r} is missing")
            if not lab.is_file():
                raise FileNotFoundError(f"{self.name}: label file {str(lab)!r} for image "
                                        f"{str(img)!r} is missing")
        self.samples = list(samples)

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read sample ``index`` without transforms: uint8 ``(H, W, 3)``, int64 ``(H, W)``."""
        img_path, lab_path = self.samples[index]
        try:
            with Image.open(img_path) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt / not an image
            raise DataError(self.name, "image", img_path, index, exc) from None
        try:
            with Image.open(lab_path) as im:
                mode = im.mode
                label = np.asarray(im).astype(np.int64) if mode in ("L", "P", "I", "I;16") \
                    else None
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(self.name, "label", lab_path, index, exc) from None
        if label is None:
            raise ValueError(f"{self.name}: label file {str(lab_path)!r} must be a "
                             f"single-channel image, got mode {mode!r}")
        if image.shape[:2] != label.shape:
            raise ValueError(f"{self.name}: image {str(img_path)!r} is {image.shape[1]}x"
                             f"{image.shape[0]} (WxH) but its label {str(lab_path)!r} is "
                             f"{label.shape[1]}x{label.shape[0]}")
        return image, self._map_label(label, lab_path)

    def _map_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        if self.label_map is not None:
            if label.min() < 0 or label.max() >= len(self.label_map):
                bad = label[(label < 0) | (label >= len(self.label_map))]
                raise ValueError(f"{self.name}: label file {str(path)!r} holds value "
                                 f"{int(bad[0])} outside the stored range")
            mapped = self.label_map[label]
            if (mapped < 0).any():
                bad = np.unique(label[mapped < 0]).tolist()
                raise ValueError(f"{self.name}: label file {str(path)!r} holds values {bad} that "
                                 f"are not valid labels of {self.name}")
            return mapped
        valid = ((label >= 0) & (label < self.num_classes)) | (label == self.ignore_index)
        if not valid.all():
            bad = np.unique(label[~valid]).tolist()
            raise ValueError(f"{self.name}: label file {str(path)!r} holds values {bad}; expected "
                             f"0..{self.num_classes - 1} or ignore {self.ignore_index}")
        return label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        index %= len(self)
        image, label = self.load_raw(index)
        image, label = self.transform(image, label, self.sample_rng(index))
        return to_tensor(image, label)


def lut(mapping: dict[int, int], default: int, size: int = 256) -> np.ndarray:
    """A ``size``-entry lookup table with ``mapping`` applied and ``default`` elsewhere."""
    table = np.full(size, default, dtype=np.int64)
    for k, v in mapping.items():
        table[k] = v
    return table
