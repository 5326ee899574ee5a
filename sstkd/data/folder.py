"""Your own data: a folder of images and PNG masks (index or colour), checked when opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import DataError, SegmentationDataset, Transform, check_root
from .transforms import IGNORE_INDEX

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IGNORE_NAME = "__ignore__"  # a classes.txt line that is not a class (labelme's convention)
_INDEX_MODES = ("L", "P", "I", "I;16")
_LAYOUT = ("images/ and masks/ (masks/<stem>.png beside images/<stem>.<ext>), optional "
           "classes.txt and <split>.txt")


def read_classes(path: str | Path) -> tuple[tuple[str, ...], dict[tuple[int, int, int], int]]:
    """Class names and colour -> id map from a ``classes.txt``.

    One line per class, in id order: ``name`` or ``name R G B`` (all lines with a colour or
    none). A line named ``__ignore__`` (``__ignore__ R G B`` in colour files) is not a class:
    its colour maps to the ignore index. Blank lines and lines starting with ``#`` are skipped.

    Returns:
        ``(names, colours)``; ``colours`` maps an RGB triple to a class id (-1: ignore) and is
        empty when the file gives no colours.

    Raises:
        ValueError: malformed line, colour outside 0..255, a colour used twice, colours on some
            lines only (the message names the file and line).
    """
    path = Path(path)
    names: list[str] = []
    colours: dict[tuple[int, int, int], int] = {}
    with_colour = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        has_rgb = len(parts) >= 4 and all(p.lstrip("-").isdigit() for p in parts[-3:])
        name = " ".join(parts[:-3]) if has_rgb else line
        if has_rgb:
            rgb = tuple(int(p) for p in parts[-3:])
            if not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"folder: line {n} of {str(path)!r}: colour {rgb} is outside "
                                 f"0..255")
            if rgb in colours:
                raise ValueError(f"folder: line {n} of {str(path)!r}: colour {rgb} is already "
                                 f"used by an earlier line")
            colours[rgb] = -1 if name == IGNORE_NAME else len(names)
        if name != IGNORE_NAME:
            names.append(name)
            with_colour.append(has_rgb)
    if not names:
        raise ValueError(f"folder: {str(path)!r} names no class (expected one line per class: "
                         f"'name' or 'name R G B')")
    if any(with_colour) and not all(with_colour):
        first = names[with_colour.index(False)]
        raise ValueError(f"folder: {str(path)!r} gives colours on some lines only; class "
                         f"{first!r} has none (expected 'name R G B' on every line or none)")
    return tuple(names), colours


class FolderDataset(SegmentationDataset):
    """Images and masks in a folder: the dataset for your own data (``data.dataset: folder``).

    Layout under ``root``::

        images/<stem>.jpg|png|...    masks/<stem>.png        (or images/<split>/, masks/<split>/)
        classes.txt                  optional: 'name' or 'name R G B' per class, in id order
        <split>.txt                  optional: one image stem (or path under images/) per line

    A split is read from ``root/<split>.txt`` if it exists, else from ``images/<split>/`` and
    ``masks/<split>/``; the split ``all`` is every image under ``images/``. Masks are
    single-channel PNGs of class ids (modes L, P, I) with ``ignore_index`` for ignored pixels, or
    RGB PNGs whose colours are mapped through the colours of ``classes.txt`` (a
    ``__ignore__ R G B`` line maps that colour to ``ignore_index``). Without ``classes.txt``
    there are ``num_classes`` classes, or max id + 1 over every mask of the split when
    ``num_classes`` is ``None``.

    Everything is checked when the dataset is made (every mask is read once): each image has a
    mask of the same size, no mask lacks its image, every id is a class or ``ignore_index``, and
    every colour is in the palette; each error names the file.

    Args:
        root: dataset folder. split: split name (see above).
        transform, ignore_index, seed: see :class:`~sstkd.data.base.SegmentationDataset`.
        num_classes: class count when there is no ``classes.txt``; must match it otherwise.

    Example:
        >>> ds = FolderDataset("my_data", split="train")  # doctest: +SKIP
        >>> image, label = ds[0]  # float32 (3, H, W), int64 (H, W)
    """

    name = "folder"

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None,
                 ignore_index: int = IGNORE_INDEX, seed: int | None = None,
                 num_classes: int | None = None):
        super().__init__(transform, ignore_index, seed)
        root = check_root(root, "folder", _LAYOUT)
        if not isinstance(split, str) or not split:
            raise ValueError(f"folder: split expected a non-empty name, got {split!r}")
        self.split = split
        classes_file = root / "classes.txt"
        self.colours: dict[tuple[int, int, int], int] = {}
        if classes_file.is_file():
            self.class_names, self.colours = read_classes(classes_file)
            if num_classes is not None and num_classes != len(self.class_names):
                raise ValueError(f"folder: num_classes={num_classes} but {str(classes_file)!r} "
                                 f"names {len(self.class_names)} classes")
        elif num_classes is not None:
            if num_classes < 1:
                raise ValueError(f"folder: num_classes expected >= 1, got {num_classes}")
            self.class_names = tuple(f"class_{i}" for i in range(num_classes))
        samples, where = self._find_samples(root, split)
        self._set_samples(samples, where)
        self.palette = tuple(sorted((c for c in self.colours if self.colours[c] >= 0),
                                    key=self.colours.__getitem__))
        self._check_masks(infer_classes=not self.class_names)

    # ------------------------------------------------------------------ discovery

    @staticmethod
    def _images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                      and p.is_file())

    def _find_samples(self, root: Path, split: str) -> tuple[list[tuple[Path, Path]], str]:
        images, masks = root / "images", root / "masks"
        for d in (images, masks):
            if not d.is_dir():
                raise FileNotFoundError(f"folder: {str(d)!r} does not exist (expected {_LAYOUT})")
        list_file = root / f"{split}.txt"
        if list_file.is_file():
            return [self._pair_of(images, masks, entry, list_file, n) for n, entry in
                    enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1)
                    if entry.strip() and not entry.strip().startswith("#")], str(list_file)
        if split == "all":
            img_dir, mask_dir = images, masks
        elif (images / split).is_dir():
            img_dir, mask_dir = images / split, masks / split
        else:
            raise FileNotFoundError(f"folder: split {split!r} not found: expected "
                                    f"{str(list_file)!r} or the folder {str(images / split)!r} "
                                    f"(or split 'all')")
        samples = [(p, (mask_dir / p.relative_to(img_dir)).with_suffix(".png"))
                   for p in self._images(img_dir)]
        paired = {m for _, m in samples}
        for m in sorted(mask_dir.rglob("*.png")) if mask_dir.is_dir() else ():
            if m not in paired:
                raise FileNotFoundError(f"folder: mask {str(m)!r} has no image (expected "
                                        f"{str(img_dir / m.relative_to(mask_dir).stem)}.<ext> "
                                        f"with <ext> one of {IMAGE_SUFFIXES})")
        return samples, str(img_dir)

    @staticmethod
    def _pair_of(images: Path, masks: Path, entry: str, list_file: Path,
                 line: int) -> tuple[Path, Path]:
        rel = Path(entry.strip())
        if rel.suffix.lower() in IMAGE_SUFFIXES:
            return images / rel, (masks / rel).with_suffix(".png")
        found = [images / rel.with_suffix(s) for s in IMAGE_SUFFIXES
                 if (images / rel.with_suffix(s)).is_file()]
        if len(found) != 1:
            what = "no image" if not found else f"{len(found)} images"
            raise FileNotFoundError(f"folder: line {line} of {str(list_file)!r} names {entry!r} "
                                    f"but {str(images)!r} holds {what} with that stem")
        return found[0], masks / rel.with_suffix(".png")

    # ------------------------------------------------------------------ masks

    def _read(self, kind: str, path: Path, index: int, mask: bool = False
              ) -> tuple[str, np.ndarray | None]:
        """``(mode, pixels)`` of an image file (pixels ``None`` for a mask of another mode);
        :class:`DataError` naming the file when it cannot be read."""
        try:
            with Image.open(path) as im:
                if not mask:
                    return im.mode, np.asarray(im.convert("RGB"))
                if im.mode in _INDEX_MODES:
                    return im.mode, np.asarray(im).astype(np.int64)
                return im.mode, (np.asarray(im.convert("RGB")).astype(np.int64)
                                 if im.mode in ("RGB", "RGBA") else None)
        except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt / not an image
            raise DataError(self.name, kind, path, index, exc) from None

    def read_mask(self, path: Path, index: int = -1) -> np.ndarray:
        """Mask ``path`` (of sample ``index``) as class ids int64 ``(H, W)``: index masks as
        stored, RGB masks mapped through the palette (``ignore_index`` for ``__ignore__``); ids
        are not range-checked."""
        mode, pixels = self._read("mask", path, index, mask=True)
        if pixels is None:
            raise ValueError(f"folder: mask {str(path)!r} has mode {mode!r}; expected an index "
                             f"mask (L, P, I) or an RGB colour mask")
        if mode in _INDEX_MODES:
            return pixels
        rgb = pixels
        if not self.colours:
            raise ValueError(f"folder: mask {str(path)!r} is an RGB colour mask but there is no "
                             f"classes.txt with colours ('name R G B' per class) to map it")
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colours], dtype=np.int64)
        ids = np.array([self.ignore_index if v < 0 else v for v in self.colours.values()],
                       dtype=np.int64)
        order = np.argsort(keys)
        pos = np.clip(np.searchsorted(keys[order], code), 0, len(keys) - 1)
        known = keys[order][pos] == code
        if not known.all():
            bad = np.unique(code[~known])[:5]
            colours = [((int(c) >> 16) & 255, (int(c) >> 8) & 255, int(c) & 255) for c in bad]
            raise ValueError(f"folder: mask {str(path)!r} holds colours {colours} that are not "
                             f"in the palette of classes.txt")
        return ids[order][pos]

    def _check_masks(self, infer_classes: bool) -> None:
        top = -1
        for index, (img_path, mask_path) in enumerate(self.samples):
            try:
                with Image.open(img_path) as im:
                    img_size = im.size
            except (OSError, SyntaxError, ValueError) as exc:
                raise DataError(self.name, "image", img_path, index, exc) from None
            label = self.read_mask(mask_path, index)
            if label.shape != img_size[::-1]:
                raise ValueError(f"folder: image {str(img_path)!r} is {img_size[0]}x"
                                 f"{img_size[1]} (WxH) but its mask {str(mask_path)!r} is "
                                 f"{label.shape[1]}x{label.shape[0]}")
            if infer_classes:
                ids = label[label != self.ignore_index]
                top = max(top, int(ids.max()) if ids.size else -1)
            else:
                self._map_label(label, mask_path)
        if infer_classes:
            if top < 0:
                raise ValueError(f"folder: every mask pixel of split {self.split!r} is ignore "
                                 f"({self.ignore_index}); cannot infer the classes (add "
                                 f"classes.txt)")
            self.class_names = tuple(f"class_{i}" for i in range(top + 1))

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` without transforms: uint8 ``(H, W, 3)``, int64 ``(H, W)``."""
        img_path, mask_path = self.samples[index]
        _, image = self._read("image", img_path, index)
        label = self._map_label(self.read_mask(mask_path, index), mask_path)
        if image.shape[:2] != label.shape:  # changed since the dataset was opened
            raise ValueError(f"folder: image {str(img_path)!r} is {image.shape[1]}x"
                             f"{image.shape[0]} (WxH) but its mask {str(mask_path)!r} is "
                             f"{label.shape[1]}x{label.shape[0]}")
        return image, label
